"""Outbound calls and follow-up tasks: every rule of the dialer, pure (STD-081..096, C-11).

No socket, no database, no loop here: wall times come in as arguments (the Clock's
``wall()`` at the edge), Asterisk's facts come in as plain events, decisions go out
as values. ``callflow.outbound.dialer`` is the thin edge that claims tasks from the store,
sends the AMI Originate and feeds the events back.

How an attempt runs (agent-first; preview differs only in who starts it):

    Originate Channel=PJSIP/<agent>, ChannelId=<attempt id>, Timeout=agent ring limit
      -> the agent's softphone rings (agent state ringing: no inbound call is offered)
      -> the agent answers (on_call; the agent hears the customer's phone ring)
      -> dialplan [callflow-outbound] Dial(<customer>, <6 rings in seconds>)
      -> DialEnd ANSWER (bridged) | BUSY | NOANSWER | CONGESTION | CHANUNAVAIL | CANCEL
      -> Hangup of both legs, each with its Q.850 cause.

Decisions this module makes (and why):

* **Six rings is the customer's ring limit** (STD-081): ``no_answer_rings`` of the
  Policy times the ring cycle of its country (cn 30 s, us 36 s). In agent-first mode
  that is Dial()'s timeout on the customer leg; the Originate's own timeout bounds
  the agent's softphone and is the inbound offer limit (STD-008, 3 rings), because
  that leg is an offer to an agent like any other.
* **Outcome from Asterisk's facts, not from OriginateResponse's Reason** (harness
  notes: a busy callee gives Reason 0): ``DialEnd`` DialStatus first, then the
  customer leg's Hangup cause (1/3/22/28 invalid number, 17/21 busy, 18/19 no
  answer, anything else failed). The cause is kept with the attempt.
* **Only attempts that reached the customer's line count** against max attempts:
  an Originate that was refused, a link that was down, an agent who did not pick up
  their own phone are recorded in the history but refunded (the customer was never
  disturbed); the task stays due.
* **Retry rule** (STD-081 ASSUMPTION): not reached -> again after
  ``retry_spacing_min``, moved into the next calling window (STD-085) on a calling
  day; a follow-up (STD-090) dials one number at most ``attempts_per_number_per_run``
  times per calling day, the next attempt is the next calling day. Invalid number ->
  unreachable at once; max attempts used -> unreachable, and reported.
* **Due times** per kind of task; a contact under several rules gets the earliest
  due time (C-11). Follow-ups created when an agent closes a call are due the next
  working day of the business calendar (STD-089), at the opening of the calling
  window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

from callflow.engine import numbers, survey
from callflow.engine.effects import DomainEvent, Originate
from callflow.engine.policy import Policy, outbound_no_answer_seconds, ring_limit_seconds
from callflow.engine.rules import enforces
from callflow.engine.workcalendar import MAX_DAYS_AHEAD, at_local
from callflow.engine.workcalendar import next_working_day as next_working_day
from callflow.engine.workcalendar import zone as zone  # re-exported: one calendar
from callflow.errors import PolicyError, StateError

# --- outcomes ---------------------------------------------------------------------------


class AttemptOutcome(StrEnum):
    """How one dial of a task ended (task_attempts.outcome)."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"  # rang the full six rings (STD-081)
    BUSY = "busy"  # 486 / cause 17, or the customer declined (cause 21)
    FAILED = "failed"  # congestion, channel unavailable, any other failure
    INVALID_NUMBER = "invalid_number"  # the network says the number does not exist
    AGENT_CANCELLED = "agent_cancelled"  # the agent hung up while the customer's phone rang
    UNKNOWN = "unknown"  # the AMI link was down when the call ended: nobody saw how
    AGENT_NO_ANSWER = "agent_no_answer"  # the agent's own softphone was not picked up
    NOT_DIALLED = "not_dialled"  # Originate refused, AMI unavailable, agent hung up first
    NO_ROUTE = "no_route"  # the PBX has no way out to the number (no outbound trunk)
    NOT_OFFERED = "not_offered"  # the claimed agent was taken meanwhile: nothing was tried


