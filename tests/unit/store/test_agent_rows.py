"""The writer's agent-state rows (store/agent_rows.py) leave the store as the ORM rule
``repo.record_agent_state`` does: the same log, the same snapshot, the same refusal of a
time before the open state's start. On SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from callflow.errors import StoreError
from callflow.store import agent_rows, repo
from callflow.store.db import Store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STEPS: list[tuple[str, float, dict[str, Any]]] = [
    ("ready", 0, {}), ("ringing", 5, {"call_uniqueid": "c1"}),
    ("on_call", 7, {"call_uniqueid": "c1"}), ("on_call", 7, {"call_uniqueid": "c1"}),
    ("acw", 60, {"call_uniqueid": "c1", "acw_extended": True}),
    ("busy", 90, {"reason": "meal"}), ("ready", 90, {})]


def core_rows(s: Session, agent_id: str, state: str, at: datetime, **kw: Any) -> None:
    agent_rows.record_agent_state(s, agent_id, state, at, reason=kw.get("reason"),
                                  call_uniqueid=kw.get("call_uniqueid"),
                                  acw_extended=bool(kw.get("acw_extended")))


def orm_rule(s: Session, agent_id: str, state: str, at: datetime, **kw: Any) -> None:
    repo.record_agent_state(s, agent_id, state, at, **kw)


def seen(store: Store, agent_id: str) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    log = store.read(repo.agent_state_log, agent_id, since=T0 - timedelta(1))
    current = next(c for c in store.read(repo.load_agent_snapshots) if c.agent_id == agent_id)
    return ([(r.state, r.reason, r.started_at, r.ended_at, r.call_uniqueid) for r in log],
            (current.state, current.reason, current.since, current.call_uniqueid,
             current.acw_extended))


def test_the_prepared_rows_write_what_the_orm_rule_writes(store: Store) -> None:
    for agent_id in ("1001", "1002"):
        store.run(repo.upsert_agent, agent_id, name=agent_id, extension=f"6{agent_id}")
    for state, seconds, kw in STEPS:
        store.run(core_rows, "1001", state, T0 + timedelta(seconds=seconds), **kw)
        store.run(orm_rule, "1002", state, T0 + timedelta(seconds=seconds), **kw)
        assert seen(store, "1001") == seen(store, "1002")
    assert len(seen(store, "1001")[0]) == len(STEPS)


def test_a_state_before_the_open_one_is_refused_and_changes_nothing(store: Store) -> None:
    store.run(repo.upsert_agent, "1001", name="Li", extension="61001")
    store.run(core_rows, "1001", "ready", T0 + timedelta(seconds=30))
    before = seen(store, "1001")
    with pytest.raises(StoreError, match="before the current one started"):
        store.run(core_rows, "1001", "on_call", T0 + timedelta(seconds=29))
    assert seen(store, "1001") == before
