"""The call record's invariants, checked against what Asterisk reported (issue 13).

Four promises the record makes, checked continuously by the running engine (a breach
is an ``invariant_breach`` alarm, and the reconciler corrects the drift behind it) and
at the end of every live test (tests/integration/conftest.py fails the test on any):

1. every offered call ends with exactly one outcome;
2. no agent is offered a call while Asterisk has a channel on their desk, and no agent
   ever has two of our calls at once;
3. an agent in ready, ACW or not-ready has no call channel on the desk (one of our
   calls, or any channel bridged with someone) for longer than ``GRACE_S``;
4. each record's times are Asterisk's own: the answer is the agent leg's ``Up``, the
   end is the first hang-up request of the caller's or the talking agent's leg, each
   offer starts when its agent leg appears (within ``TOLERANCE_S``).

The checker reads AMI frames itself (not the runtime's interpretation of them), so
it judges the engine by Asterisk's word, and the engine's facts as the core emitted
them (``CallChanged``, ``AgentChanged``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from callflow.agents.changes import AgentChanged
from callflow.agents.events import AgentState
from callflow.engine.calls import CallChanged, InboundCall, Phase
from callflow.engine.channels import SOFT_SHUTDOWN, endpoint_of
from callflow.engine.effects import DomainEvent

TOLERANCE_S = 0.2  # record times vs Asterisk's stamps
GRACE_S = 1.0  # a state change and the channel's end cross by a few milliseconds
MEMORY_S = 300.0  # ended calls and channels are kept this long (Asterisk's clock)
IDLE_STATES = (AgentState.READY, AgentState.ACW, AgentState.NOT_READY)


class Frame(Protocol):
    @property
    def name(self) -> str: ...

    def get(self, key: str, default: str = "") -> str: ...


@dataclass(frozen=True)
class Breach:
    invariant: int  # 1..4, as in the module docstring
    what: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass
class _Leg:
    uid: str
    name: str
    linkedid: str
    born: float
    up_at: float | None = None
    far_end_hangup: float | None = None
    bridged: bool = False


@dataclass
class _Idle:
    """An agent in an idle state with a call channel on the desk, since ``since``."""

    since: float
    uid: str


READS = frozenset({"Newchannel", "Newstate", "HangupRequest", "SoftHangupRequest",
                   "BridgeEnter", "BridgeLeave", "Hangup"})
"""The AMI events ``InvariantChecker.on_frame`` reads (Runtime.ami_event_names)."""


class InvariantChecker:
    """Feed AMI frames (``on_frame``) and the core's events (``on_event``), in the order
    they arrive; ``breaches`` grows as promises break; ``finish`` closes the books."""

    def __init__(self) -> None:
        self.breaches: list[Breach] = []
        self._legs: dict[str, _Leg] = {}  # live channels
        self._gone: dict[str, _Leg] = {}  # channels that ended (their stamps stay)
        self._bridges: dict[str, set[str]] = {}
        self._tracked: set[str] = set()  # call ids of our calls (the caller's uniqueid)
        self._ended: dict[str, int] = {}  # call id -> how many ended records
        self._offered: set[str] = set()
        self._agents: dict[str, AgentChanged] = {}
        self._by_desk: dict[str, str] = {}  # endpoint -> agent id (the agent's last desk)
        self._desks: dict[str, set[str]] = {}  # endpoint -> live channel uids
        self._idle_breach: dict[str, _Idle] = {}
        self._shutdown_at: float | None = None
        self._clock = 0.0  # the latest Asterisk stamp seen
        self._ended_at: dict[str, float] = {}  # call id -> when it ended (Asterisk's clock)
        self._pruned_at = 0.0

    # --- Asterisk's word -----------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        stamp = _float(frame.get("Timestamp"))
        if stamp is not None:
            self._clock = max(self._clock, stamp)
        name, uid = frame.name, frame.get("Uniqueid")
        desk = ""
        live = self._legs.get(uid)
        if name == "Newchannel":
            born = _Leg(uid, frame.get("Channel"), frame.get("Linkedid") or uid,
                        stamp or self._clock)
            self._legs[uid] = born
            desk = endpoint_of(born.name)
            if desk:
                self._desks.setdefault(desk, set()).add(uid)
        elif name == "Newstate" and frame.get("ChannelStateDesc") == "Up":
            if live is not None and live.up_at is None:
                live.up_at = stamp
        elif name == "HangupRequest":
            if live is not None and live.far_end_hangup is None:
                live.far_end_hangup = stamp
        elif name == "SoftHangupRequest" and frame.get("Cause") == str(SOFT_SHUTDOWN):
            self._shutdown_at = self._shutdown_at or stamp
        elif name == "BridgeEnter":
            self._bridges.setdefault(frame.get("BridgeUniqueid"), set()).add(uid)
            for bridged in self._mark_bridged(frame.get("BridgeUniqueid")):
                self._check_desk(endpoint_of(bridged.name))
        elif name == "BridgeLeave":
            self._bridges.get(frame.get("BridgeUniqueid"), set()).discard(uid)
        elif name == "Hangup" and live is not None:
            del self._legs[uid]
            self._gone[uid] = live
            desk = endpoint_of(live.name)
            self._desks.get(desk, set()).discard(uid)
        if desk:
            self._check_desk(desk)
        self._check_pending()
        if self._clock - self._pruned_at > MEMORY_S / 5:
            self._prune(self._clock - MEMORY_S)

    def asterisk_listed(self, uids: set[str], *, restarted: bool = False) -> None:
        """Asterisk's whole listing after a resync (or nothing at all: it died): channels
        it no longer has ended while we could not see, and stop counting against desks.
        ``restarted``: a new Asterisk numbers its channels from 1 again, so the names and
        stamps of the old one's must not be matched with the new one's."""
        if restarted:
            self._shutdown_at = None
            self._legs.clear()
            self._gone.clear()
            self._desks.clear()
            self._bridges.clear()
            return
        for uid in [u for u in self._legs if u not in uids]:
            leg = self._legs.pop(uid)
            self._gone[uid] = leg
            desk = endpoint_of(leg.name)
            self._desks.get(desk, set()).discard(uid)
            if desk:
                self._check_desk(desk)
        for members in self._bridges.values():
            members &= uids
        self._bridges = {b: m for b, m in self._bridges.items() if m}

    def _prune(self, before: float) -> None:
        """A long-running engine keeps only the recent past."""
        self._pruned_at = self._clock
        self._gone = {uid: leg for uid, leg in self._gone.items() if leg.born >= before}
        old = {cid for cid, at in self._ended_at.items() if at < before}
        for call_id in old:
            self._ended_at.pop(call_id, None)
            self._ended.pop(call_id, None)
            self._offered.discard(call_id)
            self._tracked.discard(call_id)

    def _mark_bridged(self, bridge: str) -> list[_Leg]:
        members = self._bridges.get(bridge, set())
        marked = []
        if len(members) > 1:
            for uid in members:
                leg = self._legs.get(uid)
                if leg is not None and not leg.bridged:
                    leg.bridged = True
                    marked.append(leg)
        return marked

    # --- the engine's word ---------------------------------------------------------------

    def on_event(self, event: DomainEvent) -> None:
        if isinstance(event, CallChanged):
            self._on_call(event.call)
        elif isinstance(event, AgentChanged):
            self._on_agent(event)
            self._check_agent(event.agent.agent_id)

    def _on_call(self, call: InboundCall) -> None:
        self._tracked.add(call.call_id)
        if call.offers:
            self._offered.add(call.call_id)
        if call.phase is not Phase.ENDED:
            return
        self._ended[call.call_id] = self._ended.get(call.call_id, 0) + 1
        self._ended_at[call.call_id] = self._clock
        if self._ended[call.call_id] > 1:
            self._breach(1, "a call ended twice", call_id=call.call_id)
        if call.outcome is None:
            self._breach(1, "an ended call has no outcome", call_id=call.call_id)
        if not call.incomplete:
            self._check_times(call)

    def _on_agent(self, event: AgentChanged) -> None:
        agent = event.agent
        before = self._agents.get(agent.agent_id)
        self._agents[agent.agent_id] = event
        if agent.extension:
            self._by_desk[agent.extension] = agent.agent_id
        if event.cause == "offered":  # (the offered call's own leg may already ring)
            busy = [leg.uid for leg in self._on_desk(agent.extension)
                    if leg.linkedid != agent.call_id]
            if busy:
                self._breach(2, "an agent was offered a call with a channel on the desk",
                             agent_id=agent.agent_id, call_id=agent.call_id, channels=busy)
        if before is not None and before.agent.call_id and agent.call_id \
                and before.agent.call_id != agent.call_id \
                and before.agent.state in (AgentState.ON_CALL, AgentState.ON_HOLD) \
                and agent.state in (AgentState.ON_CALL, AgentState.ON_HOLD) \
                and before.agent.call_id in self._tracked and agent.call_id in self._tracked:
            self._breach(2, "an agent has two calls", agent_id=agent.agent_id,
                         calls=[before.agent.call_id, agent.call_id])

    # --- checks --------------------------------------------------------------------------

    def _on_desk(self, endpoint: str) -> list[_Leg]:
        return [self._legs[uid] for uid in sorted(self._desks.get(endpoint, ()))
                if uid in self._legs]

    def _call_channel(self, leg: _Leg) -> bool:
        return leg.bridged or leg.linkedid in self._tracked

    def _check_desk(self, endpoint: str) -> None:
        agent_id = self._by_desk.get(endpoint)
        if agent_id is not None:
            self._check_agent(agent_id)

    def _check_pending(self) -> None:
        """Agents found idle with a call channel: a breach once it outlasts the grace."""
        for agent_id in list(self._idle_breach):
            self._check_agent(agent_id)

    def _check_agent(self, agent_id: str) -> None:
        event = self._agents.get(agent_id)
        if event is None:
            return
        agent = event.agent
        talking = [leg for leg in self._on_desk(agent.extension) if self._call_channel(leg)]
        if agent.state not in IDLE_STATES or not talking:
            self._idle_breach.pop(agent_id, None)
            return
        idle = self._idle_breach.setdefault(agent_id, _Idle(self._clock, talking[0].uid))
        if self._clock - idle.since > GRACE_S:
            self._breach(3, "an idle agent has a call channel", agent_id=agent_id,
                         state=agent.state.value, channel=idle.uid)
            idle.since = float("inf")  # once per episode

    def _leg_by_name(self, name: str) -> _Leg | None:
        for leg in (*self._legs.values(), *self._gone.values()):
            if leg.name == name:
                return leg
        return None

    def _check_times(self, call: InboundCall) -> None:
        caller = self._legs.get(call.call_id) or self._gone.get(call.call_id)
        if caller is None:
            return  # the call began before this checker started
        for offer in call.offers:
            leg = self._leg_by_name(offer.channel) if offer.channel else None
            if leg is not None and offer.from_pbx and not offer.joined:
                self._near(offer.started_at, leg.born, "offer start", call, offer.agent_id)
        answered = call.answered_offer
        leg = self._leg_by_name(answered.channel) if answered and answered.channel else None
        if answered is not None and call.answered_at is not None and leg is not None \
                and leg.up_at is not None:
            self._near(call.answered_at, leg.up_at, "answer", call, answered.agent_id)
        ends = [t for t in (caller.far_end_hangup, self._talking_hangup(call),
                            self._shutdown_at) if t is not None]
        if ends and call.ended_at is not None and call.released_by in ("caller", "agent",
                                                                       "pbx"):
            self._near(call.ended_at, min(ends), "end", call, call.agent_id)

    def _talking_hangup(self, call: InboundCall) -> float | None:
        offers = [o for o in call.offers if o.channel and o.left_at is not None]
        legs = [self._leg_by_name(o.channel) for o in offers[-1:]]
        return next((leg.far_end_hangup for leg in legs
                     if leg is not None and leg.far_end_hangup is not None), None)

    def _near(self, recorded: float, asterisk: float, what: str, call: InboundCall,
              agent_id: str | None) -> None:
        if abs(recorded - asterisk) > TOLERANCE_S:
            self._breach(4, f"the record's {what} is not Asterisk's", call_id=call.call_id,
                         agent_id=agent_id, recorded=round(recorded, 3),
                         asterisk=round(asterisk, 3))

    def _breach(self, invariant: int, what: str, **detail: object) -> None:
        self.breaches.append(Breach(invariant, what, detail))

    def finish(self) -> list[Breach]:
        """Every offered call must have ended (call this once all calls are over)."""
        for call_id in sorted(self._offered - set(self._ended)):
            self._breach(1, "an offered call never ended", call_id=call_id)
        return self.breaches


def _float(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None