#: Outcomes where nothing was tried on the customer's behalf because of the agent's own
#: phone or a claim race: recorded, not counted (refunded). A ``not_dialled`` or
#: ``no_route`` attempt *is* counted (issue 16): refunding them let a centre with no
#: outbound route redial the same number every 30 s forever.
REFUNDED = frozenset({AttemptOutcome.AGENT_NO_ANSWER, AttemptOutcome.NOT_OFFERED})
#: The agent's leg ends with this Q.850 cause (3, no route to destination) before any
#: customer leg was dialled when nothing can carry the call: the dialplan's no-route
#: branch hangs up with it, and Dial gives it to the caller leg when the outbound trunk
#: is unreachable (measured, tests/integration/test_trunks_live.py).
NO_ROUTE_CAUSE = 3
#: Q.850 causes saying the number itself is wrong: 1 unallocated, 3 no route to
#: destination, 22 number changed, 28 invalid number format.
INVALID_NUMBER_CAUSES = frozenset({1, 3, 22, 28})
BUSY_CAUSES = frozenset({17, 21})  # user busy, call rejected (603 Decline)
NO_ANSWER_CAUSES = frozenset({18, 19})  # no user responding, alerting without answer
#: The customer leg's cause when Dial's own timeout cancelled it (none yet, 0, 16 normal).
#: Dial also says NOANSWER for a final code it has no status for (a carrier's 499 is
#: cause 127 interworking, measured through a trunk, tests/integration/test_trunks_live.py):
#: that is a failure, not six unanswered rings.
DIAL_TIMEOUT_CAUSES = frozenset({None, 0, 16})


def classify(*, answered: bool, dial_status: str = "", cause: int | None = None
             ) -> AttemptOutcome:
    """The outcome of a dial that reached Asterisk, from DialEnd and the Hangup cause.

    ``dial_status`` wins where it is definite (Dial knows it timed out even though
    the cancelled leg's cause is 0 or 16); the cause decides the rest, which also
    covers an Originate straight to a customer (no DialEnd when it never answers).
    """
    status = dial_status.upper()
    if answered or status == "ANSWER":
        return AttemptOutcome.ANSWERED
    if status == "BUSY":
        return AttemptOutcome.BUSY
    if status == "NOANSWER" and (cause in DIAL_TIMEOUT_CAUSES or cause in NO_ANSWER_CAUSES):
        return AttemptOutcome.NO_ANSWER
    if cause in INVALID_NUMBER_CAUSES:
        return AttemptOutcome.INVALID_NUMBER
    if cause in BUSY_CAUSES:
        return AttemptOutcome.BUSY
    if cause in NO_ANSWER_CAUSES:
        return AttemptOutcome.NO_ANSWER
    if status == "CANCEL":
        return AttemptOutcome.AGENT_CANCELLED
    return AttemptOutcome.FAILED


# --- numbers ------------------------------------------------------------------------------

def normalize_number(raw: str, country: str = numbers.DEFAULT_COUNTRY) -> str:
    """The stored form of a customer's number, or ``StateError('invalid_number')`` saying
    what is wrong: E.164 for a number written with ``+`` or a prefix of ``country``, the
    digits as typed otherwise (``callflow.engine.numbers``)."""
    return numbers.normalize(raw, country)


@dataclass(frozen=True)
class OutboundRoute:
    """How customers are dialled: the trunk's country and number format, and the
    number it presents (the centre's) by default and per task kind.

    ``OutboundRoute()`` (no trunk configured) dials numbers as stored and presents no
    number of its own: the Policy's ``outbound.caller_id`` or nothing, never the
    customer's own number."""

    country: str = numbers.DEFAULT_COUNTRY
    number_format: numbers.NumberFormat = "national"
    presented_number: str = ""
    presented_numbers: Mapping[str, str] = field(default_factory=dict)

    def dialled(self, number: str) -> str:
        """The digits sent to the trunk for stored ``number``."""
        return numbers.dial_form(number, self.country, self.number_format)


