"""THE agent state machine: one owner of every agent's state, pure and replayable.

``transition(agent, event, now, policy) -> (agent, [effects])``. ``now`` is monotonic
seconds from the Clock; the machine never reads a clock, a socket or the store.

    logged_out -> ready <-> ringing -> on_call <-> on_hold -> acw -> ready
                  ready|acw|not_ready <-> busy(reason)      (STD-097, away with a reason)
                  ready|acw|busy <-> not_ready(reason)      (STD-099 system reasons, or chosen)

Decisions this module makes (and why):

* **Illegal input raises ``StateError(reason, detail)``; nothing changes.** Snapshots
  are immutable, so "state unchanged" holds by construction; the caller (the
  runtime) turns the error into a 409 for the API, a log line for a PBX fact, or
  ``rejected(...)`` effects that tell the agent's desktop. A *repeated* fact (AMI and
  the AGI flow both report the same answer) is not an error: it returns the agent
  unchanged with no effects, so whichever report arrives first wins.
* **Ring-no-answer (STD-008):** ``OfferTimedOut`` → not_ready(ring_no_answer), an
  ``Alarm`` for the board and the agent's count + 1. The ring timer itself belongs to
  the call (the dial's timeout is the ring limit); this machine only hears the result.
* **ACW (STD-098, STD-100):** entered automatically when a call ends, with a timer at
  ``agents.acw_limit_s``. The agent ends it (ready, busy, not-ready, *24); otherwise at
  the limit the agent becomes ready by itself, on time (``acw_auto_ready``); when that
  is off, the ACW runs past its limit: an overrun, alarmed once, and the agent stays. A
  supervisor may extend the ACW of the current call. ACW time is only time in this
  state (C-3), and each ACW's length is persisted; when an agent's running average
  crosses ``kpi.acw_average_target_s`` the board is alerted (STD-100).
* **The wrap-up form (STD-092, STD-105):** a tracked call that ends owes a form when it
  was outbound and ``outbound.wrapup_required`` is on, or inbound and
  ``outbound.wrapup_inbound`` is on: ``wrapup_call`` names the call. While a form is
  owed the agent cannot become ready (request, *22, end of ACW: ``wrapup_required``);
  busy and not-ready stay allowed (a person may have to step away). The ACW limit does
  not override the form: at ``agents.acw_limit_s`` with the form missing the agent
  *stays* in ACW (an overrun, counted) and the board gets a ``wrapup_missing`` alarm
  (``outbound.wrapup_missing_alarm``); the form submitted after the limit ends the
  ACW at once when ``agents.acw_auto_ready`` is on, since only the form held it. A
  form is owed across log-out: logging in again goes to ACW, not ready. That is the
  **hold** rule (``outbound.wrapup_missing_outbound``, default for outbound). The
  **flag** rule (``outbound.wrapup_missing_inbound``, default for inbound, issue 18:
  "auto-ready still happens; the call is flagged") lets the ACW end as usual; leaving
  ACW without the form emits ``WrapupMissing`` (the call is flagged) and the form is no
  longer owed (``wrapup_flag_only`` on the snapshot says which rule the owed form has).
* **Softphone unreachable:** the agent stays logged in (online time keeps counting,
  the desktop still works) and becomes not_ready(unreachable) with an alarm, if
  ready or ringing; during a call it only raises the STD-045 alarm; in ACW, busy or
  not-ready it is remembered and blocks going ready. Reachable again does not make
  the agent ready: STD-099 wants the agent to do that.
* **Busy needing approval (STD-106):** the agent goes busy at once (nobody can be
  kept from leaving) with ``approval_pending``; a timer flags the absence after
  ``agents.absence_flag_min`` unless a supervisor approved it. Any reason with
  ``max_min`` (meal: 30 min, STD-104) alerts agent and board when exceeded.
* **Refused absence (STD-106):** ``RefuseBusy`` (a supervisor) tells the desktop
  (``absence_refused`` alert) and sends the agent where ``agents.absence_refused_state``
  says: ready (default), or busy with the absence flagged unapproved at once.
* **More ACW on request (STD-100):** ``AskAcwExtension`` (the agent, in ACW, one request
  per ACW, reason bounded) opens ``acw_ask``; ``ExtendAcw`` grants it,
  ``RefuseAcwExtension`` refuses it; leaving ACW ends it. The limit keeps running.
* **Log-in (STD-099):** to ready, or to not_ready(``logged_in``) when
  ``agents.login_state`` says so.
* **What happened** is said in typed domain events (``agents/changes.py``): the
  store, the live stream and the board turn them into rows, frames and figures.
  Times in them are monotonic; the edges, which own the Clock, add wall time.
* **Accumulators:** seconds per bucket since the last ``DayRollover``; a bucket is the
  state name (``ready``, ``ringing``, ``on_call`` = talk, ``on_hold``, ``acw``) or
  ``busy:<reason>`` / ``not_ready:<reason>``. Logged-out time is not counted, so the
  sum of all buckets is the online time (STD-103).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from callflow.agents.changes import (
    AcwExtended,
    AcwFinished,
    AgentAlert,
    AgentChanged,
    AgentDayClosed,
    AgentLoggedIn,
    BusyApproved,
    BusyAwaitingApproval,
    RequestRejected,
    WrapupMissing,
    WrapupOwed,
    WrapupSubmitted,
)
from callflow.agents.events import (
    IN_CALL,
    Actor,
    AgentEvent,
    AgentState,
    ApproveBusy,
    AskAcwExtension,
    CallAnswered,
    CallEnded,
    CallJoined,
    CallOffered,
    DayRollover,
    EndAcw,
    ExtendAcw,
    HoldEnded,
    HoldStarted,
    LogIn,
    LogOut,
    OfferRejected,
    OfferTimedOut,
    OfferWithdrawn,
    PhoneInUse,
    RefuseAcwExtension,
    RefuseBusy,
    RequestState,
    SoftphoneReachable,
    SoftphoneUnreachable,
    SubmitWrapup,
    TimerFired,
    feature_code_event,
)
from callflow.engine.effects import Alarm, CancelTimer, Effect, StartTimer
from callflow.engine.policy import (
    LOGGED_IN,
    REJECTED,
    RING_NO_ANSWER,
    UNREACHABLE,
    Policy,
    Reason,
)
from callflow.engine.rules import enforces
from callflow.errors import StateError

__all__ = [
    "IN_CALL",
    "AgentEvent",
    "AgentSnapshot",
    "AgentState",
    "ApproveBusy",
    "AskAcwExtension",
    "CallAnswered",
    "CallEnded",
    "CallJoined",
    "CallOffered",
    "DayRollover",
    "EndAcw",
    "ExtendAcw",
    "HoldEnded",
    "HoldStarted",
    "LogIn",
    "LogOut",
    "OfferRejected",
    "OfferTimedOut",
    "OfferWithdrawn",
    "PhoneInUse",
    "RefuseAcwExtension",
    "RefuseBusy",
    "RequestState",
    "SoftphoneReachable",
    "SoftphoneUnreachable",
    "SubmitWrapup",
    "TimerFired",
    "acw_overrun",
    "agent_view",
    "bucket",
    "feature_code_event",
    "longest_idle",
    "new_agent",
    "rejected",
    "routable",
    "time_in",
    "timer_key",
    "transition",
]

log = logging.getLogger(__name__)

Step = tuple["AgentSnapshot", list[Effect]]

# Timer kinds; a key is "agent:<id>:<kind>:<seq>" so a timer of an earlier state is stale.
ACW_TIMER = "acw"
REASON_LIMIT_TIMER = "limit"
APPROVAL_TIMER = "approval"


@dataclass(frozen=True)
class AgentSnapshot:
    """One agent at one moment. Immutable: every change makes a new snapshot."""

    agent_id: str  # work number (STD-014 fills it into the opening)
    extension: str = ""  # PJSIP endpoint of the softphone
    state: AgentState = AgentState.LOGGED_OUT
    reason: str = ""  # busy and not_ready only; logged_out: why (e.g. inactivity)
    since: float = 0.0  # monotonic time the state began (longest idle = smallest)
    call_id: str = ""  # ringing, on_call, on_hold, acw: the call concerned
    acw_deadline: float = 0.0  # acw: when the limit is reached
    acw_extended: bool = False  # acw: a supervisor extended it for this call
    softphone_reachable: bool = True  # unknown counts as reachable until PJSIP says otherwise
    approval_pending: bool = False  # busy with a reason awaiting approval (STD-106)
    seq: int = 0  # state changes so far; names the state's timers
    counted_to: float = 0.0  # accumulators include time up to here
    totals: Mapping[str, float] = field(default_factory=dict)  # seconds per bucket today
    calls_handled: int = 0  # calls ended today (ACW average divides by this)
    ring_no_answer_count: int = 0  # STD-008, today
    acw_overruns: int = 0  # ACWs that ran past their limit, today
    phone_in_use: bool = False  # Asterisk has a live channel on the desk (issue 13)
    call_tracked: bool = True  # on_call: a call the engine records (False: a personal call)
    resume_state: AgentState | None = None  # after an untracked call: back to this state
    resume_reason: str = ""
    call_outbound: bool = False  # ringing .. acw: the call is a dialler attempt
    wrapup_call: str = ""  # the call whose wrap-up form is owed (STD-092); "" = none
    wrapup_flag_only: bool = False  # a missing form only flags the call (does not hold ACW)
    acw_ask: str = ""  # acw: the agent's request for more time: "", open, granted, refused
    acw_ask_reason: str = ""  # acw: what the agent gave as the reason (bounded)
    acw_ask_at: float = 0.0  # acw: when the agent asked (monotonic)


def new_agent(agent_id: str, extension: str = "") -> AgentSnapshot:
    """An agent known to the roster, not logged in."""
    return AgentSnapshot(agent_id=agent_id, extension=extension)


def bucket(state: AgentState, reason: str = "") -> str:
    """Accumulator name of a state (with its reason for busy and not-ready)."""
    if state in (AgentState.BUSY, AgentState.NOT_READY):
        return f"{state.value}:{reason}"
    return state.value


def time_in(agent: AgentSnapshot, state: AgentState, reason: str | None = None,
            now: float | None = None) -> float:
    """Seconds today in ``state`` (any reason when ``reason`` is None), up to ``now``."""
    totals = _accumulated(agent, now) if now is not None else agent.totals
    if reason is not None or state not in (AgentState.BUSY, AgentState.NOT_READY):
        return totals.get(bucket(state, reason or ""), 0.0)
    prefix = f"{state.value}:"
    return sum(v for k, v in totals.items() if k.startswith(prefix))


def routable(agent: AgentSnapshot) -> bool:
    """May routing offer this agent a call now? Ready, a reachable softphone, and no live
    channel on the desk (Asterisk is the truth for occupancy, whatever the state says)."""
    return agent.state is AgentState.READY and agent.softphone_reachable \
        and not agent.phone_in_use


def longest_idle(agents: Iterable[AgentSnapshot]) -> AgentSnapshot | None:
    """Routing's default choice: the routable agent ready the longest (ties: work number)."""
    candidates = [a for a in agents if routable(a)]
    return min(candidates, key=lambda a: (a.since, a.agent_id)) if candidates else None


