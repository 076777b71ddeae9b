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
from functools import cached_property
from typing import Any

from callflow.engine.effects import DomainEvent, Effect
from callflow.engine.rules import enforces


class Phase(StrEnum):
    ROUTING = "routing"  # in our hands, no agent ringing
    OFFERING = "offering"  # an agent's phone rings
    CONNECTED = "connected"  # talking to an agent
    TRANSFERRING = "transferring"  # an agent transferred the caller on the phone (REFER)
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
    PBX_FAILURE = "pbx_failure"  # Asterisk stopped or restarted: nobody's doing


class OfferResult(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"  # the ring limit ran out (RONA, STD-008): nothing else is
    BUSY = "busy"  # the phone said 486 Busy Here
    DECLINED = "declined"  # 603 Decline
    UNAVAILABLE = "unavailable"  # 480, or no contact to ring (CHANUNAVAIL, CONGESTION)
    FORWARDED = "forwarded"  # the phone sent the call elsewhere (302); Asterisk followed
    CALLER_GONE = "caller_gone"  # the caller hung up while it rang
    PBX_FAILURE = "pbx_failure"  # Asterisk stopped while it rang
    FAILED = "failed"  # anything else Dial can say (INVALIDARGS, DONTCALL, TORTURE...)


#: Q.850 causes a phone's final response gives the agent leg (Asterisk 22 measured).
USER_BUSY, NO_ANSWER_CAUSE, CALL_REJECTED = 17, 19, 21
_REJECTIONS = {USER_BUSY: OfferResult.BUSY, CALL_REJECTED: OfferResult.DECLINED,
               NO_ANSWER_CAUSE: OfferResult.UNAVAILABLE}
_DIAL_STATUS = {"ANSWER": OfferResult.ANSWERED, "BUSY": OfferResult.BUSY,
                "CANCEL": OfferResult.CALLER_GONE, "CONGESTION": OfferResult.UNAVAILABLE,
                "CHANUNAVAIL": OfferResult.UNAVAILABLE, "NOANSWER": OfferResult.NO_ANSWER}


def offer_result(dial_status: str, leg_cause: int | None = None,
                 forward: str = "") -> OfferResult:
    """How an offer ended, from Asterisk's facts about it.

    ``leg_cause`` is the Q.850 cause of the agent leg's far-end ``HangupRequest`` (the
    phone's own answer), None when the phone sent none: a ring limit that ran out has
    no such request (Dial hangs the leg up itself), a 480 has cause 19 with the same
    ``NOANSWER`` status, a 603 cause 21 (Dial says ``NOANSWER`` on AMI and
    ``CHANUNAVAIL`` to the flow). ``forward``: the ``Forward`` of a ``DialEnd``.
    """
    status = dial_status.upper()
    if forward and status == "CANCEL":
        return OfferResult.FORWARDED
    if status in ("ANSWER", "CANCEL"):
        return _DIAL_STATUS[status]
    if leg_cause in _REJECTIONS:
        return _REJECTIONS[leg_cause]
    return _DIAL_STATUS.get(status, OfferResult.FAILED)


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
    from_pbx: bool = True  # timed by Asterisk (AMI); False: by the flow, until Asterisk confirms
    left_at: float | None = None  # answered: when this agent's part ended (hang-up, transfer)
    joined: bool = False  # the agent got the caller by an attended transfer, without ringing

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
    released_by: str | None = None  # caller | agent | system | pbx | None (unknown)
    transfer_count: int = 0  # transfers made on the phone (blind or attended REFER)
    transfer_target: str = ""  # the last blind transfer's target (desktop: <kind>:<value>)
    outside_party: str = ""  # in a three-way conference: the number with them (<kind>:<value>)
    incomplete: str = ""  # the record lacks Asterisk's facts for its end: why
    greeting: str = "normal"  # normal | holiday (played); apology once the answer is late
    repeat_caller: bool = False
    history: tuple[dict[str, Any], ...] = ()  # the caller's recent contacts (STD-073)
    menu: bool = False  # the caller meets a menu (the named-agent question) before routing
    routed_at: float | None = None  # t_in: reached agent routing (None while in the menu)

    @property
    def t_in(self) -> float:
        """When the caller's wait starts (KPI definitions: after any menu)."""
        return self.entered_at if self.routed_at is None else self.routed_at

    @property
    def in_menu(self) -> bool:
        """The caller is still in the menu: not waiting for an agent yet."""
        return self.menu and self.routed_at is None

    @property
    def current_offer(self) -> Offer | None:
        if self.offers and self.offers[-1].ended_at is None:
            return self.offers[-1]
        return None

    @property
    def answered_offer(self) -> Offer | None:
        """The first answer (t_ans, the answer ring of STD-006)."""
        for offer in self.offers:
            if offer.result is OfferResult.ANSWERED:
                return offer
        return None

    @property
    def talking_offer(self) -> Offer | None:
        """The answered offer whose agent has the caller now (the last one not left: in a
        three-way conference the consulted agent's, until they leave it)."""
        for offer in reversed(self.offers):
            if offer.result is OfferResult.ANSWERED and offer.left_at is None:
                return offer
        return None

    @property
    def in_conference(self) -> list[Offer]:
        """The answered offers whose agents are all with the caller now: two or more
        during a three-way conference (STD-049), else at most one."""
        return [o for o in self.offers
                if o.result is OfferResult.ANSWERED and o.left_at is None]


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
    menu: bool = False  # a menu comes first: the wait starts at ``CallRouted``, not here


@dataclass(frozen=True)
class CallRouted:
    """The caller left the menu and reached agent routing (t_in of the KPI definitions)."""

    call_id: str
    at: float


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
    """The offer is over: answered (the agent leg went up), or not (AMI DialEnd with the
    agent leg's cause, or the AGI flow's DIALSTATUS if AMI missed it)."""

    call_id: str
    agent_id: str
    dial_status: str
    at: float
    leg_cause: int | None = None  # the phone's own hang-up cause (see ``offer_result``)
    forward: str = ""  # DialEnd's Forward: the phone sent a 302
    pbx_failure: bool = False  # Asterisk is shutting down
    from_pbx: bool = True  # False: the flow's DIALSTATUS, timed by the flow (link down)


@dataclass(frozen=True)
class TransferStarted:
    """The agent talking to the caller made a blind transfer on the phone (REFER): the
    caller is on the way to ``target``; that agent's part ends now. A transfer asked
    from the desktop has ``target`` ``<kind>:<value>`` (agents/transfers.py) and, to a
    queue, ``queue``: the call waits in that queue from now on."""

    call_id: str
    agent_id: str
    target: str
    at: float
    queue: str = ""


@dataclass(frozen=True)
class Transferred:
    """An attended transfer made on the phone completed: ``agent_id`` (the consulted
    agent, already talking) now has the caller; the transferring agent's part ends.
    ``conference``: the consultation became a three-way conference instead (Asterisk's
    ``AttendedTransfer`` with ``DestType: Threeway``): the consulted agent's part starts,
    the transferring agent's goes on until they leave (``PartyLeft``)."""

    call_id: str
    agent_id: str
    channel: str
    at: float
    conference: bool = False


@dataclass(frozen=True)
class PartyLeft:
    """``agent_id`` left a three-way conference at ``at`` (their leg hung up) while
    another agent stays with the caller: their part ends, the call goes on. The caller
    was handed on (a transfer) when the one who leaves answered before the one who stays."""

    call_id: str
    agent_id: str
    at: float


@dataclass(frozen=True)
class OutsideParty:
    """A three-way conference with a number (the back office, an external number) began
    (``target`` ``<kind>:<value>``, Asterisk's ``AttendedTransfer DestType: Threeway``) or
    ended (``target`` empty: that leg hung up, the caller stays with the agent). The
    outside party is nobody's desk: no offer, no agent's talk."""

    call_id: str
    target: str
    at: float


@dataclass(frozen=True)
class CallReleased:
    """The call is over. ``by``: who released first (``caller``, ``agent``, ``system``,
    ``pbx`` when Asterisk stopped, ``unknown`` when no fact says); ``at`` Asterisk's
    stamp of that first hang-up request."""

    call_id: str
    at: float
    cause: int = 16
    by: str = "caller"
    outcome: Outcome | None = None  # set when the flow ended it on purpose (callback, fallback)
    incomplete: str = ""  # why the end's facts are missing (``at`` is then when we learnt)


@dataclass(frozen=True)
class AnswerConfirmed:
    """Asterisk's records time an answer the flow reported while the AMI link was down
    (Dial's ANSWEREDTIME is whole seconds, and a caller who hangs up first leaves the flow
    only the hang-up's time): the offer rang from ``rang_at`` and was answered at
    ``answered_at`` (engine/cel.py, from CEL)."""

    call_id: str
    agent_id: str
    channel: str
    rang_at: float
    answered_at: float


CallEvent = (CallEntered | CallRouted | OfferStarted | OfferEnded | TransferStarted | Transferred
             | CallReleased | AnswerConfirmed | PartyLeft | OutsideParty)


# --- what the machine says happened --------------------------------------------------


@dataclass(frozen=True)
class CallChanged(DomainEvent):
    """The call's record changed (entered, offered, answered, ended): the store keeps it,
    the board shows it, and the agent offered or talking (``to_agent``) sees it with the
    caller's history (agents see only their own calls)."""

    call: InboundCall
    rules: CallRules
    to_agent: str | None = None

    @cached_property
    def record(self) -> dict[str, Any]:
        """``call_record`` of this change, built once: the store, the live stream, the
        board and queue_log all read it (issue 20: it was built four times an event).
        Shared, so its readers must not change it."""
        return call_record(self.call, self.rules)


@dataclass(frozen=True)
class TaskRequested(DomainEvent):
    """A callback task to create: a missed call (STD-055), a dropped line (STD-069), the
    caller's or the agent's choice (STD-042, STD-047, STD-072). The store keeps it; the
    board and the desktops hear of it from the dialer's task feed, once, with its id
    (outbound/dialer.py ``tell``), like every task whoever wrote it."""

    kind: str
    number: str
    due_at: float  # epoch seconds
    owner_agent_id: str | None
    note: str
    from_call: str

    def as_task(self) -> dict[str, Any]:
        """The task as the store takes it and desktops are told of it."""
        return {"kind": self.kind, "number": self.number, "due_at": self.due_at,
                "owner_agent_id": self.owner_agent_id, "note": self.note,
                "created_from_uniqueid": self.from_call}


# --- figures ------------------------------------------------------------------


def ring_count(seconds: float, ring_cycle_s: float) -> int:
    """KPI definitions: a ring count is ceil(seconds / ring cycle); an instant answer is ring 1."""
    return max(1, math.ceil(round(seconds, 3) / ring_cycle_s))


@enforces("STD-006")
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
        return call.answered_at - call.t_in
    if call.ended_at is not None:
        return max(0.0, call.ended_at - call.t_in)
    return None


@enforces("STD-009", policy=("answering.apology_after_rings",))
def is_late(call: InboundCall, timings: CallRules) -> bool:
    """STD-009: the caller's total wait until the answer exceeded the apology threshold."""
    return call.answered_at is not None and \
        call.answered_at - call.t_in > timings.apology_after_s


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
        "routed_at": _iso(call.routed_at),
        "menu": call.menu,
        "ring_started_at": _iso(offer.started_at if offer else None),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "answer_ring": answer_ring(call, timings),
        "total_wait_s": None if wait is None else round(wait, 3),
        "late": is_late(call, timings),
        "outcome": call.outcome.value if call.outcome else None,
        "hangup_cause": call.hangup_cause,
        "released_by": call.released_by,
        "ending": ending(call, timings),
        "transfer_count": call.transfer_count,
        "incomplete_reason": call.incomplete or None,
        "greeting": call.greeting,
        "repeat_caller": call.repeat_caller,
        "offers": [
            {
                "agent_id": o.agent_id,
                "started_at": _iso(o.started_at),
                "ended_at": _iso(o.ended_at),
                "result": o.result.value if o.result else None,
                "ring_s": None if o.ring_s is None else round(o.ring_s, 3),
                "left_at": _iso(o.left_at),
                "joined": o.joined,
            }
            for o in call.offers
        ],
    }