# --- ring limits ----------------------------------------------------------------------------


@enforces("STD-081", policy=("outbound.no_answer_rings",))
def customer_ring_seconds(policy: Policy) -> float:
    """STD-081: the customer's phone rings this long, then we hang up (cn 30 s, us 36 s)."""
    return outbound_no_answer_seconds(policy)


def agent_ring_seconds(policy: Policy) -> float:
    """STD-008: the agent's own softphone rings this long (agent-first), like any offer."""
    return ring_limit_seconds(policy)


def caller_id_for(kind: str, policy: Policy, route: OutboundRoute | None = None,
                  key: str = "") -> str:
    """The number presented to the customer, first found of: a campaign list's
    own choice (``key`` in ``outbound.list_caller_ids``), the Policy's for the task kind, the
    Policy's ``caller_id``, the trunk's for the kind, the trunk's own. '' when none is
    configured: the PBX then presents nothing of ours -- and never the customer's own
    number."""
    route = route or OutboundRoute()
    chosen = policy.outbound.list_caller_ids.get(key, "") if key else ""
    return (chosen or policy.outbound.caller_ids.get(kind) or policy.outbound.caller_id
            or route.presented_numbers.get(kind) or route.presented_number)


def presented_keys(policy: Policy) -> frozenset[str]:
    """The names a campaign list may choose its presented number by."""
    return frozenset(policy.outbound.list_caller_ids)


# --- calendar (STD-085 calling window, working days) -----------------------------------------

_MAX_DAYS_AHEAD = MAX_DAYS_AHEAD
_at = at_local  # one calendar: engine/workcalendar.py


def is_calling_day(day: date, policy: Policy) -> bool:
    """May customers be called on ``day`` (centre-local)? Never on a holiday."""
    if policy.outbound.calling_days == "workdays":
        return policy.calendar.is_workday(day)
    return day not in policy.calendar.holidays


@enforces("STD-085",
          policy=("outbound.calling_window_start", "outbound.calling_window_end",
                  "outbound.calling_days", "calendar.timezone"))
def next_calling_time(t: datetime, policy: Policy) -> datetime:
    """The earliest instant >= ``t`` inside the calling window of a calling day (STD-085)."""
    tz = zone(policy)
    local = t.astimezone(tz)
    start, end = policy.outbound.calling_window_start, policy.outbound.calling_window_end
    for offset in range(_MAX_DAYS_AHEAD):
        day = local.date() + timedelta(days=offset)
        if not is_calling_day(day, policy):
            continue
        opens, closes = _at(day, start, tz), _at(day, end, tz)
        if offset == 0 and local >= closes:
            continue
        if offset == 0 and local >= opens:
            return t
        return opens.astimezone(t.tzinfo)
    raise PolicyError("no calling day within a year: check calendar.holidays and "
                      "outbound.calling_days")


def in_calling_window(t: datetime, policy: Policy) -> bool:
    return next_calling_time(t, policy) == t


def next_working_day_due(t: datetime, policy: Policy, workdays: int = 1) -> datetime:
    """The ``workdays``-th working day after ``t`` (1: the next one), when both the working
    hours and the calling window have begun; 0: the first calling time from ``t``."""
    if workdays <= 0:
        return next_calling_time(t, policy)
    tz = zone(policy)
    opens = max(policy.outbound.calling_window_start, policy.calendar.work_start)
    at = t
    for _ in range(workdays):
        at = _at(next_working_day(at, policy), opens, tz)
    return next_calling_time(at.astimezone(t.tzinfo), policy)