def timer_key(agent: AgentSnapshot, kind: str) -> str:
    return f"agent:{agent.agent_id}:{kind}:{agent.seq}"


def rejected(agent: AgentSnapshot, event: AgentEvent, error: StateError) -> list[Effect]:
    """Effects telling the agent's desktop a request was refused, and why."""
    return [RequestRejected(agent, type(event).__name__, error.reason, error.detail)]


def transition(agent: AgentSnapshot, event: AgentEvent, now: float, policy: Policy) -> Step:
    """Apply one event; raises StateError (agent unchanged) when it is illegal now."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise StateError("unknown_event", type(event).__name__)
    return handler(agent, event, now, policy)


# --- accounting --------------------------------------------------------------------------


def _accumulated(agent: AgentSnapshot, now: float | None) -> dict[str, float]:
    totals = dict(agent.totals)
    if now is not None and agent.state is not AgentState.LOGGED_OUT and now > agent.counted_to:
        key = bucket(agent.state, agent.reason)
        totals[key] = totals.get(key, 0.0) + (now - agent.counted_to)
    return totals


def _reason_def(policy: Policy, state: AgentState, reason: str) -> Reason | None:
    if state is AgentState.BUSY:
        return policy.agents.busy_reason(reason)
    if state is AgentState.NOT_READY:
        return policy.agents.not_ready_reason(reason)
    return None


def agent_view(agent: AgentSnapshot, epoch_of: Callable[[float], float],
               **extra: Any) -> dict[str, Any]:
    """The agent as desktops and the board see it: monotonic times with epoch twins
    (``since_epoch``, ``acw_deadline_epoch``; ``epoch_of`` converts)."""
    in_acw = agent.state is AgentState.ACW
    return {
        "type": "agent_state", "agent_id": agent.agent_id, "extension": agent.extension,
        "state": agent.state.value, "reason": agent.reason, "since": agent.since,
        "call_id": agent.call_id, "softphone_reachable": agent.softphone_reachable,
        "approval_pending": agent.approval_pending, "acw_extended": agent.acw_extended,
        "acw_deadline": agent.acw_deadline if in_acw else None,
        "ring_no_answer_count": agent.ring_no_answer_count,
        "phone_in_use": agent.phone_in_use, "wrapup_call": agent.wrapup_call or None,
        "wrapup_holds": bool(agent.wrapup_call) and not agent.wrapup_flag_only,
        "acw_extend_request": {
            "status": agent.acw_ask, "reason": agent.acw_ask_reason,
            "asked_epoch": round(epoch_of(agent.acw_ask_at), 3)} if agent.acw_ask else None,
        **extra,
        "since_epoch": round(epoch_of(agent.since), 3),
        **({"acw_deadline_epoch": round(epoch_of(agent.acw_deadline), 3)} if in_acw else {}),
    }


def _timers_of(agent: AgentSnapshot, policy: Policy) -> list[str]:
    """Keys of the timers the agent's current state runs (to cancel when it ends)."""
    keys = []
    if agent.state is AgentState.ACW:
        keys.append(timer_key(agent, ACW_TIMER))
    reason = _reason_def(policy, agent.state, agent.reason)
    if reason is not None and reason.max_min > 0:
        keys.append(timer_key(agent, REASON_LIMIT_TIMER))
    if agent.approval_pending:
        keys.append(timer_key(agent, APPROVAL_TIMER))
    return keys


