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
event log holds ``busy_pending`` and ``busy_approved``). A wrap-up form still owed
(STD-092: ``wrapup_owed`` in the event log, no ``wrapups`` row for that call) is still
owed: the agent cannot become ready until it is submitted.

This module is the pure part: plain data in (``StoredAgent``, ``DayTotals``), the
snapshot and its effects out (``restored``). Reading them from the store
(``load_stored_agents``, ``load_day_totals``) is store/agent_log.py's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from callflow.agents.changes import AgentChanged
from callflow.agents.events import IN_CALL, AgentState
from callflow.agents.state import (
    ACW_TIMER,
    APPROVAL_TIMER,
    REASON_LIMIT_TIMER,
    AgentSnapshot,
    Step,
    timer_key,
)
from callflow.engine.effects import Effect, StartTimer
from callflow.engine.policy import Policy, Reason

log = logging.getLogger(__name__)


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
    wrapup_call: str | None = None  # the call whose wrap-up form is still owed (STD-092)
    wrapup_flag_only: bool = False  # that form, missing, only flags its call (issue 18)


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
        approval_pending=stored.approval_pending and state is AgentState.BUSY,
        wrapup_call=stored.wrapup_call or "",
        wrapup_flag_only=bool(stored.wrapup_call) and stored.wrapup_flag_only)
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
    effects.append(AgentChanged(agent, by="system", cause="restored"))
    return agent, effects


def _reason(policy: Policy, agent: AgentSnapshot) -> Reason | None:
    if agent.state is AgentState.BUSY:
        return policy.agents.busy_reason(agent.reason)
    if agent.state is AgentState.NOT_READY:
        return policy.agents.not_ready_reason(agent.reason)
    return None