@enforces("STD-089", policy=("outbound.followup_fault_days",))
def fault_followup_due(t: datetime, policy: Policy) -> Due:
    """STD-089: a fault follow-up is due ``followup_fault_days`` working days after the
    call (default 1: the next working day) and done by that day's calling-window end."""
    due = next_working_day_due(t, policy, math.ceil(policy.outbound.followup_fault_days))
    return Due(due, _window_close(due, policy))


def _window_close(t: datetime, policy: Policy) -> datetime:
    tz = zone(policy)
    local = t.astimezone(tz)
    return _at(local.date(), policy.outbound.calling_window_end, tz).astimezone(t.tzinfo)


# --- who gets what first (STD-069) -----------------------------------------------------------


@enforces("STD-069", policy=("routing.callbacks_before_inbound",))
def own_callbacks_first(policy: Policy) -> bool:
    """STD-069 (ASSUMPTION): an agent's own due callback (a dropped call, a named-agent
    callback) is theirs before any new inbound call: inbound routing skips them meanwhile.
    Off: inbound callers come first, and the callback waits for a moment none is waiting."""
    return policy.routing.callbacks_before_inbound


def may_dial_now(own: bool, pool: bool, inbound_waiting: bool, policy: Policy) -> bool:
    """May a free agent be given an outbound task now? Their own due task: always when
    callbacks come before inbound, else only while no inbound caller waits; a pool task
    only while no inbound caller waits (inbound first)."""
    if own:
        return own_callbacks_first(policy) or not inbound_waiting
    return pool and not inbound_waiting


# --- due times per kind of task (C-11) -------------------------------------------------------

TaskKind = Literal["callback", "dropped_call", "follow_up", "manual", "named_agent"]
TASK_KINDS: tuple[TaskKind, ...] = ("callback", "dropped_call", "follow_up", "manual",
                                    "named_agent")
FollowUpReason = Literal["general", "fault"]


@dataclass(frozen=True)
class Due:
    """When a task is dialled first, and by when it should be done (coverage KPIs)."""

    due_at: datetime
    deadline_at: datetime | None = None


@enforces("STD-086", "STD-089", policy=("outbound.dispositions",))
def follow_up_of(disposition: str, policy: Policy) -> FollowUpReason | None:
    """The follow-up a wrap-up disposition asks for (issue 18: "follow-up needed" makes the
    task): general (STD-086), fault (STD-089), or None (no task). An unknown code: None."""
    found = policy.outbound.disposition(disposition)
    if found is None or found.follow_up == "none":
        return None
    return found.follow_up


@enforces("STD-086", "STD-089", "STD-091", policy=("outbound.followup_general_days",))
def plan_due(kind: str, now: datetime, policy: Policy, *, requested_at: datetime | None = None,
             follow_up: FollowUpReason = "general") -> Due:
    """The due time a new task of ``kind`` gets.

    - callback (STD-047, STD-091): the time the customer chose, else now;
    - dropped_call (STD-069): now, for the same agent;
    - named_agent (STD-072): now (the named agent's next call), done within
      ``routing.named_agent_callback_due_min``;
    - follow_up: the next working day (STD-089 fault: done that day; STD-086
      general: done within ``followup_general_days``);
    - manual: the requested time, else now.
    Every due time is moved into the calling window (STD-085).
    """
    if kind not in TASK_KINDS:
        raise StateError("invalid_kind", f"{kind!r}; one of {', '.join(TASK_KINDS)}")
    out = policy.outbound
    if kind == "follow_up":
        if follow_up == "fault" and requested_at is None:
            return fault_followup_due(now, policy)
        if requested_at is not None:
            due = next_calling_time(max(requested_at, now), policy)
        else:
            due = next_working_day_due(now, policy)
        within = now + timedelta(days=out.followup_general_days)
        if follow_up == "fault" or within < due:  # a long holiday: the first day it can be
            return Due(due, _window_close(due, policy))
        return Due(due, within)
    start = max(requested_at, now) if requested_at is not None else now
    due = next_calling_time(start, policy)
    if kind == "named_agent":
        minutes = policy.routing.named_agent_callback_due_min
        return Due(due, max(due, now + timedelta(minutes=minutes)))
    return Due(due)


