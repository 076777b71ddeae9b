"""Asterisk's own records of a call (CEL), made into the call's facts and events.

When the engine could not hear AMI (its process died, the link was down), the call
record is completed from the rows Asterisk's Channel Event Logging wrote meanwhile
(``callflow/pbx/cel.py`` reads them; ``callflow/recovery.py`` applies what this module
says). Pure: rows in, facts and call events out; no clock, no file.

What the rows mean, measured on Asterisk 22.10 (``tests/fixtures/cel/``):

* **The call** is a linkedid; its **caller** is the channel whose uniqueid is the
  linkedid, and it entered the centre at that channel's ``CHAN_START`` in the inbound
  context (its ``exten`` is the DID, ``cid_num`` the caller's number).
* **An agent leg** is any other PJSIP channel of the linkedid (our Dial, the fallback
  queue's, a forward's): it rang from its ``CHAN_START``, was answered at its
  ``ANSWER`` (the same instant as AMI's ``Newstate Up``: 0-2 ms apart, measured).
* **The end** is the first ``HANGUP`` of the caller's channel or of the agent leg
  that had the caller (the conversation ends with the first of them: measured within
  10 ms of AMI's first ``HangupRequest``). **Who asked** is in the ``HANGUP``
  row's ``hangupsource``: a channel that names itself hung up from its phone (a BYE); the
  dialplan (``dialplan/builtin``) or nobody ("") means Asterisk ended it on someone
  else's word, so the party whose ``HANGUP`` names itself first is the one who
  released. Without such a word the releaser is unknown, never guessed.
* **A leg that rang unanswered** ended by its own phone (it names itself: busy,
  declined, unavailable by its cause), by the ring limit (Asterisk ended it), or by the
  caller leaving (the caller's ``dialstatus`` is ``CANCEL``: the last ringing leg went
  with the caller).
* **The fallback queue** served the call when the caller's channel started
  ``Queue(<fallback queue>)``; its recording is the ``MixMonitor`` file started just
  before (``<fallback queue>-<uniqueid>.wav`` in Asterisk's monitor spool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from callflow.engine import calls
from callflow.engine.channels import endpoint_of

#: ``hangupsource`` values that are Asterisk acting on someone else's word.
DIALPLAN_SOURCE = "dialplan/builtin"


@dataclass(frozen=True)
class CelEvent:
    """One CEL row as Asterisk wrote it (``callflow/pbx/cel.py`` reads them)."""

    seq: int  # Asterisk's AcctId: the order rows were written in
    event: str  # CHAN_START, ANSWER, HANGUP, ...
    at: float  # epoch seconds, microseconds
    uniqueid: str
    linkedid: str
    channel: str
    context: str = ""
    exten: str = ""
    app: str = ""
    appdata: str = ""
    cid_num: str = ""
    peer: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Leg:
    """One channel of the call, as its rows tell it."""

    uniqueid: str
    channel: str
    started_at: float
    answered_at: float | None = None
    ended_at: float | None = None  # its HANGUP (None: still up, or the rows stop short)
    cause: int | None = None  # HANGUP's Q.850 cause (0 = none given)
    hangup_source: str = ""
    dial_status: str = ""  # HANGUP's dialstatus: the last Dial/Queue this channel made

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.channel)

    @property
    def asked_itself(self) -> bool:
        """Its own phone asked for the end (a BYE, a CANCEL, a rejection)."""
        return self.ended_at is not None and self.hangup_source == self.channel


@dataclass(frozen=True)
class CallFacts:
    """What Asterisk's rows say about one call (one linkedid)."""

    linkedid: str
    caller: Leg
    context: str  # where the caller's channel started (the inbound context for ours)
    did: str
    number: str
    legs: tuple[Leg, ...] = ()  # the other PJSIP channels (agent phones), by start time
    fallback: bool = False  # the caller went into the fallback queue
    recording: str = ""  # the fallback's MixMonitor file name, as the dialplan gave it
    recording_started_at: float | None = None
    transfers: int = 0  # BLINDTRANSFER / ATTENDEDTRANSFER rows

    @property
    def entered_at(self) -> float:
        return self.caller.started_at

    @property
    def answered(self) -> Leg | None:
        """The first leg that answered (t_ans)."""
        up = [leg for leg in self.legs if leg.answered_at is not None]
        return min(up, key=lambda leg: leg.answered_at or 0.0) if up else None

    @property
    def talking(self) -> Leg | None:
        """The leg that had the caller last (the last answered)."""
        up = [leg for leg in self.legs if leg.answered_at is not None]
        return max(up, key=lambda leg: leg.answered_at or 0.0) if up else None

    @property
    def ended(self) -> bool:
        return self.caller.ended_at is not None

    @property
    def ended_at(self) -> float | None:
        """The first hang-up of the caller's channel, of the agent leg that had the
        caller, or of the leg that was still ringing when the caller left (Asterisk ends
        those on the caller's word, a few milliseconds before the caller's own row)."""
        if self.caller.ended_at is None:
            return None
        ends = [self.caller.ended_at]
        with_caller = [self.talking] if self.talking is not None else \
            [leg for leg in self.legs if went_with_caller(self, leg)]
        ends += [leg.ended_at for leg in with_caller if leg.ended_at is not None]
        return min(ends)

    @property
    def released_by(self) -> str:
        """caller | agent (whose phone asked first), system (the dialplan ended a call no
        agent had), unknown (no row says who)."""
        talking = self.talking
        parties = [(self.caller, "caller")]
        if talking is not None:
            parties.append((talking, "agent"))
        asked = sorted((leg.ended_at or 0.0, who) for leg, who in parties if leg.asked_itself)
        if asked:
            return asked[0][1]
        if talking is None and self.caller.hangup_source == DIALPLAN_SOURCE:
            return "system"
        return "unknown"

    @property
    def cause(self) -> int:
        """The Q.850 cause of the release (16, normal clearing, when none was given)."""
        first = self.caller
        talking = self.talking
        if self.released_by == "agent" and talking is not None:
            first = talking
        return first.cause or 16


