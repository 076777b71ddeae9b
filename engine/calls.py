"""The inbound call's life, as a pure state machine.

Asterisk does media; this module decides what a call *is* at every moment: when it
entered routing (``t_in``), each offer to an agent (``t_ring`` of the answered one),
when it was answered (``t_ans``) and released (``t_end``), and from those the
figures the standards are judged on (KPI definitions): answer ring (STD-006),
within-3-rings (STD-008), late answer needing the apology opening (STD-009),
abandon vs short abandon.

Events carry ``at``: wall-clock epoch seconds as Asterisk stamped them (AMI
``Timestamp``), so durations keep Asterisk's millisecond precision; the machine
never reads a clock itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from callflow.engine.effects import DomainEvent, Effect


class Phase(StrEnum):
    ROUTING = "routing"  # in our hands, no agent ringing
    OFFERING = "offering"  # an agent's phone rings
    CONNECTED = "connected"  # talking to an agent
    ENDED = "ended"


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    SHORT_ABANDON = "short_abandon"
    CALLBACK = "callback"
    FALLBACK = "fallback"
    # special-call endings by the system (STD-056..STD-067, STD-112)
    SILENT = "silent"
    QUIET_LINE = "quiet_line"
    NOISY_LINE = "noisy_line"
    NUISANCE = "nuisance"
    WRONG_NUMBER = "wrong_number"


class OfferResult(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"  # ring limit reached (RONA, STD-008)
    BUSY = "busy"
    FAILED = "failed"  # congestion, unavailable endpoint
    CALLER_GONE = "caller_gone"  # caller hung up while it rang


DIAL_STATUS_RESULTS = {
    "ANSWER": OfferResult.ANSWERED,
    "NOANSWER": OfferResult.NO_ANSWER,
    "BUSY": OfferResult.BUSY,
    "CONGESTION": OfferResult.FAILED,
    "CHANUNAVAIL": OfferResult.FAILED,
    "CANCEL": OfferResult.CALLER_GONE,
}


@dataclass(frozen=True)
class CallRules:
    """What the call machine needs of the Policy, in seconds and plain values."""

    ring_cycle_s: float
    apology_after_s: float  # STD-009: total wait beyond this needs the apology opening
    short_abandon_s: float  # KPI definitions: abandons within this are "short"
    dropped_call_causes: frozenset[int] = frozenset()  # STD-069: a caller leg lost this way
    dropped_call_callback: bool = True  # STD-069
    missed_call_callbacks: bool = True  # STD-055


@dataclass(frozen=True)
class Offer:
    agent_id: str
    channel: str
    started_at: float
    ended_at: float | None = None
    result: OfferResult | None = None
    from_pbx: bool = True  # timed by Asterisk (AMI); False: by the flow, until AMI confirms

    @property
    def ring_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class InboundCall:
    call_id: str  # the caller channel's Asterisk Uniqueid
    channel: str
    caller: str
    did: str
    queue: str
    entered_at: float
    phase: Phase = Phase.ROUTING
    offers: tuple[Offer, ...] = ()
    agent_id: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    outcome: Outcome | None = None
    hangup_cause: int | None = None
    released_by: str | None = None
    greeting: str = "normal"  # normal | holiday (played); apology once the answer is late
    repeat_caller: bool = False
    history: tuple[dict[str, Any], ...] = ()  # the caller's recent contacts (STD-073)

    @property
    def current_offer(self) -> Offer | None:
        if self.offers and self.offers[-1].ended_at is None:
            return self.offers[-1]
        return None

    @property
    def answered_offer(self) -> Offer | None:
        for offer in self.offers:
            if offer.result is OfferResult.ANSWERED:
                return offer
        return None


# --- events -----------------------------------------------------------------


@dataclass(frozen=True)
class CallEntered:
    call_id: str
    channel: str
    caller: str
    did: str
    queue: str
    at: float
    greeting: str = "normal"
    history: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class OfferStarted:
    """The agent's phone starts ringing (AMI DialBegin; or the flow, just before its Dial,
    so an AMI outage loses no offer: ``from_pbx`` False until DialBegin confirms it)."""

    call_id: str
    agent_id: str
    channel: str
    at: float
    from_pbx: bool = True


@dataclass(frozen=True)
class OfferEnded:
    """The offer is over (AMI DialEnd, or the AGI flow's DIALSTATUS if AMI missed it)."""

    call_id: str
    agent_id: str
    dial_status: str
    at: float


@dataclass(frozen=True)
class CallReleased:
    """The caller's channel hung up (AMI Hangup); ``by`` is who released first."""

    call_id: str
    at: float
    cause: int = 16
    by: str = "caller"
    outcome: Outcome | None = None  # set when the flow ended it on purpose (callback, fallback)


CallEvent = CallEntered | OfferStarted | OfferEnded | CallReleased


# --- what the machine says happened --------------------------------------------------


@dataclass(frozen=True)
class CallChanged(DomainEvent):
    """The call's record changed (entered, offered, answered, ended): the store keeps it,
    the board shows it, and the agent offered or talking (``to_agent``) sees it with the
    caller's history (agents see only their own calls)."""

    call: InboundCall
    rules: CallRules
    to_agent: str | None = None


@dataclass(frozen=True)
class TaskRequested(DomainEvent):
    """A callback task to create: a missed call (STD-055), a dropped line (STD-069), the
    caller's or the agent's choice (STD-042, STD-047, STD-072). ``announce``: the board
    and the owner's desktop are told at once (else they hear of it from the task feed)."""

    kind: str
    number: str
    due_at: float  # epoch seconds
    owner_agent_id: str | None
    note: str
    from_call: str
    announce: bool = False

    def as_task(self) -> dict[str, Any]:
        """The task as the store takes it and desktops are told of it."""
        return {"kind": self.kind, "number": self.number, "due_at": self.due_at,
                "owner_agent_id": self.owner_agent_id, "note": self.note,
                "created_from_uniqueid": self.from_call}


# --- figures ------------------------------------------------------------------


def ring_count(seconds: float, ring_cycle_s: float) -> int:
    """KPI definitions: a ring count is ceil(seconds / ring cycle); an instant answer is ring 1."""
    return max(1, math.ceil(round(seconds, 3) / ring_cycle_s))


def answer_ring(call: InboundCall, timings: CallRules) -> int | None:
    offer = call.answered_offer
    if offer is None or offer.ring_s is None:
        return None
    return ring_count(offer.ring_s, timings.ring_cycle_s)


def total_wait(call: InboundCall) -> float | None:
    """``t_ans - t_in``: queue plus all ringing (KPI definitions).

    For a call that ended unanswered it is how long the caller waited before leaving
    (``t_end - t_in``), the figure an abandon is reported with.
    """
    if call.answered_at is not None:
        return call.answered_at - call.entered_at
    if call.ended_at is not None:
        return call.ended_at - call.entered_at
    return None


def is_late(call: InboundCall, timings: CallRules) -> bool:
    """STD-009: the caller's total wait until the answer exceeded the apology threshold."""
    return call.answered_at is not None and \
        call.answered_at - call.entered_at > timings.apology_after_s


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def call_record(call: InboundCall, timings: CallRules) -> dict[str, Any]:
    """The row the store keeps for a call (and what the board is told)."""
    offer = call.answered_offer
    wait = total_wait(call)
    return {
        "uniqueid": call.call_id,
        "direction": "inbound",
        "channel": call.channel,
        "caller_number": call.caller,
        "did": call.did,
        "queue": call.queue,
        "agent_id": call.agent_id,
        "phase": call.phase.value,
        "entered_at": _iso(call.entered_at),
        "ring_started_at": _iso(offer.started_at if offer else None),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "answer_ring": answer_ring(call, timings),
        "total_wait_s": None if wait is None else round(wait, 3),
        "late": is_late(call, timings),
        "outcome": call.outcome.value if call.outcome else None,
        "hangup_cause": call.hangup_cause,
        "released_by": call.released_by,
        "greeting": call.greeting,
        "repeat_caller": call.repeat_caller,
        "offers": [
            {
                "agent_id": o.agent_id,
                "started_at": _iso(o.started_at),
                "ended_at": _iso(o.ended_at),
                "result": o.result.value if o.result else None,
                "ring_s": None if o.ring_s is None else round(o.ring_s, 3),
            }
            for o in call.offers
        ],
    }


# --- the machine ----------------------------------------------------------------


def _effects(call: InboundCall, timings: CallRules, *, to_agent: str | None = None,
             ) -> list[Effect]:
    return [CallChanged(call, timings, to_agent)]


def _task(kind: str, call: InboundCall, at: float, owner: str | None,
          note: str) -> TaskRequested:
    return TaskRequested(kind, call.caller, at, owner, note, call.call_id)


def _close_offer(call: InboundCall, agent_id: str, result: OfferResult, at: float) -> InboundCall:
    offers = list(call.offers)
    for i in range(len(offers) - 1, -1, -1):
        if offers[i].agent_id == agent_id and offers[i].ended_at is None:
            offers[i] = replace(offers[i], ended_at=at, result=result)
            break
    return replace(call, offers=tuple(offers))


def start(event: CallEntered, timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    call = InboundCall(call_id=event.call_id, channel=event.channel, caller=event.caller,
                       did=event.did, queue=event.queue, entered_at=event.at,
                       greeting=event.greeting, repeat_caller=bool(event.history),
                       history=event.history)
    return call, _effects(call, timings)


def step(call: InboundCall, event: CallEvent,
         timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    """Apply one event; duplicates and late arrivals are ignored (AMI and AGI both report)."""
    if call.phase is Phase.ENDED:
        return call, []
    if isinstance(event, OfferStarted):
        current = call.current_offer
        if current is not None and current.agent_id == event.agent_id:
            if current.from_pbx or not event.from_pbx:
                return call, []
            # Asterisk's DialBegin confirms the flow's offer: its time is the exact one
            confirmed = replace(current, channel=event.channel, started_at=event.at,
                                from_pbx=True)
            return replace(call, offers=(*call.offers[:-1], confirmed)), []
        offer = Offer(agent_id=event.agent_id, channel=event.channel, started_at=event.at,
                      from_pbx=event.from_pbx)
        call = replace(call, phase=Phase.OFFERING, offers=(*call.offers, offer))
        return call, _effects(call, timings, to_agent=event.agent_id)
    if isinstance(event, OfferEnded):
        current = call.current_offer
        if current is None or current.agent_id != event.agent_id:
            return call, []
        result = DIAL_STATUS_RESULTS.get(event.dial_status.upper(), OfferResult.FAILED)
        call = _close_offer(call, event.agent_id, result, event.at)
        if result is OfferResult.ANSWERED:
            call = replace(call, phase=Phase.CONNECTED, agent_id=event.agent_id,
                           answered_at=event.at)
            if is_late(call, timings):  # STD-009: the desktop shows the apology opening
                call = replace(call, greeting="apology")
        else:
            call = replace(call, phase=Phase.ROUTING)
        return call, _effects(call, timings, to_agent=event.agent_id)
    if isinstance(event, CallReleased):
        current = call.current_offer
        if current is not None:
            call = _close_offer(call, current.agent_id, OfferResult.CALLER_GONE, event.at)
        if event.outcome is not None:
            outcome = event.outcome
        elif call.answered_at is not None:
            outcome = Outcome.ANSWERED
        elif event.at - call.entered_at <= timings.short_abandon_s:
            outcome = Outcome.SHORT_ABANDON
        else:
            outcome = Outcome.ABANDONED
        was_connected = call.phase is Phase.CONNECTED
        call = replace(call, phase=Phase.ENDED, ended_at=event.at, outcome=outcome,
                       hangup_cause=event.cause, released_by=event.by)
        effects = _effects(call, timings, to_agent=call.agent_id)
        if was_connected and event.by == "caller" and timings.dropped_call_callback \
                and event.cause in timings.dropped_call_causes:
            # STD-069: the line dropped mid-conversation; the same agent calls back
            effects.append(_task("dropped_call", call, event.at, call.agent_id,
                                 f"line dropped (cause {event.cause})"))
        elif outcome is Outcome.ABANDONED and timings.missed_call_callbacks and call.caller:
            effects.append(_task("callback", call, event.at, None, "missed call (STD-055)"))
        return call, effects
    return call, []