def earliest_due(dues: Iterable[datetime]) -> datetime:
    """C-11: a contact that several rules ask for is due at the earliest of their times."""
    found = min(dues, default=None)
    if found is None:
        raise ValueError("earliest_due of nothing")
    return found


# --- after an attempt: the retry rule ---------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What becomes of a task after one attempt.

    ``counted`` False: the attempt is refunded and the task is due again at
    ``retry_at``. Otherwise ``reached`` -> done; ``retry_at`` -> pending again then;
    neither -> unreachable (reported).
    """

    counted: bool
    reached: bool
    retry_at: datetime | None

    @property
    def status(self) -> Literal["done", "pending", "unreachable"]:
        if self.reached:
            return "done"
        return "pending" if self.retry_at is not None else "unreachable"


@enforces("STD-081", "STD-085", "STD-090",
          policy=("outbound.max_attempts", "outbound.retry_spacing_min",
                  "outbound.attempts_per_number_per_run"))
def decide(outcome: AttemptOutcome, *, kind: str, attempts: int, max_attempts: int,
           attempts_today: int, now: datetime, due_at: datetime, policy: Policy) -> Decision:
    """The retry rule (STD-081, STD-085, STD-090).

    ``attempts`` counts this attempt (the store counts at claim time);
    ``attempts_today`` counts the task's counted attempts of this calling day,
    this one included.
    """
    if outcome in REFUNDED:
        later = now + timedelta(seconds=policy.outbound.agent_failure_backoff_s)
        return Decision(False, False, next_calling_time(max(due_at, later), policy))
    if outcome is AttemptOutcome.ANSWERED:
        return Decision(True, True, None)
    if outcome is AttemptOutcome.INVALID_NUMBER or attempts >= max_attempts:
        return Decision(True, False, None)
    out = policy.outbound
    retry = next_calling_time(now + timedelta(minutes=out.retry_spacing_min), policy)
    if kind == "follow_up" and attempts_today >= out.attempts_per_number_per_run:
        tz = zone(policy)
        tomorrow = _at(now.astimezone(tz).date() + timedelta(days=1), time(0), tz)
        retry = max(retry, next_calling_time(tomorrow.astimezone(now.tzinfo), policy))
    return Decision(True, False, retry)


# --- one attempt, from Originate to the last Hangup ---------------------------------------------


class Phase(StrEnum):
    AGENT_RINGING = "agent_ringing"  # Originate sent; the agent's softphone rings
    AGENT_CONNECTED = "agent_connected"  # the agent answered; the customer is being dialled
    CONNECTED = "connected"  # the customer answered: bridged with the agent
    ENDED = "ended"


@dataclass(frozen=True)
class Attempt:
    """One dial of one task; ``attempt_id`` is the agent leg's ChannelId (its Uniqueid)."""

    attempt_id: str
    task_id: int
    kind: str
    number: str
    agent_id: str
    started_at: float  # epoch seconds (Asterisk's event timestamps are epoch too)
    phase: Phase = Phase.AGENT_RINGING
    agent_channel_seen: bool = False  # Newchannel: its Hangup (with the cause) will follow
    agent_answered_at: float | None = None
    customer_uid: str = ""
    customer_ring_at: float | None = None
    customer_answered_at: float | None = None
    dial_status: str = ""
    customer_cause: int | None = None
    agent_cause: int | None = None
    originate_reason: str = ""
    released_by: str = ""  # who asked to hang up first: "agent" | "customer"
    ended_at: float | None = None
    outcome: AttemptOutcome | None = None
    detail: str = ""

    @property
    def customer_dialled(self) -> bool:
        return bool(self.customer_uid)

    @property
    def cause(self) -> int | None:
        """The hang-up cause kept with the attempt: the customer leg's when it was dialled."""
        return self.customer_cause if self.customer_dialled else self.agent_cause