def _enter(agent: AgentSnapshot, state: AgentState, now: float, policy: Policy, *,
           by: Actor, reason: str = "", cause: str = "", **changes: Any) -> Step:
    """Leave the current state (accounting, timers) and enter ``state``."""
    effects: list[Effect] = [CancelTimer(k) for k in _timers_of(agent, policy)]
    if agent.state is AgentState.ACW:
        ended_by = cause if cause in ("acw_limit", "login") else by
        agent, acw_effects = _acw_finished(agent, now, policy, ended_by=ended_by)
        effects += acw_effects
        if state is not AgentState.ACW and agent.wrapup_call and agent.wrapup_flag_only:
            agent, missed = _flag_missing_wrapup(agent, now)
            effects += missed
    changes.setdefault("call_id", agent.call_id if state in IN_CALL | {AgentState.ACW} else "")
    changes.setdefault("call_outbound",
                       agent.call_outbound if state in IN_CALL | {AgentState.ACW} else False)
    changes.setdefault("approval_pending", False)
    if state not in (AgentState.ON_CALL, AgentState.ON_HOLD):
        changes.setdefault("call_tracked", True)
        changes.setdefault("resume_state", None)
        changes.setdefault("resume_reason", "")
    if state is not AgentState.ACW:
        changes.setdefault("acw_extended", False)
        changes.setdefault("acw_deadline", 0.0)
        changes.setdefault("acw_ask", "")  # a request for more ACW lapses with the ACW
        changes.setdefault("acw_ask_reason", "")
        changes.setdefault("acw_ask_at", 0.0)
    new = replace(agent, state=state, reason=reason, since=now, seq=agent.seq + 1,
                  counted_to=now, totals=_accumulated(agent, now), **changes)
    if state is AgentState.ACW:
        effects.append(StartTimer(timer_key(new, ACW_TIMER), new.acw_deadline))
    reason_def = _reason_def(policy, state, reason)
    if reason_def is not None and reason_def.max_min > 0:
        effects.append(StartTimer(timer_key(new, REASON_LIMIT_TIMER),
                                  now + reason_def.max_min * 60))
    if new.approval_pending:
        effects.append(StartTimer(timer_key(new, APPROVAL_TIMER),
                                  now + policy.agents.absence_flag_min * 60))
        # in the event log, so a restart knows this busy still awaits its approval
        effects.append(BusyAwaitingApproval(new.agent_id, new.reason, now))
    effects.append(AgentChanged(new, by=by, cause=cause, prev_state=agent.state,
                                prev_reason=agent.reason))
    return new, effects


@enforces("STD-100", policy=("agents.acw_limit_s", "agents.acw_auto_ready"))
def acw_overrun(ended_by: str, now: float, deadline: float) -> bool:
    """An ACW ran past its limit: it ended after its deadline, and not by the limit itself
    (auto-ready at the limit is on time). The agent machine records it on ``AcwFinished``
    and the call's ACW verdict is that record (engine/verdicts.py)."""
    return ended_by != "acw_limit" and now > deadline