#: How a call ended, for people (the record's ``ending``), beside the KPI ``outcome``.
RELEASED_ENDINGS = {"caller": "caller_released", "agent": "agent_released",
                    "system": "system_released"}


def ending(call: InboundCall, timings: CallRules) -> str | None:
    """caller_released | agent_released | system_released (answered calls), abandoned |
    short_abandon (not answered), network_drop (a Q.850 cause the Policy calls a drop),
    pbx_failure (Asterisk stopped), callback / fallback / a special-call ending (the
    system's), unknown (no fact says who); None while the call goes on."""
    if call.phase is not Phase.ENDED or call.outcome is None:
        return None
    if call.outcome is Outcome.PBX_FAILURE:
        return Outcome.PBX_FAILURE.value
    if call.outcome not in (Outcome.ANSWERED, Outcome.ABANDONED, Outcome.SHORT_ABANDON):
        return call.outcome.value
    if call.released_by in ("caller", "agent") \
            and call.hangup_cause in timings.dropped_call_causes:
        return "network_drop"
    if call.outcome is not Outcome.ANSWERED:
        return call.outcome.value
    return RELEASED_ENDINGS.get(call.released_by or "", "unknown")


# --- the machine ----------------------------------------------------------------


def _effects(call: InboundCall, timings: CallRules, *, to_agent: str | None = None,
             ) -> list[Effect]:
    return [CallChanged(call, timings, to_agent)]


