"""Agents after an engine restart: back in the state the store last saw, timers re-armed.

Issue 5's "done when": the agent state is restored correctly after an engine
restart. The store keeps each agent's current state (``agent_current``, written in
the same transaction as the state log) and every login's desk (``agent_login``
records in the event log). From those:

* logged-out, ready, busy and not-ready agents come back as they were, with the
  time the state *began* (so longest-idle routing and the busy/meal limits,
  STD-104, still count from the real start), and the reason-limit timer re-armed
  for what is left of it;
* an agent in after-call work gets the ACW limit re-armed with the remaining time
  (STD-100); if the limit passed while the engine was down, the timer fires at once
  and the machine's own rule ends the ACW (auto-ready and the overrun recorded);
* an agent who was ringing, talking or holding is restored in that state; the AMI
  resync that follows (``Runtime.apply_resync``) re-links their live channel, or ends
  the call if Asterisk no longer has it (so nobody stays "on call" forever).

Today's accumulators (time per state and reason, calls handled, ring-no-answers,
ACW overruns: what the STD-100 average and the desktop count on) are rebuilt from
the state log since the centre's midnight (``load_day_totals``), the current state's
time included up to now. A busy that still awaited a supervisor's approval (STD-106)
comes back awaiting it, its absence timer re-armed from the busy's real start (the
event log holds ``busy_pending`` and ``busy_approved``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callflow.agents.events import IN_CALL, AgentState
from callflow.agents.state import (
    ACW_TIMER,
    APPROVAL_TIMER,
    BUSY_APPROVED_RECORD,
    BUSY_PENDING_RECORD,
    REASON_LIMIT_TIMER,
    AgentSnapshot,
    Step,
    agent_payload,
    bucket,
    timer_key,
)
from callflow.engine.effects import Effect, Publish, StartTimer
from callflow.engine.policy import RING_NO_ANSWER, Policy, Reason
from callflow.store import repo
from callflow.store.models import AgentState as AgentStateRow
from callflow.store.models import CallEvent

log = logging.getLogger(__name__)

LOGIN_RECORD = "agent_login"  # Persist kind agents/state.py writes at each login
ACW_EXTENDED_RECORD = "acw_extended"
ACW_RECORD = "acw"  # Persist kind of each finished ACW (agents/state.py), ``overrun`` in it


@dataclass(frozen=True)
class DayTotals:
    """One agent's accumulators for today, as the machine keeps them (AgentSnapshot)."""

    totals: dict[str, float] = field(default_factory=dict)
    calls_handled: int = 0
    ring_no_answer_count: int = 0
    acw_overruns: int = 0


@dataclass(frozen=True)
class StoredAgent:
    """What the store knows of one agent's current state."""

    agent_id: str
    state: str
    reason: str | None
    since: datetime  # aware UTC: when the state began
    call_id: str | None = None
    acw_extended: bool = False
    extension: str | None = None  # the desk of the last login
    acw_extra_s: float = 0.0  # seconds supervisors added to this ACW
    approval_pending: bool = False  # busy awaiting a supervisor's approval (STD-106)


def restored(stored: StoredAgent, home_extension: str, now: float, wall_now: datetime,
             policy: Policy, day: DayTotals | None = None) -> Step:
    """The snapshot and timer effects of one stored agent (``now``: monotonic seconds),
    with today's accumulators when ``day`` is given."""
    try:
        state = AgentState(stored.state)
    except ValueError:
        log.error("agent %s: stored state %r unknown; restored logged out", stored.agent_id,
                  stored.state)
        state = AgentState.LOGGED_OUT
    age = max(0.0, (wall_now - stored.since).total_seconds())
    since = now - age
    with_reason = state in (AgentState.BUSY, AgentState.NOT_READY, AgentState.LOGGED_OUT)
    with_call = state in IN_CALL or state is AgentState.ACW
    acw = state is AgentState.ACW
    agent = AgentSnapshot(
        agent_id=stored.agent_id, extension=stored.extension or home_extension, state=state,
        reason=(stored.reason or "") if with_reason else "", since=since,
        call_id=(stored.call_id or "") if with_call else "",
        acw_deadline=since + policy.agents.acw_limit_s + stored.acw_extra_s if acw else 0.0,
        acw_extended=stored.acw_extended and acw, seq=1, counted_to=now,
        approval_pending=stored.approval_pending and state is AgentState.BUSY)
    if day is not None:
        agent = replace(agent, totals=dict(day.totals), calls_handled=day.calls_handled,
                        ring_no_answer_count=day.ring_no_answer_count,
                        acw_overruns=day.acw_overruns)
    effects: list[Effect] = []
    if acw:
        effects.append(StartTimer(timer_key(agent, ACW_TIMER), agent.acw_deadline))
    reason = _reason(policy, agent)
    if reason is not None and reason.max_min > 0:
        effects.append(StartTimer(timer_key(agent, REASON_LIMIT_TIMER),
                                  since + reason.max_min * 60))
    if agent.approval_pending:  # past due: fires at once and flags the absence
        effects.append(StartTimer(timer_key(agent, APPROVAL_TIMER),
                                  since + policy.agents.absence_flag_min * 60))
    payload = agent_payload(agent, by="system", cause="restored")
    effects += [Publish(f"agent:{agent.agent_id}", payload), Publish("board", payload)]
    return agent, effects


def _reason(policy: Policy, agent: AgentSnapshot) -> Reason | None:
    if agent.state is AgentState.BUSY:
        return policy.agents.busy_reason(agent.reason)
    if agent.state is AgentState.NOT_READY:
        return policy.agents.not_ready_reason(agent.reason)
    return None


def load_stored_agents(s: Session) -> list[StoredAgent]:
    """Every agent's stored state, desk and ACW extension (one read transaction)."""
    rows = repo.load_agent_snapshots(s)
    desks = _last_desks(s, {r.agent_id for r in rows})
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
            and _awaits_approval(s, row.agent_id, row.since)))
    return out


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
