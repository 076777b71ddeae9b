"""The agent state record's rows written with prepared Core statements: the writer's hot
path after the call record (issue 20).

The same rule as ``repo.record_agent_state`` (close the agent's open state row at the
new state's start, open the new one, update the snapshot the engine resumes from, all
in the caller's transaction), without ORM objects: each statement is compiled once per
dialect and run on the DBAPI cursor of the session's connection (store/prepared.py).
``store/records.py`` ``write_agent_state`` is the one caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from callflow.errors import StoreError
from callflow.store.models import AgentCurrent, AgentState
from callflow.store.prepared import Executor, Prepared, connection_of

STATES: Table = cast(Table, AgentState.__table__)
CURRENT: Table = cast(Table, AgentCurrent.__table__)

_OPEN_ROW = Prepared(
    select(STATES.c.id, STATES.c.started_at)
    .where(STATES.c.agent_id == bindparam("k_agent_id"), STATES.c.ended_at.is_(None)))
_CLOSE_OPEN = Prepared(
    update(STATES)
    .where(STATES.c.agent_id == bindparam("k_agent_id"), STATES.c.ended_at.is_(None),
           STATES.c.started_at <= bindparam("v_at"))
    .values(ended_at=bindparam("v_at")))
_OPEN_NEW = Prepared(STATES.insert().values(
    agent_id=bindparam("k_agent_id"), state=bindparam("v_state"), reason=bindparam("v_reason"),
    started_at=bindparam("v_at"), call_uniqueid=bindparam("v_call_uniqueid")))
_SNAPSHOT_VALUES: dict[str, Any] = {"state": bindparam("v_state"), "reason": bindparam("v_reason"),
                    "since": bindparam("v_at"), "call_uniqueid": bindparam("v_call_uniqueid"),
                    "acw_extended": bindparam("v_acw_extended"), "updated_at": bindparam("v_at")}
_SNAPSHOT_UPDATE = Prepared(
    update(CURRENT).where(CURRENT.c.agent_id == bindparam("k_agent_id"))
    .values(_SNAPSHOT_VALUES).returning(CURRENT.c.agent_id))
_SNAPSHOT_INSERT = {
    name: Prepared(dialect.insert(CURRENT)
                   .values({"agent_id": bindparam("k_agent_id"), **_SNAPSHOT_VALUES})
                   .on_conflict_do_nothing(index_elements=["agent_id"])
                   .returning(CURRENT.c.agent_id))
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


def record_agent_state(s: Executor, agent_id: str, state: str, at: datetime, *,
                       reason: str | None, call_uniqueid: str | None,
                       acw_extended: bool) -> None:
    """Close the open state row at ``at``, open the new one, update the snapshot.

    Raises StoreError if ``at`` is before the open row's start (time never runs back)."""
    params = {"k_agent_id": agent_id, "v_state": state, "v_reason": reason, "v_at": at,
              "v_call_uniqueid": call_uniqueid, "v_acw_extended": acw_extended}
    conn = connection_of(s)  # the session's connection: no ORM step per statement
    # the open row is closed in one statement; only when none was (the agent's first
    # state, or a time before the open row's start) is the open row looked at
    if _CLOSE_OPEN.execute(conn, params).rowcount == 0:
        open_row = _OPEN_ROW.first(conn, params)
        if open_row is not None:
            raise StoreError(f"agent {agent_id}: state at {at.isoformat()} is before the "
                             f"current one started ({open_row[1].isoformat()})")
    _OPEN_NEW.execute(conn, params)
    if _SNAPSHOT_UPDATE.first(conn, params) is not None:
        return
    insert = _SNAPSHOT_INSERT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    if insert.first(conn, params) is None:  # another writer made it in between
        _SNAPSHOT_UPDATE.one(conn, params)