# events, in Asterisk's words (the edge translates AMI frames into these)


@dataclass(frozen=True)
class OriginateRefused:
    """The Originate action failed before anything rang (AMI error, link down)."""

    reason: str
    at: float


@dataclass(frozen=True)
class ChannelCreated:
    """Newchannel of the agent leg: a failed Originate then ends with its Hangup."""

    uid: str
    at: float


@dataclass(frozen=True)
class OriginateResult:
    """OriginateResponse: Success once the agent leg is up, Failure if it never was."""

    success: bool
    reason: str
    at: float


@dataclass(frozen=True)
class LegUp:
    """Newstate Up on one of the attempt's legs."""

    uid: str
    at: float


@dataclass(frozen=True)
class CustomerDialled:
    """DialBegin from the agent leg to the customer's channel ``uid``."""

    uid: str
    at: float


@dataclass(frozen=True)
class DialEnded:
    status: str
    at: float


@dataclass(frozen=True)
class HangupRequested:
    uid: str
    at: float


@dataclass(frozen=True)
class LegHungUp:
    uid: str
    cause: int | None
    at: float


@dataclass(frozen=True)
class Vanished:
    """After an AMI reconnect the agent leg is gone and its end was never seen."""

    at: float


AttemptEvent = (OriginateRefused | ChannelCreated | OriginateResult | LegUp | CustomerDialled
                | DialEnded | HangupRequested | LegHungUp | Vanished)

#: OriginateResponse Reason 3: the originated channel rang without an answer.
ORIGINATE_NO_ANSWER = "3"


def new_attempt(attempt_id: str, task_id: int, kind: str, number: str, agent_id: str,
                at: float) -> Attempt:
    return Attempt(attempt_id, task_id, kind, number, agent_id, at)


def step(attempt: Attempt, event: AttemptEvent) -> Attempt:
    """Apply one fact. Facts repeat (AMI and resync) and arrive late: both are no-ops."""
    if attempt.phase is Phase.ENDED:
        return attempt
    agent_uid = attempt.attempt_id
    if isinstance(event, OriginateRefused):
        return _end(attempt, event.at, AttemptOutcome.NOT_DIALLED, detail=event.reason)
    if isinstance(event, ChannelCreated):
        return replace(attempt, agent_channel_seen=True) if event.uid == agent_uid else attempt
    if isinstance(event, OriginateResult):
        if event.success:
            return _agent_up(attempt, event.at)
        if attempt.phase is not Phase.AGENT_RINGING:
            return attempt
        attempt = replace(attempt, originate_reason=event.reason)
        if attempt.agent_channel_seen:
            return attempt  # its Hangup follows at once and carries the cause
        return _end(attempt, event.at, AttemptOutcome.AGENT_NO_ANSWER)
    if isinstance(event, LegUp):
        if event.uid == agent_uid:
            return _agent_up(attempt, event.at)
        if event.uid == attempt.customer_uid:
            return _customer_up(attempt, event.at)
        return attempt
    if isinstance(event, CustomerDialled):
        if attempt.customer_uid:
            return attempt
        return replace(_agent_up(attempt, event.at), customer_uid=event.uid,
                       customer_ring_at=event.at)
    if isinstance(event, DialEnded):
        attempt = replace(attempt, dial_status=event.status.upper())
        return _customer_up(attempt, event.at) if attempt.dial_status == "ANSWER" else attempt
    if isinstance(event, HangupRequested):
        if attempt.released_by:
            return attempt
        if event.uid == agent_uid:
            return replace(attempt, released_by="agent")
        if event.uid == attempt.customer_uid:
            return replace(attempt, released_by="customer")
        return attempt
    if isinstance(event, LegHungUp):
        if event.uid == attempt.customer_uid:
            return replace(attempt, customer_cause=event.cause)
        if event.uid != agent_uid:
            return attempt
        attempt = replace(attempt, agent_cause=event.cause)
        return _end(attempt, event.at, _verdict(attempt))
    if isinstance(event, Vanished):
        if not attempt.customer_dialled:
            outcome = AttemptOutcome.NOT_DIALLED  # the customer's phone never rang
        elif attempt.outcome is None and not attempt.dial_status:
            outcome = AttemptOutcome.UNKNOWN
        else:
            outcome = _verdict(attempt)
        return _end(attempt, event.at, outcome, detail="ended while the AMI link was down")
    raise StateError("unknown_event", type(event).__name__)


