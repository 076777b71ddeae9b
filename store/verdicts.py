"""The verdicts table (engine/verdicts.py): written through the journal like every record,
read back for a call's record, the compliance history and the QA sample.

A verdict is written once per (call, rule, key): a replay of the journal, or the same
verdict reached again after an engine restart, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callflow.engine.verdicts import Outcome, Verdict

from .models import CallVerdict

VERDICT_RECORD = "verdict"


def write_verdict(s: Session, data: dict[str, Any]) -> None:
    exists = s.scalar(select(CallVerdict.id).where(
        CallVerdict.call_uniqueid == data["call_uniqueid"], CallVerdict.rule == data["rule"],
        CallVerdict.key == data.get("key", "")))
    if exists is not None:
        return
    at = data["at"]
    s.add(CallVerdict(
        call_uniqueid=data["call_uniqueid"], rule=data["rule"], key=data.get("key", ""),
        outcome=data["outcome"], measured=data.get("measured"), limit=data.get("limit"),
        unit=data.get("unit", ""), agent_id=data.get("agent_id"), queue=data.get("queue", ""),
        at=at if isinstance(at, datetime) else datetime.fromtimestamp(float(at), UTC),
        detail=data.get("detail", "")))
    s.flush()


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