@enforces("STD-100", policy=("kpi.acw_average_target_s",))
def _acw_finished(agent: AgentSnapshot, now: float, policy: Policy, *, ended_by: str) -> Step:
    """Record one ACW's length and alert when the running average crosses the target."""
    seconds = max(0.0, now - agent.since)
    # an overrun is after-call work that really ran past its limit (possible only when
    # the limit does not end it: acw_auto_ready off); auto-ready at the limit is on time
    overrun = acw_overrun(ended_by, now, agent.acw_deadline)
    effects: list[Effect] = [AcwFinished(agent.agent_id, agent.call_id, seconds, ended_by,
                                         overrun, agent.acw_extended, now,
                                         limit_s=max(0.0, agent.acw_deadline - agent.since))]
    total = time_in(agent, AgentState.ACW, now=now)
    calls = max(agent.calls_handled, 1)
    average = total / calls
    before = (total - seconds) / (calls - 1) if calls > 1 else 0.0
    target = policy.kpi.acw_average_target_s
    if before <= target < average:
        effects.append(Alarm("acw_average_high", {
            "agent_id": agent.agent_id, "average_s": round(average, 1), "calls": calls,
            "target_s": target}, std="STD-100"))
    return agent, effects


def _idle_state(agent: AgentSnapshot) -> tuple[AgentState, str]:
    """Where an agent goes when free: ready, unless the softphone is gone (STD-099)."""
    if agent.softphone_reachable:
        return AgentState.READY, ""
    return AgentState.NOT_READY, UNREACHABLE


def _to_idle(agent: AgentSnapshot, now: float, policy: Policy, *, by: Actor, cause: str,
             **changes: Any) -> Step:
    state, reason = _idle_state(agent)
    return _enter(agent, state, now, policy, by=by, reason=reason, cause=cause, **changes)


# --- requests ------------------------------------------------------------------------------


@enforces("STD-099", policy=("agents.login_state",))
def _login(agent: AgentSnapshot, event: LogIn, now: float, policy: Policy) -> Step:
    """Log in to ready, or (``agents.login_state`` = not_ready) to not-ready with the
    system reason ``logged_in``, so no call is offered until the agent says ready. A
    softphone already known unreachable wins (not_ready(unreachable)); a form still owed
    wins over both (ACW)."""
    if agent.state is not AgentState.LOGGED_OUT:
        raise StateError("already_logged_in", f"agent {agent.agent_id} is {agent.state}")
    extension = event.extension or agent.extension
    if not extension:
        raise StateError("no_extension", "log in needs the softphone's extension")
    reachable = agent.softphone_reachable if event.reachable is None else event.reachable
    agent = replace(agent, extension=extension, counted_to=now, softphone_reachable=reachable)
    if agent.wrapup_call:  # a form still owed from before the log-out (STD-092)
        new, effects = _enter(agent, AgentState.ACW, now, policy, by=event.by, cause="login",
                              call_id=agent.wrapup_call,
                              acw_deadline=now + policy.agents.acw_limit_s)
    elif policy.agents.login_state == "not_ready" and agent.softphone_reachable:
        new, effects = _enter(agent, AgentState.NOT_READY, now, policy, by=event.by,
                              reason=LOGGED_IN, cause="login")
    else:
        new, effects = _to_idle(agent, now, policy, by=event.by, cause="login")
    if not new.softphone_reachable:
        effects.append(_unreachable_alarm(new, "STD-099"))
    # the desk the agent sits at, so an engine restart puts them back there (hot-desking)
    effects.append(AgentLoggedIn(new.agent_id, extension, event.by, now))
    return new, effects


def _logout(agent: AgentSnapshot, event: LogOut, now: float, policy: Policy) -> Step:
    if agent.state is AgentState.LOGGED_OUT:
        raise StateError("not_logged_in", f"agent {agent.agent_id} is not logged in")
    if agent.state in IN_CALL:
        raise StateError("on_call", "log out after the call")
    return _enter(agent, AgentState.LOGGED_OUT, now, policy, by=event.by, reason=event.reason,
                  cause="logout")


def _check_present(agent: AgentSnapshot) -> None:
    if agent.state is AgentState.LOGGED_OUT:
        raise StateError("not_logged_in", f"agent {agent.agent_id} is not logged in")
    if agent.state in IN_CALL:
        raise StateError("on_call", f"agent {agent.agent_id} is {agent.state}")


@enforces("STD-097", policy=("agents.busy_reasons",))
def _request(agent: AgentSnapshot, event: RequestState, now: float, policy: Policy) -> Step:
    _check_present(agent)
    target = event.state
    if target is AgentState.READY:
        if agent.state is AgentState.READY:
            raise StateError("no_change", "already ready")
        if not agent.softphone_reachable:
            raise StateError("softphone_unreachable", "register the softphone first (STD-099)")
        _check_wrapup(agent)
        return _enter(agent, AgentState.READY, now, policy, by=event.by, cause="request")
    if target not in (AgentState.BUSY, AgentState.NOT_READY):
        raise StateError("not_requestable", f"{target} follows calls; it cannot be requested")
    if not event.reason:
        raise StateError("reason_required", f"{target} needs a reason (STD-097, STD-099)")
    reason = _reason_def(policy, target, event.reason)
    if reason is None:
        raise StateError("unknown_reason", f"{event.reason!r} is not a {target} reason")
    if reason.system and event.by != "system":
        raise StateError("system_reason", f"{event.reason!r} is set by the engine only")
    if agent.state is target and agent.reason == event.reason:
        raise StateError("no_change", f"already {target} ({event.reason})")
    pending = reason.approval_required and event.by not in ("supervisor", "system")
    return _enter(agent, target, now, policy, by=event.by, reason=event.reason,
                  cause="request", approval_pending=pending)


#: The reason code of a meal break (busy or not-ready), whose rotation the cap limits.
MEAL_REASON = "meal"