def by_linkedid(events: Iterable[CelEvent]) -> dict[str, list[CelEvent]]:
    """Rows grouped by call, each group in Asterisk's order."""
    out: dict[str, list[CelEvent]] = {}
    for event in sorted(events, key=lambda e: e.seq):
        out.setdefault(event.linkedid, []).append(event)
    return out


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _leg(rows: Sequence[CelEvent]) -> Leg | None:
    start = next((r for r in rows if r.event == "CHAN_START"), None)
    if start is None:
        return None
    answer = next((r for r in rows if r.event == "ANSWER"), None)
    hangup = next((r for r in rows if r.event == "HANGUP"), None)
    if hangup is None:
        hangup = next((r for r in rows if r.event == "CHAN_END"), None)
    extra = hangup.extra if hangup is not None else {}
    return Leg(uniqueid=start.uniqueid, channel=start.channel, started_at=start.at,
               answered_at=answer.at if answer is not None else None,
               ended_at=hangup.at if hangup is not None else None,
               cause=_int(extra.get("hangupcause")),
               hangup_source=str(extra.get("hangupsource", "")),
               dial_status=str(extra.get("dialstatus", "")))


def call_facts(rows: Sequence[CelEvent], *, fallback_queue: str) -> CallFacts | None:
    """The facts of one call from its rows (one linkedid's, any order); None when the
    rows do not hold its caller's channel start (a call older than the rows kept)."""
    if not rows:
        return None
    linkedid = rows[0].linkedid
    ordered = sorted(rows, key=lambda r: r.seq)
    by_channel: dict[str, list[CelEvent]] = {}
    for row in ordered:
        by_channel.setdefault(row.uniqueid, []).append(row)
    caller = _leg(by_channel.get(linkedid, []))
    if caller is None:
        return None
    start = by_channel[linkedid][0]
    legs = [leg for uid, channel_rows in by_channel.items() if uid != linkedid
            if (leg := _leg(channel_rows)) is not None and leg.endpoint]
    apps = [r for r in by_channel[linkedid] if r.event == "APP_START"]
    fallback = any(r.app.lower() == "queue" and r.appdata.split(",")[0] == fallback_queue
                   for r in apps)
    recording = next((r for r in apps if r.app.lower() == "mixmonitor"
                      and r.appdata.startswith(f"{fallback_queue}-")), None)
    transfers = sum(1 for r in ordered if r.event in ("BLINDTRANSFER", "ATTENDEDTRANSFER"))
    return CallFacts(
        linkedid=linkedid, caller=caller, context=start.context, did=start.exten,
        number=start.cid_num, legs=tuple(sorted(legs, key=lambda leg: leg.started_at)),
        fallback=fallback,
        recording=recording.appdata.split(",")[0] if recording is not None else "",
        recording_started_at=recording.at if recording is not None else None,
        transfers=transfers)


