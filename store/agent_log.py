"""What the store knows of the agents, read back for a restart (agents/restore.py).

The store keeps each agent's current state (``agent_current``, written in the same
transaction as the state log), every login's desk (``agent_login`` records in the
event log), the ACW extensions supervisors granted (``acw_extended``), the busy
approvals (``busy_pending``/``busy_approved``, STD-106), every finished ACW (``acw``,
with ``overrun``) and the wrap-up forms owed (``wrapup_owed``, STD-092). These queries
turn them into the plain data the pure restore takes: ``load_stored_agents`` ->
``StoredAgent`` per agent, ``load_day_totals`` -> today's ``DayTotals`` per agent,
rebuilt from the state log.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callflow.agents.events import AgentState
from callflow.agents.restore import DayTotals, StoredAgent
from callflow.agents.state import bucket
from callflow.engine.policy import RING_NO_ANSWER
from callflow.store import repo
from callflow.store.models import AgentState as AgentStateRow
from callflow.store.models import CallEvent, Wrapup
from callflow.store.rows import (
    BUSY_APPROVED_RECORD,
    BUSY_PENDING_RECORD,
    WRAPUP_MISSING_RECORD,
    WRAPUP_OWED_RECORD,
)

LOGIN_RECORD = "agent_login"  # Persist kind agents/state.py writes at each login
ACW_EXTENDED_RECORD = "acw_extended"
ACW_RECORD = "acw"  # Persist kind of each finished ACW (agents/state.py), ``overrun`` in it


def load_stored_agents(s: Session) -> list[StoredAgent]:
    """Every agent's stored state, desk and ACW extension (one read transaction)."""
    rows = repo.load_agent_snapshots(s)
    desks = _last_desks(s, {r.agent_id for r in rows})
    owed = _owed_wrapups(s, {r.agent_id for r in rows})
    out = []
    for row in rows:
        extra = 0.0
        if row.state == AgentState.ACW.value and row.acw_extended and row.call_uniqueid:
            extra = sum(float(e.payload.get("seconds", 0))
                        for e in repo.read_events(s, uniqueid=row.call_uniqueid)
                        if e.kind == ACW_EXTENDED_RECORD
                        and e.payload.get("agent_id") == row.agent_id and e.at >= row.since)
        out.append(StoredAgent(
            agent_id=row.agent_id, state=row.state, reason=row.reason, since=row.since,
            call_id=row.call_uniqueid, acw_extended=row.acw_extended,
            extension=desks.get(row.agent_id), acw_extra_s=extra,
            approval_pending=row.state == AgentState.BUSY.value
            and _awaits_approval(s, row.agent_id, row.since),
            wrapup_call=owed[row.agent_id][0] if row.agent_id in owed else None,
            wrapup_flag_only=row.agent_id in owed and owed[row.agent_id][1]))
    return out


def _owed_wrapups(s: Session, agent_ids: set[str]) -> dict[str, tuple[str, bool]]:
    """Each agent's last call that owed the wrap-up form (STD-092) and whether, missing,
    it only flags the call, if no form for it is stored and it was not flagged already:
    newest ``wrapup_owed`` records first until every agent is seen."""
    last: dict[str, str] = {}
    flag_only: dict[str, bool] = {}
    query = (select(CallEvent.payload).where(CallEvent.kind == WRAPUP_OWED_RECORD)
             .order_by(CallEvent.id.desc()).execution_options(yield_per=500))
    for payload in s.scalars(query):
        agent_id = payload.get("agent_id")
        if agent_id in agent_ids and agent_id not in last and payload.get("call_uniqueid"):
            last[agent_id] = str(payload["call_uniqueid"])
            flag_only[agent_id] = bool(payload.get("flag_only", False))
            if len(last) == len(agent_ids):
                break
    if not last:
        return {}
    calls = sorted(set(last.values()))
    done = set(s.scalars(select(Wrapup.call_uniqueid).where(Wrapup.call_uniqueid.in_(calls))))
    done |= set(s.scalars(select(CallEvent.uniqueid).where(
        CallEvent.kind == WRAPUP_MISSING_RECORD, CallEvent.uniqueid.in_(calls))))
    return {agent_id: (call, flag_only[agent_id]) for agent_id, call in last.items()
            if call not in done}


def _awaits_approval(s: Session, agent_id: str, since: datetime) -> bool:
    """Did this busy (begun at ``since``) ask for approval, and is it still without one?
    Both records carry the wall time of the same step as the state row (a second's
    slack for the clock conversion)."""
    query = (select(CallEvent.kind, CallEvent.payload)
             .where(CallEvent.kind.in_((BUSY_PENDING_RECORD, BUSY_APPROVED_RECORD)),
                    CallEvent.at >= since - timedelta(seconds=1))
             .order_by(CallEvent.id))
    last = None
    for kind, payload in s.execute(query):
        if payload.get("agent_id") == agent_id:
            last = kind
    return last == BUSY_PENDING_RECORD


def load_day_totals(s: Session, day_start: datetime,
                    now: datetime) -> dict[str, DayTotals]:
    """Each agent's accumulators since ``day_start`` (the centre's midnight) from the
    state log: a state that began before midnight counts from midnight, the open one up
    to ``now``; logged-out time is not counted (the machine does not count it either)."""
    totals: dict[str, dict[str, float]] = {}
    calls: dict[str, int] = {}
    rna: dict[str, int] = {}
    query = (select(AgentStateRow)
             .where(or_(AgentStateRow.ended_at.is_(None), AgentStateRow.ended_at > day_start))
             .order_by(AgentStateRow.id).execution_options(yield_per=1000))
    for row in s.scalars(query):
        agent_id = row.agent_id
        try:
            state = AgentState(row.state)
        except ValueError:
            continue
        if state is AgentState.LOGGED_OUT:
            continue
        start = max(row.started_at, day_start)
        end = row.ended_at if row.ended_at is not None else now
        if end > start:
            key = bucket(state, row.reason or "")
            mine = totals.setdefault(agent_id, {})
            mine[key] = mine.get(key, 0.0) + (end - start).total_seconds()
        if row.started_at >= day_start:
            if state is AgentState.ACW:
                calls[agent_id] = calls.get(agent_id, 0) + 1
            elif state is AgentState.NOT_READY and row.reason == RING_NO_ANSWER:
                rna[agent_id] = rna.get(agent_id, 0) + 1
    overruns: dict[str, int] = {}
    events = (select(CallEvent.payload)
              .where(CallEvent.kind == ACW_RECORD, CallEvent.at >= day_start))
    for payload in s.scalars(events):
        if payload.get("overrun") and payload.get("agent_id"):
            agent_id = str(payload["agent_id"])
            overruns[agent_id] = overruns.get(agent_id, 0) + 1
    return {agent_id: DayTotals(totals.get(agent_id, {}), calls.get(agent_id, 0),
                                rna.get(agent_id, 0), overruns.get(agent_id, 0))
            for agent_id in {*totals, *calls, *rna, *overruns}}


def _last_desks(s: Session, agent_ids: Iterable[str]) -> dict[str, str]:
    """The desk of each agent's latest login, newest records first until all are found."""
    wanted = set(agent_ids)
    found: dict[str, str] = {}
    query = (select(CallEvent.payload).where(CallEvent.kind == LOGIN_RECORD)
             .order_by(CallEvent.id.desc()).execution_options(yield_per=500))
    for payload in s.scalars(query):
        agent_id = payload.get("agent_id")
        if agent_id in wanted and agent_id not in found and payload.get("extension"):
            found[agent_id] = str(payload["extension"])
            if len(found) == len(wanted):
                break
    return found