def _agent_up(attempt: Attempt, at: float) -> Attempt:
    if attempt.phase is not Phase.AGENT_RINGING:
        return attempt
    return replace(attempt, phase=Phase.AGENT_CONNECTED, agent_answered_at=at)


def _customer_up(attempt: Attempt, at: float) -> Attempt:
    if attempt.phase is Phase.CONNECTED:
        return attempt
    attempt = _agent_up(attempt, at)
    return replace(attempt, phase=Phase.CONNECTED, customer_answered_at=at,
                   outcome=AttemptOutcome.ANSWERED)


def _verdict(attempt: Attempt) -> AttemptOutcome:
    if attempt.outcome is not None:
        return attempt.outcome
    if attempt.agent_answered_at is None:
        return AttemptOutcome.AGENT_NO_ANSWER
    if not attempt.customer_dialled:
        if attempt.agent_cause == NO_ROUTE_CAUSE:
            return AttemptOutcome.NO_ROUTE  # the dialplan found no way out to the number
        return AttemptOutcome.NOT_DIALLED  # the agent hung up before the customer was dialled
    return classify(answered=False, dial_status=attempt.dial_status,
                    cause=attempt.customer_cause)


def _end(attempt: Attempt, at: float, outcome: AttemptOutcome, detail: str = "") -> Attempt:
    return replace(attempt, phase=Phase.ENDED, ended_at=at,
                   outcome=attempt.outcome or outcome, detail=detail or attempt.detail)


def agent_rang_out(attempt: Attempt) -> bool:
    """The agent's softphone rang its whole limit unanswered (STD-008 applies to them too)."""
    return (attempt.phase is Phase.ENDED and attempt.agent_answered_at is None
            and (attempt.originate_reason == ORIGINATE_NO_ANSWER or attempt.agent_cause == 19))


# --- what the edge sends and records ---------------------------------------------------------


def originate(attempt: Attempt, policy: Policy, endpoint: str,
              context: str = "callflow-outbound", route: OutboundRoute | None = None,
              presented_key: str = "") -> Originate:
    """The Originate of an agent-first attempt.

    ``channel_id`` is always set (harness A5: without it a failed async Originate's
    OriginateResponse says ``Uniqueid: <unknown>`` and cannot be tied to anything).
    The agent's phone shows the customer's number (STD-082); the dialplan presents
    the centre's number to the customer (``CALLFLOW_CLI``) and rings the customer
    for six rings (``CALLFLOW_RING_S``, STD-081). ``CALLFLOW_CLI`` is always set, empty
    when no number is configured, so the dialplan never falls back to the agent leg's
    caller ID (the customer's own number). The extension is the number in the trunk's
    format (``route``).
    """
    route = route or OutboundRoute()
    variables = [("CALLFLOW_RING_S", f"{customer_ring_seconds(policy):g}"),
                 ("CALLFLOW_TASK", str(attempt.task_id)),
                 ("CALLFLOW_CLI", caller_id_for(attempt.kind, policy, route, presented_key))]
    variables += survey_variables(attempt, policy)
    return Originate(
        f"PJSIP/{endpoint}", context=context, exten=route.dialled(attempt.number), priority=1,
        timeout_ms=round(agent_ring_seconds(policy) * 1000),
        caller_id=f'"Task {attempt.task_id}" <{attempt.number}>',
        variables=tuple(variables), channel_id=attempt.attempt_id)