@enforces("STD-104", policy=("agents.meal_concurrent_cap",))
def check_meal_rotation(agent: AgentSnapshot, event: RequestState,
                        peers: Iterable[AgentSnapshot], policy: Policy) -> None:
    """STD-104: meals are taken in rotation. A meal break asked for while ``cap`` agents of
    the team (``peers``: the roster until it carries teams) are already on one is refused
    with ``meal_cap_reached`` and the agent's state is left as it was; 0 = no cap. The
    engine (``by="system"``) and a supervisor are never refused."""
    cap = policy.agents.meal_concurrent_cap
    if cap <= 0 or event.reason != MEAL_REASON or event.by in ("system", "supervisor"):
        return
    if event.state not in (AgentState.BUSY, AgentState.NOT_READY):
        return
    if agent.state in (AgentState.BUSY, AgentState.NOT_READY) and agent.reason == MEAL_REASON:
        return  # already on a meal break: switching busy <-> not-ready takes no new place
    on_meal = sorted(p.agent_id for p in peers if p.agent_id != agent.agent_id
                     and p.state in (AgentState.BUSY, AgentState.NOT_READY)
                     and p.reason == MEAL_REASON)
    if len(on_meal) >= cap:
        raise StateError("meal_cap_reached",
                         f"{len(on_meal)} of {cap} meal places are taken "
                         f"({', '.join(on_meal)}); take the meal break when one is back "
                         "(STD-104: meals in rotation)")


def _end_acw(agent: AgentSnapshot, event: EndAcw, now: float, policy: Policy) -> Step:
    if agent.state is not AgentState.ACW:
        raise StateError("not_in_acw", f"agent {agent.agent_id} is {agent.state}")
    _check_wrapup(agent)
    return _to_idle(agent, now, policy, by=event.by, cause="end_acw")


#: The longest notes a wrap-up form keeps (characters); longer ones are refused whole.
MAX_WRAPUP_NOTES = 4000


@enforces("STD-092", policy=("outbound.wrapup_required", "outbound.wrapup_inbound"))
def _check_wrapup(agent: AgentSnapshot) -> None:
    """STD-092: no ready while the wrap-up form of the last call is owed (a form that
    only flags its call when missing does not hold the agent)."""
    if agent.wrapup_call and not agent.wrapup_flag_only:
        raise StateError("wrapup_required", f"submit the wrap-up form of call "
                                            f"{agent.wrapup_call} first (STD-092)")


def wrapup_owed(outbound: bool, policy: Policy) -> bool:
    """Does a call of this direction owe the wrap-up form (STD-092)?"""
    return policy.outbound.wrapup_required if outbound else policy.outbound.wrapup_inbound


@enforces("STD-092", policy=("outbound.wrapup_missing_inbound",
                             "outbound.wrapup_missing_outbound"))
def wrapup_flag_only(outbound: bool, policy: Policy) -> bool:
    """Does a missing form of a call of this direction only flag the call (the ACW ends as
    usual: auto-ready at the limit, issue 18) rather than hold the agent in ACW?"""
    out = policy.outbound
    return (out.wrapup_missing_outbound if outbound else out.wrapup_missing_inbound) == "flag"


@enforces("STD-092", "STD-105")
def _flag_missing_wrapup(agent: AgentSnapshot, now: float) -> Step:
    """The ACW ended without the form of a call whose missing form only flags it: the
    call is marked ``wrapup_missing`` (stored with the call, seen by QA and the board) and
    the form is no longer owed; the agent goes on as the ACW's end says."""
    new = replace(agent, wrapup_call="", wrapup_flag_only=False)
    return new, [WrapupMissing(agent.agent_id, agent.wrapup_call, now)]


def _submit_wrapup(agent: AgentSnapshot, event: SubmitWrapup, now: float,
                   policy: Policy) -> Step:
    """Take the form: the disposition must be one of the Policy's, the call the owed one.
    Submitted after the ACW limit (the form held the agent), the ACW ends at once."""
    if not agent.wrapup_call:
        raise StateError("no_wrapup_due", f"agent {agent.agent_id} owes no wrap-up form")
    if event.call_id and event.call_id != agent.wrapup_call:
        raise StateError("wrong_call", f"the form owed is for call {agent.wrapup_call}, "
                                       f"not {event.call_id}")
    if policy.outbound.disposition(event.disposition) is None:
        codes = ", ".join(d.code for d in policy.outbound.dispositions)
        raise StateError("unknown_disposition",
                         f"{event.disposition[:64]!r} is not a disposition; one of {codes}")
    if not isinstance(event.notes, str) or len(event.notes) > MAX_WRAPUP_NOTES:
        raise StateError("notes_too_long", f"notes are at most {MAX_WRAPUP_NOTES} characters")
    submitted = WrapupSubmitted(agent.agent_id, agent.wrapup_call, event.disposition,
                                event.notes, event.by, now)
    new = replace(agent, wrapup_call="", wrapup_flag_only=False)
    if (new.state is AgentState.ACW and now >= new.acw_deadline
            and policy.agents.acw_auto_ready):
        new, effects = _to_idle(new, now, policy, by=event.by, cause="wrapup")
        return new, [submitted, *effects]
    return new, [submitted, AgentChanged(new, by=event.by, cause="wrapup")]


def _extend_acw(agent: AgentSnapshot, event: ExtendAcw, now: float, policy: Policy) -> Step:
    if event.by != "supervisor":
        raise StateError("supervisor_only", "only a supervisor extends ACW")
    if agent.state is not AgentState.ACW:
        raise StateError("not_in_acw", f"agent {agent.agent_id} is {agent.state}")
    if not event.seconds > 0:
        raise StateError("bad_extension", f"seconds must be > 0, got {event.seconds}")
    deadline = max(agent.acw_deadline, now) + event.seconds
    new = replace(agent, acw_deadline=deadline, acw_extended=True,
                  acw_ask="granted" if agent.acw_ask == "open" else agent.acw_ask)
    effects: list[Effect] = [StartTimer(timer_key(new, ACW_TIMER), new.acw_deadline)]
    effects.append(AgentChanged(new, by=event.by, cause="acw_extended"))
    effects.append(AcwExtended(new.agent_id, new.call_id, event.seconds, new.acw_deadline,
                               now))
    return new, effects