AgentOf = Callable[[str], str | None]


def went_with_caller(facts: CallFacts, leg: Leg) -> bool:
    """This unanswered leg ended because the caller left while it rang."""
    if leg.answered_at is not None or leg.asked_itself:
        return False
    if facts.caller.dial_status.upper() != "CANCEL":
        return leg.ended_at is None
    ringing = [other for other in facts.legs if other.answered_at is None
               and not other.asked_itself]
    return bool(ringing) and leg is ringing[-1]


def _leg_events(call_id: str, agent_id: str, leg: Leg, facts: CallFacts,
                offer: calls.Offer | None) -> list[calls.CallEvent]:
    """The offer events of one agent leg, skipping what ``offer`` (the call's own record
    of this leg, if any) already holds as Asterisk's."""
    out: list[calls.CallEvent] = []
    if offer is not None and offer.ended_at is not None:
        if offer.result is calls.OfferResult.ANSWERED and not offer.from_pbx \
                and leg.answered_at is not None:
            out.append(calls.AnswerConfirmed(call_id, agent_id, leg.channel, leg.started_at,
                                             leg.answered_at))
        return out
    out.append(calls.OfferStarted(call_id, agent_id, leg.channel, leg.started_at))
    if leg.answered_at is not None:
        out.append(calls.OfferEnded(call_id, agent_id, "ANSWER", leg.answered_at))
    elif leg.ended_at is not None and not went_with_caller(facts, leg):
        cause = leg.cause if leg.asked_itself else None
        out.append(calls.OfferEnded(call_id, agent_id, "NOANSWER", leg.ended_at,
                                    leg_cause=cause))
    return out


def _match_offers(call: calls.InboundCall, legs: Sequence[tuple[str, Leg]],
                  ) -> list[calls.Offer | None]:
    """Which offer of the record each agent leg is: by channel name when the record has
    it (AMI timed the offer), else the n-th unnamed offer of that agent is its n-th
    unnamed leg (the flow's offers, or a record read back from the store)."""
    named = {o.channel: o for o in call.offers if o.channel}
    unnamed: dict[str, list[calls.Offer]] = {}
    for offer in call.offers:
        if not offer.channel or offer.channel not in {leg.channel for _, leg in legs}:
            unnamed.setdefault(offer.agent_id, []).append(offer)
    matched: list[calls.Offer | None] = []
    for agent_id, leg in legs:
        if leg.channel in named:
            matched.append(named[leg.channel])
            continue
        pool = unnamed.get(agent_id, [])
        matched.append(pool.pop(0) if pool else None)
    return matched


def call_events(call: calls.InboundCall, facts: CallFacts, agent_of: AgentOf, *,
                closing: bool) -> list[calls.CallEvent]:
    """The call events that bring ``call`` (the engine's record) up to Asterisk's rows:
    the offers and answers it missed, a flow-timed answer confirmed, and, when
    ``closing`` and the rows hold it, the release. Events the record already holds
    are left out (the machine would ignore most, not a repeated offer)."""
    legs = [(agent_id, leg) for leg in facts.legs
            if (agent_id := agent_of(leg.channel)) is not None]
    events: list[tuple[float, int, calls.CallEvent]] = []
    for n, ((agent_id, leg), offer) in enumerate(zip(legs, _match_offers(call, legs),
                                                     strict=True)):
        for m, event in enumerate(_leg_events(call.call_id, agent_id, leg, facts, offer)):
            at = event.answered_at if isinstance(event, calls.AnswerConfirmed) else event.at
            events.append((at, n * 3 + m, event))
    ordered = [event for _, _, event in sorted(events, key=lambda e: (e[0], e[1]))]
    end = facts.ended_at
    if closing and end is not None:
        ordered.append(calls.CallReleased(call.call_id, end, cause=facts.cause,
                                          by=facts.released_by))
    return ordered


def entered(facts: CallFacts, queue: str) -> calls.CallEntered:
    """A call the engine never saw (the fallback served it while the engine was away)."""
    return calls.CallEntered(facts.linkedid, facts.caller.channel, facts.number, facts.did,
                             queue, facts.entered_at)