#: Where Dial's ``F()`` sends the customer when the agent hangs up first (the dialplan's
#: ``[callflow-survey]``, which runs the survey AGI route).
SURVEY_CONTEXT = "callflow-survey"


def survey_variables(attempt: Attempt, policy: Policy) -> list[tuple[str, str]]:
    """What an attempt's channel needs for the post-call survey of its customer (STD-120):
    when ``survey_due`` says this kind of call is surveyed, ``CALLFLOW_DIAL_OPTIONS`` gives
    ``[callflow-outbound]``'s Dial the ``F(callflow-survey^s^1)`` that keeps the customer
    when the agent hangs up first (the agent's channel is Dial's caller), and the
    ``__``-prefixed variables (inherited by the customer's leg, through Local channels
    too) say whose call it was. None otherwise: Dial then hangs the customer up with the
    agent, as it always did."""
    if not survey.survey_due(policy, agent_released=True, agent_id=attempt.agent_id,
                             kind=attempt.kind):
        return []
    return [("CALLFLOW_DIAL_OPTIONS", f"F({SURVEY_CONTEXT}^s^1)"),
            ("__CALLFLOW_SURVEY_CALL", attempt.attempt_id),
            ("__CALLFLOW_SURVEY_AGENT", attempt.agent_id),
            ("__CALLFLOW_SURVEY_KIND", attempt.kind)]


# --- what the dialer says happened ---------------------------------------------------


@dataclass(frozen=True)
class TaskChanged(DomainEvent):
    """A task was created, changed or offered for preview: the board and the desktops of
    ``agents`` hear of it (``board`` False: a preview for one agent only, STD-082).
    ``task`` is the task as the API shows it."""

    task: Mapping[str, Any]
    change: Literal["created", "updated", "preview"]
    agents: tuple[str, ...] = ()
    board: bool = True


@dataclass(frozen=True)
class AttemptChanged(DomainEvent):
    """An outbound attempt moved on (ringing the agent, the customer, connected, ended):
    the dialling agent's desktop and the board follow it."""

    attempt: Attempt


@dataclass(frozen=True)
class OutboundCallEnded(DomainEvent):
    """An attempt that dialled the customer ended: its ``calls`` row (``call_record``)."""

    record: Mapping[str, Any]


_CALL_OUTCOME = {AttemptOutcome.ANSWERED: "answered", AttemptOutcome.NO_ANSWER: "no_answer",
                 AttemptOutcome.BUSY: "busy"}


def call_record(attempt: Attempt) -> dict[str, object] | None:
    """The ``calls`` row of an attempt that dialled the customer (None: nothing rang there).

    Outbound rows use the agent leg's id as uniqueid; ``caller_number`` is the
    customer's number; released_by ``caller`` is the customer (the external party),
    ``system`` our six-ring limit (STD-081).
    """
    if not attempt.customer_dialled or attempt.outcome is None:
        return None
    released = {"agent": "agent", "customer": "caller"}.get(attempt.released_by)
    if attempt.outcome is AttemptOutcome.NO_ANSWER:
        released = "system"
    record: dict[str, object] = {
        "uniqueid": attempt.attempt_id, "direction": "outbound",
        "caller_number": attempt.number, "agent_id": attempt.agent_id,
        "entered_at": attempt.started_at, "ring_started_at": attempt.customer_ring_at,
        "answered_at": attempt.customer_answered_at, "ended_at": attempt.ended_at,
        "outcome": _CALL_OUTCOME.get(attempt.outcome, "failed"),
        "hangup_cause": attempt.cause, "released_by": released,
    }
    return {k: v for k, v in record.items() if v is not None}