def _task(kind: str, call: InboundCall, at: float, owner: str | None,
          note: str) -> TaskRequested:
    return TaskRequested(kind, call.caller, at, owner, note, call.call_id)


def _close_offer(call: InboundCall, agent_id: str, result: OfferResult, at: float,
                 from_pbx: bool = True) -> InboundCall:
    """``from_pbx`` False: the end is the flow's word, so the offer's times are not all
    Asterisk's (its answer can be confirmed later, ``AnswerConfirmed``)."""
    offers = list(call.offers)
    for i in range(len(offers) - 1, -1, -1):
        if offers[i].agent_id == agent_id and offers[i].ended_at is None:
            offers[i] = replace(offers[i], ended_at=at, result=result,
                                from_pbx=offers[i].from_pbx and from_pbx)
            break
    return replace(call, offers=tuple(offers))


@enforces("STD-003")
def start(event: CallEntered, timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    call = InboundCall(call_id=event.call_id, channel=event.channel, caller=event.caller,
                       did=event.did, queue=event.queue, entered_at=event.at,
                       greeting=event.greeting, repeat_caller=bool(event.history),
                       history=event.history, menu=event.menu,
                       routed_at=None if event.menu else event.at)
    return call, _effects(call, timings)


def step(call: InboundCall, event: CallEvent,
         timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    """Apply one event; duplicates and late arrivals are ignored (AMI and AGI both report)."""
    if call.phase is Phase.ENDED:
        return call, []
    if isinstance(event, CallRouted):
        if call.routed_at is not None:
            return call, []
        call = replace(call, routed_at=event.at)
        return call, _effects(call, timings)
    if isinstance(event, OfferStarted):
        return _offer_started(call, event, timings)
    if isinstance(event, OfferEnded):
        return _offer_ended(call, event, timings)
    if isinstance(event, TransferStarted):
        talking = call.talking_offer
        if call.phase is not Phase.CONNECTED or talking is None \
                or talking.agent_id != event.agent_id:
            return call, []
        call = replace(_leave(call, event.at), phase=Phase.TRANSFERRING,
                       transfer_count=call.transfer_count + 1, transfer_target=event.target,
                       queue=event.queue or call.queue)
        return call, _effects(call, timings, to_agent=event.agent_id)
    if isinstance(event, Transferred):
        talking = call.talking_offer
        if talking is None or talking.agent_id == event.agent_id:
            return call, []
        joined = Offer(agent_id=event.agent_id, channel=event.channel, started_at=event.at,
                       ended_at=event.at, result=OfferResult.ANSWERED, joined=True)
        if event.conference:
            call = replace(call, offers=(*call.offers, joined))
            return call, _effects(call, timings, to_agent=event.agent_id)
        left = _leave(call, event.at)
        call = replace(left, offers=(*left.offers, joined), phase=Phase.CONNECTED,
                       agent_id=event.agent_id, transfer_count=call.transfer_count + 1)
        return call, _effects(call, timings, to_agent=event.agent_id)
    if isinstance(event, PartyLeft):
        return _party_left(call, event, timings)
    if isinstance(event, OutsideParty):
        if call.phase is not Phase.CONNECTED or call.outside_party == event.target:
            return call, []
        call = replace(call, outside_party=event.target)
        return call, _effects(call, timings, to_agent=call.agent_id)
    if isinstance(event, CallReleased):
        return _released(call, event, timings)
    if isinstance(event, AnswerConfirmed):
        return _answer_confirmed(call, event, timings)
    return call, []


def _answer_confirmed(call: InboundCall, event: AnswerConfirmed,
                      timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    """A flow-timed answer (``from_pbx`` False) takes Asterisk's times; one already timed
    by Asterisk is left as it is."""
    offers = list(call.offers)
    for i in range(len(offers) - 1, -1, -1):
        offer = offers[i]
        if offer.agent_id == event.agent_id and offer.result is OfferResult.ANSWERED:
            if offer.from_pbx:
                return call, []
            first = call.answered_offer is offer
            offers[i] = replace(offer, channel=event.channel, started_at=event.rang_at,
                                ended_at=event.answered_at, from_pbx=True)
            call = replace(call, offers=tuple(offers))
            if first:
                greeting = "normal" if call.greeting == "apology" else call.greeting
                call = replace(call, answered_at=event.answered_at, greeting=greeting)
                if is_late(call, timings):
                    call = replace(call, greeting="apology")
            return call, _effects(call, timings, to_agent=event.agent_id)
    return call, []


def resumed(call: InboundCall) -> InboundCall:
    """A call read back from the store (an engine restart): its phase from its offers
    (the store keeps times and results, not the phase)."""
    if call.ended_at is not None:
        return replace(call, phase=Phase.ENDED)
    if call.talking_offer is not None:
        return replace(call, phase=Phase.CONNECTED)
    if call.current_offer is not None:
        return replace(call, phase=Phase.OFFERING)
    if call.answered_at is not None:
        return replace(call, phase=Phase.TRANSFERRING)
    return replace(call, phase=Phase.ROUTING)


def _offer_started(call: InboundCall, event: OfferStarted,
                   timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    current = call.current_offer
    if current is not None and current.agent_id == event.agent_id:
        if current.from_pbx and event.from_pbx and event.channel == current.channel \
                and event.at > current.started_at:
            # the same leg reported again: Newchannel, then Dial's DialBegin. The phone
            # rings when Dial calls it, after any pre-dial handler on the new leg (the
            # mid-call PIN's b() sets the agent leg's features there), so DialBegin's
            # later stamp is the ring start the record keeps
            moved = replace(current, started_at=event.at)
            call = replace(call, offers=(*call.offers[:-1], moved))
            return call, _effects(call, timings, to_agent=event.agent_id)
        if current.from_pbx or not event.from_pbx:
            return call, []
        # Asterisk's DialBegin confirms the flow's offer: its time is the exact one, and
        # the record (t_ring, ring_s) must say so, not the flow's time before its Dial
        confirmed = replace(current, channel=event.channel, started_at=event.at,
                            from_pbx=True)
        call = replace(call, offers=(*call.offers[:-1], confirmed))
        return call, _effects(call, timings, to_agent=event.agent_id)
    talking = call.talking_offer
    if talking is not None and talking.agent_id == event.agent_id:
        return call, []  # the agent who has the caller (a late or repeated report)
    offer = Offer(agent_id=event.agent_id, channel=event.channel, started_at=event.at,
                  from_pbx=event.from_pbx)
    phase = Phase.CONNECTED if talking is not None else Phase.OFFERING
    call = replace(call, phase=phase, offers=(*call.offers, offer))
    return call, _effects(call, timings, to_agent=event.agent_id)


def _offer_ended(call: InboundCall, event: OfferEnded,
                 timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    current = call.current_offer
    if current is None or current.agent_id != event.agent_id:
        return _earlier_offer_ended(call, event, timings)
    result = OfferResult.PBX_FAILURE if event.pbx_failure and event.dial_status != "ANSWER" \
        else offer_result(event.dial_status, event.leg_cause, event.forward)
    call = _close_offer(call, event.agent_id, result, event.at, event.from_pbx)
    if result is OfferResult.ANSWERED:
        answered_at = event.at if call.answered_at is None else call.answered_at
        call = replace(call, phase=Phase.CONNECTED, agent_id=event.agent_id,
                       answered_at=answered_at)
        if is_late(call, timings):  # STD-009: the desktop shows the apology opening
            call = replace(call, greeting="apology")
    elif call.talking_offer is not None:
        call = replace(call, phase=Phase.CONNECTED)
    elif call.answered_at is not None:  # a transfer's target did not take it
        call = replace(call, phase=Phase.TRANSFERRING)
    else:
        call = replace(call, phase=Phase.ROUTING)
    return call, _effects(call, timings, to_agent=event.agent_id)


def _earlier_offer_ended(call: InboundCall, event: OfferEnded,
                         timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    """An offer that is no longer the newest ended without an answer. A 302's target leg
    can be reported (Newchannel) before the forwarding leg's DialEnd: Asterisk publishes
    them on different topics, in either order. The forwarded offer still gets its result;
    the newer offer stays the call's current one."""
    if event.dial_status.upper() == "ANSWER" or not any(
            o.agent_id == event.agent_id and o.ended_at is None for o in call.offers):
        return call, []
    result = OfferResult.PBX_FAILURE if event.pbx_failure \
        else offer_result(event.dial_status, event.leg_cause, event.forward)
    call = _close_offer(call, event.agent_id, result, event.at, event.from_pbx)
    return call, _effects(call, timings, to_agent=event.agent_id)


def _leave(call: InboundCall, at: float) -> InboundCall:
    """The agent who has the caller now leaves the call at ``at`` (their part ends); in a
    three-way conference every agent still on it does, and after one, the agent who
    stayed (not necessarily the last to answer)."""
    return replace(call, offers=tuple(
        replace(o, left_at=at) if o.result is OfferResult.ANSWERED and o.left_at is None
        else o for o in call.offers))


@enforces("STD-049")
def _party_left(call: InboundCall, event: PartyLeft,
                timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    """One agent of a three-way conference left; the other keeps the caller. Counted as a
    transfer when the caller stays with the later agent (the consulted one). The last
    agent leaving a conference with a number hands the caller to it, as a warm transfer
    out does: a transfer, the agent's part ends, the call goes on with the outside party."""
    present = call.in_conference
    leaving = next((o for o in present if o.agent_id == event.agent_id), None)
    if call.phase is not Phase.CONNECTED or leaving is None:
        return call, []
    if len(present) == 1 and call.outside_party:
        call = replace(_leave(call, event.at), phase=Phase.TRANSFERRING,
                       transfer_count=call.transfer_count + 1,
                       transfer_target=call.outside_party, outside_party="")
        return call, _effects(call, timings, to_agent=event.agent_id)
    if len(present) < 2:
        return call, []
    offers = tuple(replace(o, left_at=event.at) if o is leaving else o for o in call.offers)
    stays = [o for o in present if o is not leaving][-1]
    handed_on = call.offers.index(leaving) < call.offers.index(stays)
    call = replace(call, offers=offers, agent_id=stays.agent_id,
                   transfer_count=call.transfer_count + (1 if handed_on else 0))
    return call, _effects(call, timings, to_agent=event.agent_id)


@enforces("STD-055", "STD-069",
          policy=("routing.missed_call_callbacks", "routing.dropped_call_callback",
                  "routing.dropped_call_causes"))
def _released(call: InboundCall, event: CallReleased,
              timings: CallRules) -> tuple[InboundCall, list[Effect]]:
    current = call.current_offer
    if current is not None:
        gone = OfferResult.PBX_FAILURE if event.by == "pbx" else OfferResult.CALLER_GONE
        call = _close_offer(call, current.agent_id, gone, event.at)
    if event.outcome is not None:
        outcome = event.outcome
    elif event.by == "pbx":
        outcome = Outcome.PBX_FAILURE
    elif call.answered_at is not None:
        outcome = Outcome.ANSWERED
    elif event.at - call.t_in <= timings.short_abandon_s:
        outcome = Outcome.SHORT_ABANDON
    else:
        outcome = Outcome.ABANDONED
    was_connected = call.phase is Phase.CONNECTED
    call = replace(_leave(call, event.at), phase=Phase.ENDED, ended_at=event.at,
                   outcome=outcome, hangup_cause=event.cause, released_by=event.by,
                   incomplete=event.incomplete)
    effects = _effects(call, timings, to_agent=call.agent_id)
    if was_connected and event.by in ("caller", "agent") and timings.dropped_call_callback \
            and event.cause in timings.dropped_call_causes:
        # STD-069: the line dropped mid-conversation; the same agent calls back
        effects.append(_task("dropped_call", call, event.at, call.agent_id,
                             f"line dropped (cause {event.cause})"))
    elif outcome is Outcome.ABANDONED and timings.missed_call_callbacks and call.caller:
        effects.append(_task("callback", call, event.at, None, "missed call (STD-055)"))
    return call, effects