@enforces("STD-106")
def _approve(agent: AgentSnapshot, event: ApproveBusy, now: float, policy: Policy) -> Step:
    if event.by != "supervisor":
        raise StateError("supervisor_only", "only a supervisor approves an absence")
    if not agent.approval_pending:
        raise StateError("nothing_to_approve", f"agent {agent.agent_id} awaits no approval")
    new = replace(agent, approval_pending=False)
    effects: list[Effect] = [CancelTimer(timer_key(agent, APPROVAL_TIMER))]
    effects.append(AgentChanged(new, by=event.by, cause="approved"))
    effects.append(BusyApproved(new.agent_id, new.reason, now))
    return new, effects


@enforces("STD-106", policy=("agents.absence_refused_state",))
def _refuse_busy(agent: AgentSnapshot, event: RefuseBusy, now: float, policy: Policy) -> Step:
    """A supervisor refuses an absence awaiting approval. The agent's desktop is told (an
    ``absence_refused`` alert) and, per ``agents.absence_refused_state``: ``ready`` sends
    the agent back to work (calls are offered again; an unreachable softphone makes it
    not-ready, a wrap-up form still owed keeps the agent busy as below); ``busy`` leaves
    the agent away and flags the absence unapproved at once (STD-106's alarm, ``refused``)."""
    if event.by != "supervisor":
        raise StateError("supervisor_only", "only a supervisor refuses an absence")
    if not agent.approval_pending:
        raise StateError("nothing_to_refuse", f"agent {agent.agent_id} awaits no approval")
    detail = {"agent_id": agent.agent_id, "reason": agent.reason,
              "sent_to": policy.agents.absence_refused_state}
    if policy.agents.absence_refused_state == "ready" and not agent.wrapup_call:
        new, effects = _to_idle(agent, now, policy, by=event.by, cause="absence_refused")
        return new, [*effects, AgentAlert(agent.agent_id, "absence_refused", detail)]
    new = replace(agent, approval_pending=False)
    return new, [CancelTimer(timer_key(agent, APPROVAL_TIMER)),
                 AgentChanged(new, by=event.by, cause="absence_refused"),
                 AgentAlert(agent.agent_id, "absence_refused", {**detail, "sent_to": "busy"}),
                 Alarm("unapproved_absence", {
                     "agent_id": agent.agent_id, "reason": agent.reason, "refused": True,
                     "minutes": round((now - agent.since) / 60, 1)}, std="STD-106")]


#: The longest reason an agent may give when asking for more ACW time (characters).
MAX_ACW_ASK_REASON = 200


@enforces("STD-100", policy=("agents.acw_extension_s",))
def _ask_acw(agent: AgentSnapshot, event: AskAcwExtension, now: float, policy: Policy) -> Step:
    """The agent asks for more after-call work time: only in ACW, one request per ACW
    (an open, granted or refused request is not asked again), the reason bounded. The
    board sees it on the agent's state (``acw_extend_request``); a supervisor grants it
    (``ExtendAcw`` of ``agents.acw_extension_s``) or refuses it. The ACW limit still
    runs meanwhile: a request not answered in time lapses with the ACW."""
    if agent.state is not AgentState.ACW:
        raise StateError("not_in_acw", f"agent {agent.agent_id} is {agent.state}")
    if agent.acw_ask:
        raise StateError("already_asked", f"one request per ACW; this one is {agent.acw_ask}")
    if not isinstance(event.reason, str) or len(event.reason) > MAX_ACW_ASK_REASON:
        raise StateError("reason_too_long",
                         f"the reason is at most {MAX_ACW_ASK_REASON} characters")
    new = replace(agent, acw_ask="open", acw_ask_reason=event.reason, acw_ask_at=now)
    return new, [AgentChanged(new, by=event.by, cause="acw_extend_requested")]


def _refuse_acw(agent: AgentSnapshot, event: RefuseAcwExtension, now: float,
                policy: Policy) -> Step:
    if event.by != "supervisor":
        raise StateError("supervisor_only", "only a supervisor refuses more ACW time")
    if agent.state is not AgentState.ACW or agent.acw_ask != "open":
        raise StateError("nothing_to_refuse", f"agent {agent.agent_id} has no open request")
    new = replace(agent, acw_ask="refused")
    return new, [AgentChanged(new, by=event.by, cause="acw_extend_refused")]


# --- facts -------------------------------------------------------------------------------


def _stale(agent: AgentSnapshot, event: AgentEvent) -> StateError:
    return StateError("stale_event", f"{type(event).__name__} does not fit agent "
                                     f"{agent.agent_id} in {agent.state} ({agent.call_id})")


def _offered(agent: AgentSnapshot, event: CallOffered, now: float, policy: Policy) -> Step:
    if agent.state is AgentState.RINGING and agent.call_id == event.call_id:
        return agent, []
    if not routable(agent):
        raise StateError("not_routable", f"agent {agent.agent_id} is {agent.state}"
                         + ("" if agent.softphone_reachable else ", softphone unreachable"))
    return _enter(agent, AgentState.RINGING, now, policy, by="system", cause="offered",
                  call_id=event.call_id, call_outbound=event.outbound)


def _answered(agent: AgentSnapshot, event: CallAnswered, now: float, policy: Policy) -> Step:
    if agent.call_id != event.call_id:
        raise _stale(agent, event)
    if agent.state in (AgentState.ON_CALL, AgentState.ON_HOLD):
        return agent, []
    if agent.state is not AgentState.RINGING:
        raise _stale(agent, event)
    return _enter(agent, AgentState.ON_CALL, now, policy, by="system", cause="answered")


@enforces("STD-008", "STD-099", policy=("answering.rona_sets_not_ready",))
def _timed_out(agent: AgentSnapshot, event: OfferTimedOut, now: float, policy: Policy) -> Step:
    if agent.state is not AgentState.RINGING or agent.call_id != event.call_id:
        raise _stale(agent, event)
    agent = replace(agent, ring_no_answer_count=agent.ring_no_answer_count + 1)
    if policy.answering.rona_sets_not_ready:
        new, effects = _enter(agent, AgentState.NOT_READY, now, policy, by="system",
                              reason=RING_NO_ANSWER, cause="ring_no_answer")
    else:
        new, effects = _to_idle(agent, now, policy, by="system", cause="ring_no_answer")
    effects.append(Alarm("ring_no_answer", {
        "agent_id": agent.agent_id, "call_id": event.call_id,
        "count": new.ring_no_answer_count}, std="STD-008"))
    return new, effects


