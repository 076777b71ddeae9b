"""The verdicts table (engine/verdicts.py): written through the journal like every record,
read back for a call's record, the compliance history and the QA sample.

A verdict is written once per (call, rule, key): a replay of the journal, or the same
verdict reached again after an engine restart, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from callflow.engine.verdicts import Outcome, Verdict

from .models import CallVerdict
from .prepared import Executor, Prepared, connection_of

VERDICT_RECORD = "verdict"
VERDICTS: Table = cast(Table, CallVerdict.__table__)
_COLUMNS = ("call_uniqueid", "rule", "key", "outcome", "measured", "limit", "unit",
            "agent_id", "queue", "at", "detail")


@lru_cache(maxsize=4)
def _add_verdict(dialect: str) -> Prepared:
    """One prepared statement for every verdict (issue 20: about four a call, the ORM's
    select-then-flush of each was the writer's largest cost), run on the DBAPI cursor
    (store/prepared.py); the unique (call, rule, key) index makes a replayed verdict
    write nothing."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return Prepared(insert(VERDICTS).values({c: bindparam(f"v_{c}") for c in _COLUMNS})
                    .on_conflict_do_nothing(index_elements=["call_uniqueid", "rule", "key"]))


def write_verdict(s: Executor, data: dict[str, Any]) -> None:
    at = data["at"]
    conn = connection_of(s)
    _add_verdict(conn.dialect.name).execute(conn, {
        "v_call_uniqueid": data["call_uniqueid"], "v_rule": data["rule"],
        "v_key": data.get("key", ""), "v_outcome": data["outcome"],
        "v_measured": data.get("measured"), "v_limit": data.get("limit"),
        "v_unit": data.get("unit", ""), "v_agent_id": data.get("agent_id"),
        "v_queue": data.get("queue", ""),
        "v_at": at if isinstance(at, datetime) else datetime.fromtimestamp(float(at), UTC),
        "v_detail": data.get("detail", "")})


def as_verdict(row: CallVerdict) -> Verdict:
    return Verdict(call_id=row.call_uniqueid, rule=row.rule, outcome=Outcome(row.outcome),
                   measured=row.measured, limit=row.limit, unit=row.unit, agent=row.agent_id,
                   queue=row.queue, at=row.at.timestamp(), detail=row.detail, key=row.key)


def verdicts_of_call(s: Session, uniqueid: str) -> list[Verdict]:
    rows = s.scalars(select(CallVerdict).where(CallVerdict.call_uniqueid == uniqueid)
                     .order_by(CallVerdict.at, CallVerdict.id))
    return [as_verdict(r) for r in rows]


def verdicts_between(s: Session, since: datetime, until: datetime) -> list[Verdict]:
    """Every verdict reached in [since, until) (compliance history, the trend at start)."""
    rows = s.scalars(select(CallVerdict).where(CallVerdict.at >= since, CallVerdict.at < until)
                     .order_by(CallVerdict.at, CallVerdict.id))
    return [as_verdict(r) for r in rows]


def breached_calls(s: Session, uniqueids: Iterable[str]) -> dict[str, list[str]]:
    """The rules each of these calls failed (the QA sample takes breached calls first)."""
    ids = list(uniqueids)
    out: dict[str, list[str]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for uid, rule in s.execute(
                select(CallVerdict.call_uniqueid, CallVerdict.rule)
                .where(CallVerdict.call_uniqueid.in_(chunk), CallVerdict.outcome == "fail")
                .order_by(CallVerdict.rule)):
            rules = out.setdefault(uid, [])
            if rule not in rules:
                rules.append(rule)
    return out