def _rejected(agent: AgentSnapshot, event: OfferRejected, now: float, policy: Policy) -> Step:
    """The phone refused the offer (486, 603, a forward): the call goes to the next agent;
    the agent, who is not taking calls, goes not-ready per Policy. Not counted as a
    ring-no-answer: the ring limit did not run out."""
    if agent.state is not AgentState.RINGING or agent.call_id != event.call_id:
        raise _stale(agent, event)
    if policy.answering.rejection_sets_not_ready:
        new, effects = _enter(agent, AgentState.NOT_READY, now, policy, by="system",
                              reason=REJECTED, cause=f"rejected_{event.why}")
    else:
        new, effects = _to_idle(agent, now, policy, by="system", cause=f"rejected_{event.why}")
    effects.append(Alarm("offer_rejected", {
        "agent_id": agent.agent_id, "call_id": event.call_id, "why": event.why}, std="STD-008"))
    return new, effects


def _joined(agent: AgentSnapshot, event: CallJoined, now: float, policy: Policy) -> Step:
    """The agent talks on a call the router did not give them (a transfer or forward made
    on the phone, the fallback queue, a personal call): they are on that call."""
    if agent.state in (AgentState.ON_CALL, AgentState.ON_HOLD):
        if agent.call_id == event.call_id:
            return agent, []
        if not agent.call_tracked and event.tracked:
            # the call the agent was on became one of ours (an attended transfer's
            # consultation turned into the transferred caller): same conversation
            new = replace(agent, call_id=event.call_id, call_tracked=True)
            return new, [AgentChanged(new, by="system", cause="joined")]
        raise StateError("two_calls", f"agent {agent.agent_id} is on {agent.call_id}; "
                                      f"{event.call_id} too")
    if agent.state is AgentState.LOGGED_OUT:
        raise StateError("not_logged_in", f"agent {agent.agent_id} talks while logged out")
    resume: dict[str, Any] = {}
    if not event.tracked and agent.state in (AgentState.READY, AgentState.NOT_READY,
                                             AgentState.BUSY):
        resume = {"resume_state": agent.state, "resume_reason": agent.reason}
    outbound = agent.call_outbound and agent.call_id == event.call_id
    return _enter(agent, AgentState.ON_CALL, now, policy, by="system", cause="joined",
                  call_id=event.call_id, call_tracked=event.tracked, call_outbound=outbound,
                  **resume)


def _phone(agent: AgentSnapshot, event: PhoneInUse, now: float, policy: Policy) -> Step:
    if agent.phone_in_use == event.busy:
        return agent, []
    new = replace(agent, phone_in_use=event.busy)
    return new, [AgentChanged(new, by="system", cause="phone")]


def _withdrawn(agent: AgentSnapshot, event: OfferWithdrawn | CallEnded, now: float,
               policy: Policy) -> Step:
    if agent.state is not AgentState.RINGING or agent.call_id != event.call_id:
        raise _stale(agent, event)
    return _to_idle(agent, now, policy, by="system", cause="offer_withdrawn")


@enforces("STD-098", policy=("agents.acw_limit_s",))
def _ended(agent: AgentSnapshot, event: CallEnded, now: float, policy: Policy) -> Step:
    if agent.call_id != event.call_id:
        raise _stale(agent, event)
    if agent.state is AgentState.ACW:
        return agent, []
    if agent.state is AgentState.RINGING:
        return _withdrawn(agent, event, now, policy)
    if agent.state not in (AgentState.ON_CALL, AgentState.ON_HOLD):
        raise _stale(agent, event)
    if not agent.call_tracked:  # a personal call: back to where the agent was, no ACW
        if agent.resume_state is None:
            return _to_idle(agent, now, policy, by="system", cause="call_ended")
        state, reason = agent.resume_state, agent.resume_reason
        if state is AgentState.READY and not agent.softphone_reachable:
            state, reason = _idle_state(agent)
        return _enter(agent, state, now, policy, by="system", reason=reason,
                      cause="call_ended")
    agent = replace(agent, calls_handled=agent.calls_handled + 1)
    if wrapup_owed(agent.call_outbound, policy):
        agent = replace(agent, wrapup_call=agent.call_id,
                        wrapup_flag_only=wrapup_flag_only(agent.call_outbound, policy))
    limit = policy.agents.acw_limit_s
    # ACW switched off: straight back to work, a 0 s ACW on the record (a form that holds
    # the agent: ACW; one that would only flag the call: none asked, nothing flagged)
    if limit <= 0 and (not agent.wrapup_call or agent.wrapup_flag_only):
        agent = replace(agent, wrapup_call="", wrapup_flag_only=False)
        new, effects = _to_idle(agent, now, policy, by="system", cause="call_ended")
        effects.append(AcwFinished(agent.agent_id, agent.call_id, 0.0, "no_acw", False, False,
                                   now))
        return new, effects
    new, effects = _enter(agent, AgentState.ACW, now, policy, by="system",
                          cause="call_ended", acw_deadline=now + limit, acw_extended=False)
    if new.wrapup_call:
        effects.append(WrapupOwed(new.agent_id, new.wrapup_call, now, new.wrapup_flag_only))
    return new, effects


def _hold(agent: AgentSnapshot, event: HoldStarted | HoldEnded, now: float,
          policy: Policy) -> Step:
    to_hold = isinstance(event, HoldStarted)
    target = AgentState.ON_HOLD if to_hold else AgentState.ON_CALL
    source = AgentState.ON_CALL if to_hold else AgentState.ON_HOLD
    if agent.call_id != event.call_id or agent.state not in (source, target):
        raise _stale(agent, event)
    if agent.state is target:
        return agent, []
    return _enter(agent, target, now, policy, by="system",
                  cause="hold" if to_hold else "unhold")


@enforces("STD-104", "STD-106", policy=("agents.busy_reasons", "agents.absence_flag_min"))
def _timer(agent: AgentSnapshot, event: TimerFired, now: float, policy: Policy) -> Step:
    if event.key == timer_key(agent, ACW_TIMER) and agent.state is AgentState.ACW:
        return _acw_limit(agent, now, policy)
    if event.key == timer_key(agent, REASON_LIMIT_TIMER):
        reason = _reason_def(policy, agent.state, agent.reason)
        if reason is not None and reason.max_min > 0:
            detail = {"agent_id": agent.agent_id, "state": agent.state.value,
                      "reason": agent.reason, "limit_min": reason.max_min}
            alert = AgentAlert(agent.agent_id, "reason_overrun", detail)
            std = "STD-104" if agent.reason == "meal" else "STD-105"
            return agent, [alert, Alarm("reason_overrun", detail, std=std)]
    if event.key == timer_key(agent, APPROVAL_TIMER) and agent.approval_pending:
        return agent, [Alarm("unapproved_absence", {
            "agent_id": agent.agent_id, "reason": agent.reason,
            "minutes": policy.agents.absence_flag_min}, std="STD-106")]
    log.debug("agent %s: stale timer %s ignored", agent.agent_id, event.key)
    return agent, []


@enforces("STD-100", policy=("agents.acw_limit_s", "agents.acw_auto_ready"))
def _acw_limit(agent: AgentSnapshot, now: float, policy: Policy) -> Step:
    """STD-100: the ACW limit is reached: the agent is ready by itself (on time, not an
    overrun), or, with auto-ready off, the ACW now runs past its limit: counted and
    alarmed once, and the agent is left alone."""
    if agent.wrapup_call and not agent.wrapup_flag_only:
        return _wrapup_missing(agent, now, policy)
    if policy.agents.acw_auto_ready:
        return _to_idle(agent, now, policy, by="system", cause="acw_limit")
    new = replace(agent, acw_overruns=agent.acw_overruns + 1)
    return new, [AgentChanged(new, by="system", cause="acw_limit"), Alarm("acw_overrun", {
        "agent_id": agent.agent_id, "call_id": agent.call_id,
        "seconds": round(now - agent.since, 1), "extended": agent.acw_extended},
        std="STD-100")]


@enforces("STD-105", policy=("outbound.wrapup_missing_alarm",))
def _wrapup_missing(agent: AgentSnapshot, now: float, policy: Policy) -> Step:
    """The ACW limit came and the form did not: the form wins (STD-092), the agent stays
    in ACW, the overrun is counted, the agent is reminded and the board alarmed once
    (STD-105: hanging on after a call without the form is penalised)."""
    new = replace(agent, acw_overruns=agent.acw_overruns + 1)
    detail = {"agent_id": agent.agent_id, "call_id": agent.wrapup_call,
              "seconds": round(now - agent.since, 1)}
    effects: list[Effect] = [AgentChanged(new, by="system", cause="wrapup_missing"),
                             AgentAlert(agent.agent_id, "wrapup_missing", detail)]
    if policy.outbound.wrapup_missing_alarm:
        effects.append(Alarm("wrapup_missing", detail, std="STD-092"))
    return new, effects


def _unreachable_alarm(agent: AgentSnapshot, std: str) -> Alarm:
    return Alarm("softphone_unreachable", {
        "agent_id": agent.agent_id, "extension": agent.extension,
        "state": agent.state.value, "call_id": agent.call_id}, std=std)


@enforces("STD-045", "STD-099", policy=("supervision.softphone_grace_s",))
def _softphone(agent: AgentSnapshot, event: SoftphoneReachable | SoftphoneUnreachable,
               now: float, policy: Policy) -> Step:
    reachable = isinstance(event, SoftphoneReachable)
    if agent.softphone_reachable == reachable:
        return agent, []
    flagged = replace(agent, softphone_reachable=reachable)
    if reachable or agent.state is AgentState.LOGGED_OUT:
        return flagged, [AgentChanged(flagged, by="system", cause="softphone")]
    if agent.state in (AgentState.READY, AgentState.RINGING):
        new, effects = _enter(flagged, AgentState.NOT_READY, now, policy, by="system",
                              reason=UNREACHABLE, cause="softphone_unreachable")
        return new, [*effects, _unreachable_alarm(agent, "STD-099")]
    std = "STD-045" if agent.state in IN_CALL else "STD-099"
    return flagged, [AgentChanged(flagged, by="system", cause="softphone"),
                     _unreachable_alarm(agent, std)]


def _rollover(agent: AgentSnapshot, event: DayRollover, now: float, policy: Policy) -> Step:
    totals = _accumulated(agent, now)
    effects: list[Effect] = [AgentDayClosed(agent.agent_id, totals, agent.calls_handled,
                                            agent.ring_no_answer_count, agent.acw_overruns,
                                            now)]
    new = replace(agent, totals={}, counted_to=now, calls_handled=0, ring_no_answer_count=0,
                  acw_overruns=0)
    return new, effects


_HANDLERS: dict[type, Callable[[AgentSnapshot, Any, float, Policy], Step]] = {
    LogIn: _login, LogOut: _logout, RequestState: _request, EndAcw: _end_acw,
    SubmitWrapup: _submit_wrapup,
    ExtendAcw: _extend_acw, ApproveBusy: _approve, CallOffered: _offered,
    RefuseBusy: _refuse_busy, AskAcwExtension: _ask_acw, RefuseAcwExtension: _refuse_acw,
    CallAnswered: _answered, OfferTimedOut: _timed_out, OfferWithdrawn: _withdrawn,
    CallEnded: _ended, HoldStarted: _hold, HoldEnded: _hold, TimerFired: _timer,
    OfferRejected: _rejected, CallJoined: _joined, PhoneInUse: _phone,
    SoftphoneReachable: _softphone, SoftphoneUnreachable: _softphone, DayRollover: _rollover,
}
