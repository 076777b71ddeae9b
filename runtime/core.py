"""The runtime: feeds events to the pure machines and carries out their effects.

It owns the live state (calls by Asterisk Uniqueid, agents by work number) and is
the only place where AMI frames become domain events. Asterisk reports the same
fact twice on purpose: AMI events (the truth, with Asterisk's millisecond
timestamps) and the AGI flow's replies (a backup when the AMI link was down). The
machines ignore duplicates, so whichever arrives first wins and nothing is lost.

Everything here runs on the asyncio loop; effects that touch slow things (the
store) are handed to adapters that never block the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from callflow.agents import desks, routing
from callflow.agents import events as agent_events
from callflow.agents import state as agent_state
from callflow.agents.roster import Roster, RosterAgent
from callflow.engine import calls
from callflow.engine.channels import endpoint_of
from callflow.engine.clock import Clock, epoch_of
from callflow.engine.effects import (
    Alarm,
    CancelTimer,
    DomainEvent,
    Effect,
    ListChannels,
    ListEndpoints,
    PbxAction,
    PbxQuery,
    Persist,
    Publish,
    StartTimer,
)
from callflow.engine.policy import Policy
from callflow.errors import AmiLinkDown, CallflowError, StateError
from callflow.runtime.asterisk import AmiFrame, AsteriskFacts, ChannelLink
from callflow.runtime.doubted import DoubtedFrames
from callflow.runtime.invariants import READS as INVARIANT_READS
from callflow.runtime.invariants import InvariantChecker
from callflow.runtime.judging import Judge
from callflow.runtime.reconcile import pbx_gone, reconcile

log = logging.getLogger(__name__)

#: Offers the phone refused, and what the agent machine is told of each.
#: PJSIP endpoint device states saying no contact of the desk is reachable (qualified
#: unavailable, none registered, or not qualified yet since Asterisk started).
UNAVAILABLE = frozenset({"Unavailable", "Invalid"})
REJECTIONS = {calls.OfferResult.BUSY: "busy", calls.OfferResult.DECLINED: "declined",
              calls.OfferResult.FORWARDED: "forwarded"}


class PbxPort(Protocol):
    """How the runtime reaches Asterisk (``callflow.ami.pbx.AmiPbx`` over AMI).

    ``send`` and ``query`` raise ``AmiError`` subclasses (``AmiLinkDown``...) from
    ``callflow.errors``; replies and listed items are ``AmiFrame``s."""

    @property
    def up(self) -> bool: ...

    @property
    def stats(self) -> Mapping[str, float]: ...

    async def send(self, action: PbxAction) -> AmiFrame: ...

    async def query(self, query: PbxQuery) -> Sequence[AmiFrame]: ...


@dataclass
class Adapters:
    """The edges effects go out through; each must return at once (queue, don't block).

    ``record`` and ``show`` take the core's typed events to the store and the live stream
    (each turns them into its own shape: ``callflow.store.rows``, ``callflow.stream.frames``;
    ``callflow.service.edge_adapters`` wires both). ``persist`` and ``publish`` carry a
    feature's own records and messages as they are. ``pbx`` is None only where no
    Asterisk is wired (pure tests)."""

    record: Callable[[DomainEvent], None]
    show: Callable[[DomainEvent], None]
    persist: Callable[[str, dict[str, Any]], None]
    publish: Callable[[str, dict[str, Any]], object]
    pbx: PbxPort | None = None


@dataclass
class RuntimeStats:
    ami_events: int = 0
    ami_batches: int = 0
    max_event_lag_s: float = 0.0
    effects: int = 0
    timer_fires: int = 0
    errors: int = 0
    resyncs: int = 0
    alarms_repeated: int = 0  # standing conditions not raised again while open
    seen_events: dict[str, int] = field(default_factory=dict)


class Runtime:
    """The one owner of live calls and agents; features and flows go through it.

    Three kinds of callers: the AGI flows (``call_entered``, ``choose_agent``,
    ``offer_reported``…: what our dialplan did), Asterisk's facts (``on_ami_batch``,
    ``apply_resync``, ``reconcile_now``, ``pbx_lost``: what really happened, which wins),
    and people through the API (``agent_event``, ``log_in``: requests the agent machine
    may refuse). Features extend it without reaching inside: ``on_event`` (every domain
    event, in order), ``on_ami``, ``own_timers``, ``hold_agents``, ``gate_alarms``,
    ``extend_snapshot``, ``on_resync``, and ``request``/``query`` to ask Asterisk.
    """

    def __init__(self, policy: Policy, clock: Clock, roster: Roster, adapters: Adapters) -> None:
        self.policy = policy
        self.clock = clock
        self.roster = roster
        self.adapters = adapters
        self.timings = call_rules(policy)
        self.calls: dict[str, calls.InboundCall] = {}
        self.agents: dict[str, agent_state.AgentSnapshot] = {}
        self.agent_links: dict[str, ChannelLink] = {}  # agent leg uniqueid -> call/agent
        # agent_id -> call_id: that agent's phone is consulted for a desktop warm transfer
        # of the call (AMI Atxfer); their leg is the consultation's, not an offer
        self.consults: dict[str, str] = {}
        self.first_release: dict[str, str] = {}  # call_id -> "caller" | "agent"
        self.waiters: dict[str, asyncio.Event] = {}  # calls waiting for an agent, by call_id
        self.agi_hangup_grace_s = 2.0  # how long the flow's hang-up report waits for AMI's
        self.ended_call_retention_s = 300.0  # ended calls kept in memory, then store only
        self.endpoint_reachable: dict[str, bool] = {}  # PJSIP's last word on each desk
        # Asterisk's own records (CEL) close the calls whose end the engine did not see
        # (callflow/recovery.py sets this when it is wired): a call lost while the AMI
        # link was down waits in ``lost_calls`` for them instead of being closed with
        # the correction's time, and the flow's word on an end while the link is down
        # is left to them too
        self.ends_from_records = False
        self.lost_calls: set[str] = set()
        self._endpoint_seen: dict[str, float] = {}  # when that word was observed (monotonic)
        self._contacts: dict[str, dict[str, bool]] = {}  # AOR -> contact URI -> reachable
        self._confirmed: set[str] = set()  # desks seen reachable since the last resync
        self._softphone_grace_until = 0.0  # monotonic: "unreachable" waits till then
        self._resync_listeners: list[Callable[[], None]] = []
        self._rechecks: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._listeners: dict[str, list[Callable[[AmiFrame], None]]] = {}
        self._timer_owners: dict[str, Callable[[str], None]] = {}
        self._event_listeners: list[Callable[[DomainEvent], None]] = []
        self._snapshot_parts: dict[str, Callable[[Callable[[str], bool]], Any]] = {}
        self._agent_holds: list[Callable[[str], bool]] = []
        self._alarm_gates: list[Callable[[Alarm], bool]] = []
        self.stats = RuntimeStats()
        for member in roster.agents:
            self.agents[member.agent_id] = agent_state.new_agent(member.agent_id, member.endpoint)
        self.asterisk = AsteriskFacts(self)
        self.invariants = InvariantChecker()  # Asterisk's word vs the record, live
        self.doubted = DoubtedFrames()  # AMI frames a caller may have written (issue 15)
        # every call judged against the rules, from the facts that close them (verdicts)
        self.judge = Judge(policy, self.calls.get, self.epoch_of, time.time)

    # --- effects ---------------------------------------------------------------

    def execute(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            self.stats.effects += 1
            try:
                self._execute_one(effect)
            except Exception:  # an adapter fault must not stop the other effects
                self.stats.errors += 1
                log.exception("effect %r failed", effect)

    def _execute_one(self, effect: Effect) -> None:
        if isinstance(effect, DomainEvent):
            self._emit(effect)
        elif isinstance(effect, Persist):
            self.adapters.persist(effect.kind, effect.data)
        elif isinstance(effect, Publish):
            self.adapters.publish(effect.topic, effect.payload)
        elif isinstance(effect, StartTimer):
            self._start_timer(effect.key, effect.at)
        elif isinstance(effect, CancelTimer):
            handle = self._timers.pop(effect.key, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(effect, PbxAction):
            task = asyncio.get_running_loop().create_task(self.request(effect))
            task.add_done_callback(_log_pbx_failure(effect))
        else:
            raise CallflowError(f"unknown effect {effect!r}")

    def _emit(self, event: DomainEvent) -> None:
        """To the store, to the live stream, then to the features that follow the core."""
        if isinstance(event, Alarm):
            if not all(admit(event) for admit in self._alarm_gates):
                self.stats.alarms_repeated += 1
                log.info("alarm %s %s repeats an open one: not raised again", event.kind,
                         event.detail)
                return
            if not event.raised_at:
                event = replace(event, raised_at=time.time())
        self.adapters.record(event)
        self.adapters.show(event)
        self._watch(self.invariants.on_event, event)
        for listener in self._event_listeners:
            try:
                listener(event)
            except Exception:  # a feature's fault must not cost the core its effects
                self.stats.errors += 1
                log.exception("event listener %r failed on %s", listener,
                              type(event).__name__)
        try:
            judged = self.judge(event)
        except Exception:  # a verdict that cannot be reached must not cost the core its effects
            self.stats.errors += 1
            log.exception("judging %s failed", type(event).__name__)
            judged = None
        if judged is not None:
            self._emit(judged)

    def _watch(self, check: Callable[[Any], None], fact: Any) -> None:
        """Run one invariant check; a new breach is an alarm (the reconciler then corrects
        the drift behind it)."""
        seen = len(self.invariants.breaches)
        check(fact)
        for breach in self.invariants.breaches[seen:]:
            log.error("invariant %d broken: %s %s", breach.invariant, breach.what,
                      dict(breach.detail))
            self.execute([Alarm("invariant_breach", {"invariant": breach.invariant,
                                                     "what": breach.what, **breach.detail},
                                std="STD-147")])

    def epoch_of(self, monotonic: float) -> float:
        """Epoch seconds of a monotonic instant (the machines keep monotonic time only)."""
        return epoch_of(self.clock, monotonic)

    def _start_timer(self, key: str, at: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, at - self.clock.now())
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._timer_fired, key)

    def _timer_fired(self, key: str) -> None:
        self._timers.pop(key, None)
        self.stats.timer_fires += 1
        prefix = key.split(":", 1)[0]
        try:
            if prefix == "agent":
                agent_id = key.split(":", 2)[1]
                if agent_id in self.agents:
                    self.agent_event(agent_id, agent_state.TimerFired(key))
            elif prefix in self._timer_owners:
                self._timer_owners[prefix](key)
            else:
                log.error("timer %s fired with no owner", key)
        except Exception:
            self.stats.errors += 1
            log.exception("timer %s could not be handled", key)

    # --- Asterisk -------------------------------------------------------------------------

    async def request(self, action: PbxAction) -> AmiFrame:
        """Carry out ``action`` and return Asterisk's reply (for callers that must know it
        was accepted, e.g. the dialer's Originate). Raises ``AmiError``s."""
        if self.adapters.pbx is None:
            raise AmiLinkDown(f"no Asterisk wired to carry out {action}")
        return await self.adapters.pbx.send(action)

    async def query(self, query: PbxQuery) -> Sequence[AmiFrame]:
        """What Asterisk lists now (channels, endpoints, contacts). Raises ``AmiError``s."""
        if self.adapters.pbx is None:
            raise AmiLinkDown(f"no Asterisk wired to answer {query}")
        return await self.adapters.pbx.query(query)

    @property
    def pbx_up(self) -> bool:
        """The link to Asterisk is up (logged in and resynced)."""
        return self.adapters.pbx is not None and self.adapters.pbx.up

    @property
    def pbx_stats(self) -> Mapping[str, float]:
        return self.adapters.pbx.stats if self.adapters.pbx is not None else {}

    # --- extension points for features ----------------------------------------------

    def on_ami(self, event_name: str, listener: Callable[[AmiFrame], None]) -> None:
        """Also call ``listener(frame)`` for every ``event_name`` (after the core's handler)."""
        self._listeners.setdefault(event_name, []).append(listener)

    def own_timers(self, prefix: str, handler: Callable[[str], None]) -> None:
        """Timers whose key starts with ``prefix:`` fire into ``handler(key)``."""
        if prefix == "agent" or prefix in self._timer_owners:
            raise CallflowError(f"timer prefix {prefix!r} is taken")
        self._timer_owners[prefix] = handler

    def on_event(self, listener: Callable[[DomainEvent], None]) -> None:
        """Also call ``listener(event)`` for every domain event the core emits, after the
        store and the live stream: the board's live figures and queue_log follow every
        fact, even those a slow websocket subscriber would have had replaced by a
        snapshot."""
        self._event_listeners.append(listener)

    def hold_agents(self, predicate: Callable[[str], bool]) -> None:
        """Routing skips an agent while ``predicate(agent_id)`` is true: a feature is about
        to give them other work (the dialer: their own due callback, STD-069)."""
        self._agent_holds.append(predicate)

    def extend_snapshot(self, key: str, part: Callable[[Callable[[str], bool]], Any]) -> None:
        """Add ``state[key] = part(may_see)`` to every snapshot (``part`` filters by may_see)."""
        if key in ("agents", "calls") or key in self._snapshot_parts:
            raise CallflowError(f"snapshot key {key!r} is taken")
        self._snapshot_parts[key] = part

    def gate_alarms(self, admit: Callable[[Alarm], bool]) -> None:
        """``admit(alarm)`` False: the alarm repeats one still open (the board keeps the
        open ones) and is not raised again."""
        self._alarm_gates.append(admit)

    def on_resync(self, listener: Callable[[], None]) -> None:
        """Also call ``listener()`` after every AMI resync (a feature refreshes what it tracks)."""
        self._resync_listeners.append(listener)

    # --- agents -----------------------------------------------------------------

    def agent_event(self, agent_id: str, event: Any) -> agent_state.AgentSnapshot:
        """Apply one event to one agent; illegal requests raise StateError, state unchanged."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise StateError("unknown_agent", f"no agent {agent_id!r} in the roster")
        if isinstance(event, agent_state.RequestState):
            agent_state.check_meal_rotation(agent, event, self.agents.values(), self.policy)
        try:
            new, effects = agent_state.transition(agent, event, self.clock.now(), self.policy)
        except StateError:
            if not self._free_if_phantom(agent):
                raise
            agent = self.agents[agent_id]
            new, effects = agent_state.transition(agent, event, self.clock.now(), self.policy)
        self.agents[agent_id] = new
        self.execute(effects)
        if agent_state.routable(new) and not agent_state.routable(agent):
            for waiting in self.waiters.values():  # each flow re-asks; the oldest wins
                waiting.set()
        return new

    def _free_if_phantom(self, agent: agent_state.AgentSnapshot) -> bool:
        """A request refused because the agent is on a call Asterisk shows no channel of
        (its end was lost, issue 14): the engine is wrong, not the request. The agent is
        freed (a ``state_corrected`` alarm), and the request is tried again."""
        if agent.state not in agent_events.IN_CALL or not self.pbx_up or not agent.extension:
            return False
        if self.asterisk.view.on_endpoint(agent.extension):
            return False
        call = self.calls.get(agent.call_id)
        if agent.state is agent_events.AgentState.RINGING and call is not None \
                and call.phase is not calls.Phase.ENDED:
            return False  # reserved by a flow about to dial the desk
        log.warning("agent %s is %s on %s but Asterisk shows no channel on %s: freed",
                    agent.agent_id, agent.state.value, agent.call_id, agent.extension)
        self.agent_fact(agent.agent_id, agent_state.CallEnded(agent.call_id))
        self.execute([Alarm("state_corrected", {
            "what": "agent_freed", "agent_id": agent.agent_id, "state": agent.state.value,
            "call_id": agent.call_id, "on": "a request Asterisk's channels allow"},
            std="STD-147")])
        return self.agents[agent.agent_id].state not in agent_events.IN_CALL

    def log_in(self, agent_id: str, desk: str = "",
               by: agent_events.Actor = "agent") -> agent_state.AgentSnapshot:
        """Start ``agent_id``'s session at ``desk`` (hot-desking; empty: where they last sat).

        The desk must exist and be free; the agent takes over what PJSIP last said of
        that softphone. Raises StateError (unknown_extension, extension_taken, ...).
        """
        agent = self.agents.get(agent_id)
        if agent is None:
            raise StateError("unknown_agent", f"no agent {agent_id!r} in the roster")
        extension = desks.resolve_desk(self.roster, desk or agent.extension)
        desks.check_free(self.agents, agent_id, extension)
        return self.agent_event(agent_id, agent_state.LogIn(
            extension, by=by, reachable=self.endpoint_reachable.get(extension)))

    def agent_at(self, endpoint: str) -> str | None:
        """The agent PJSIP facts about ``endpoint`` belong to (see agents/desks.py)."""
        return desks.agent_for_endpoint(self.agents, self.roster, endpoint)

    def agent_for_channel(self, channel: str) -> str | None:
        """``PJSIP/agent1003-0000002a`` -> the agent working at desk agent1003."""
        endpoint = endpoint_of(channel)
        return self.agent_at(endpoint) if endpoint else None

    def restore_agents(self, restored: Iterable[agent_state.Step]) -> None:
        """Put agents back as the store last saw them (engine restart), timers re-armed.

        Each item is ``(snapshot, effects)`` from agents/restore.py; agents no longer in
        the roster are skipped. Agents restored in a call are reconciled with Asterisk
        at the AMI resync (``apply_resync``).
        """
        for agent, effects in restored:
            if agent.agent_id not in self.agents:
                log.warning("agent %s is not in the roster any more: not restored",
                            agent.agent_id)
                continue
            self.agents[agent.agent_id] = agent
            self.execute(effects)

    def agent_fact(self, agent_id: str, event: Any) -> None:
        """A fact Asterisk reported about an agent: a rejection is logged (and a second
        call on one agent alarmed), never raised into the AMI reader."""
        try:
            self.agent_event(agent_id, event)
        except StateError as exc:
            log.info("agent %s: %s ignored (%s)", agent_id, type(event).__name__, exc)

    def choose_agent(self, call_id: str, only: str | None = None) -> RosterAgent | None:
        """Reserve the agent the call is offered to next (the rules: ``agents/routing.py``).

        ``only`` asks for one named agent (STD-071). The agent is set ringing at once so
        that two calls can never be offered the same agent before Asterisk's DialBegin
        arrives. Returns the roster entry with the desk the agent logged in at
        (hot-desking: the call rings that desk).
        """
        call = self.calls.get(call_id)
        if call is None:
            return None
        candidate = routing.next_agent(
            call, waiting=self._waiting_calls(), agents=self.agents.values(),
            roster=self.roster, named=only,
            held=self.routing_held)
        if candidate is None:
            return None
        self.agent_event(candidate.agent_id, agent_state.CallOffered(call_id))
        member = self.roster.by_id(candidate.agent_id)
        return None if member is None else replace(member, endpoint=candidate.extension)

    def routing_held(self, agent_id: str) -> bool:
        """Routing skips this agent now: a desktop warm transfer consults them, a feature
        holds them (``hold_agents``) or their desk is not judged reachable yet. Also asked
        by a warm transfer to a queue, which consults the agent routing would pick
        (agents/transfers.py ``queue_consultee``).

        A consulted colleague is held from the request on. Their state changes only when
        Asterisk's Atxfer rings their phone, a few ms later, and a queue call routed to
        them in between would ring a phone that is about to be busy. Only while the
        caller's call lives: a consultation whose ending was never reported holds nobody."""
        return self._consulted_now(agent_id) \
            or any(held(agent_id) for held in self._agent_holds) \
            or self._unreachable_in_grace(agent_id)

    def _consulted_now(self, agent_id: str) -> bool:
        call = self.calls.get(self.consults.get(agent_id, ""))
        return call is not None and call.phase is not calls.Phase.ENDED

    def waiting_calls(self) -> list[calls.InboundCall]:
        """The calls whose flows wait for an agent now (first come, first served)."""
        return self._waiting_calls()

    def _unreachable_in_grace(self, agent_id: str) -> bool:
        """PJSIP says the desk is unreachable but, in the grace after a resync, that is not
        judged yet (no alarm, no state change): it is not offered calls meanwhile. Just
        after Asterisk (re)started every fixed-contact desk is unavailable until qualified,
        so the first call waits for a phone PJSIP has seen, not one that may be gone."""
        agent = self.agents.get(agent_id)
        return agent is not None and self.endpoint_reachable.get(agent.extension) is False

    def _waiting_calls(self) -> list[calls.InboundCall]:
        return [c for cid in self.waiters if (c := self.calls.get(cid)) is not None]

    def start_waiting(self, call_id: str) -> asyncio.Event:
        """The flow waits for an agent: set when one becomes free (the flow then re-asks)."""
        event = self.waiters.setdefault(call_id, asyncio.Event())
        event.clear()
        return event

    def stop_waiting(self, call_id: str) -> None:
        self.waiters.pop(call_id, None)
        for waiting in self.waiters.values():  # a younger call may now be first in line
            waiting.set()

    def queue_position(self, call_id: str) -> int:
        """1 = next in line among the calls of its queue waiting for an agent (0: unknown)."""
        call = self.calls.get(call_id)
        return 0 if call is None else routing.queue_position(call, self._waiting_calls())

    # --- calls (AGI flow side) --------------------------------------------------------

    def call_entered(self, call_id: str, channel: str, caller: str, did: str,
                     queue: str = "main", at: float | None = None, greeting: str = "normal",
                     history: tuple[dict[str, Any], ...] = (), menu: bool = False,
                     ) -> calls.InboundCall:
        """``menu``: the caller meets a menu first; the wait starts at ``call_routed``."""
        existing = self.calls.get(call_id)
        if existing is not None:
            return existing
        event = calls.CallEntered(call_id, channel, caller, did, queue,
                                  time.time() if at is None else at, greeting, history, menu)
        call, effects = calls.start(event, self.timings)
        self.calls[call_id] = call
        self.execute(effects)
        return call

    def call_routed(self, call_id: str, at: float | None = None) -> None:
        """The caller left the menu for agent routing: their wait (t_in) starts now."""
        self.call_event(calls.CallRouted(call_id, time.time() if at is None else at))

    def call_event(self, event: calls.CallEvent) -> calls.InboundCall | None:
        call = self.calls.get(event.call_id)
        if call is None:
            return None
        new, effects = calls.step(call, event, self.timings)
        self.calls[event.call_id] = new
        self.execute(effects)
        if new.phase is calls.Phase.ENDED and call.phase is not calls.Phase.ENDED:
            self._call_finished(call, new)
            self._forget_later(event.call_id)
            own = self.waiters.get(event.call_id)
            if own is not None:
                own.set()  # the waiting flow wakes, sees the call ended, and stops
                self.stop_waiting(event.call_id)
        return new

    def offer_dialling(self, call_id: str, agent_id: str) -> None:
        """The flow is about to Dial ``agent_id``; AMI's DialBegin will give the exact time."""
        self.call_event(calls.OfferStarted(call_id, agent_id, "", time.time(), from_pbx=False))
        # the call has left the line (agents/routing.py ``_ahead``): a younger call that
        # asked in the meantime (a second agent freed a few ms after the first) was told
        # "not your turn" and sleeps; wake it, or it waits for the next agent to free up
        # (found by replaying recorded calls: a caller waited 1 s with an agent ready)
        for other, waiting in self.waiters.items():
            if other != call_id:
                waiting.set()

    def offer_reported(self, call_id: str, agent_id: str, dial_status: str,
                       answered_s_ago: float = 0.0) -> None:
        """The AGI flow's DIALSTATUS: closes the offer if AMI has not already done so.

        Dial returns when the call is over, so for an answered call the flow also says
        how long ago the answer was (Asterisk's ANSWEREDTIME).
        """
        call = self.calls.get(call_id)
        offer = call.current_offer if call is not None else None
        if offer is None or offer.agent_id != agent_id:
            return  # AMI closed the offer already, with Asterisk's times
        self.call_event(calls.OfferEnded(call_id, agent_id, dial_status,
                                         time.time() - answered_s_ago, from_pbx=False))
        self.offer_outcome(agent_id, call_id, calls.offer_result(dial_status))

    def agent_released(self, call_id: str) -> None:
        """The flow's word that the agent hung up first (Dial returned on the caller's live
        channel) for when AMI did not say it: the time is the flow's. With the link down
        and Asterisk's records wired, those records say it at the resync instead."""
        if self.ends_from_records and not self.pbx_up:
            return
        self.call_event(calls.CallReleased(call_id, time.time(), by="agent",
                                           incomplete="the AMI link did not report the "
                                                      "agent's hang-up"))

    def end_call(self, call_id: str, outcome: calls.Outcome | None) -> None:
        """The flow ends the call on purpose (e.g. the caller chose a callback, STD-047);
        ``None``: the call keeps the outcome its facts give (answered, once an agent had
        it)."""
        self.call_event(calls.CallReleased(call_id, time.time(), by="system", outcome=outcome))

    def request_callback(self, call_id: str, number: str, kind: str, owner: str | None,
                         due_at: float, note: str = "") -> dict[str, Any]:
        """A callback task for ``number`` (STD-042 the agent's "call back instead", STD-047
        queue callback, STD-072 named agent); the task as stored and published."""
        request = calls.TaskRequested(kind, number, due_at, owner,
                                      note or f"requested during call {call_id}", call_id)
        self.execute([request])
        return request.as_task()

    def caller_gone(self, call_id: str, cause: int = 16) -> None:
        """The AGI flow saw its channel hang up. While the AMI link is up, AMI is the
        truth: the caller's ``HangupRequest`` already ended the call, or the channel is
        still up (a blind transfer kicked it out of our flow) and the call goes on. Only
        with the link down does the flow's report end the call, after
        ``agi_hangup_grace_s`` (AMI's facts, late, would still win)."""
        if self.pbx_up and self.asterisk.caller_alive(call_id):
            return
        if self.ends_from_records and not self.pbx_up:
            return  # the resync finds the caller gone; Asterisk's records close the call
        event = calls.CallReleased(call_id, time.time(), cause=cause,
                                   by=self.first_release.get(call_id, "caller"))
        if self.agi_hangup_grace_s <= 0:
            self.call_event(event)
        else:
            asyncio.get_running_loop().call_later(self.agi_hangup_grace_s, self.call_event,
                                                  event)

    def adopt_call(self, call: calls.InboundCall) -> calls.InboundCall:
        """Track a call the engine did not start tracking itself: one the store kept open
        across an engine restart whose caller Asterisk still has, or one the fallback
        queue took while the engine was away (callflow/recovery.py). Its agent legs are
        linked again, so AMI's events carry it to its end like any other call."""
        existing = self.calls.get(call.call_id)
        if existing is not None:
            return existing
        self.calls[call.call_id] = call
        for channel in self.asterisk.view.channels.values():
            agent_id = self.agent_for_channel(channel.name)
            if agent_id is not None and channel.linkedid == call.call_id \
                    and channel.uid != call.call_id:
                self.agent_links.setdefault(channel.uid, ChannelLink(call.call_id, agent_id))
        self.execute([calls.CallChanged(call, self.timings, call.agent_id)])
        return call

    def take_lost_calls(self) -> list[calls.InboundCall]:
        """The calls a resync found without their caller, left for Asterisk's records."""
        lost = [c for cid in sorted(self.lost_calls) if (c := self.calls.get(cid)) is not None
                and c.phase is not calls.Phase.ENDED]
        self.lost_calls.clear()
        return lost

    def _call_finished(self, before: calls.InboundCall, after: calls.InboundCall) -> None:
        current = before.current_offer
        if current is not None:
            result = calls.OfferResult.PBX_FAILURE if after.released_by == "pbx" \
                else calls.OfferResult.CALLER_GONE
            self.offer_outcome(current.agent_id, before.call_id, result)
        self.first_release.pop(after.call_id, None)

    def offer_outcome(self, agent_id: str, call_id: str, result: calls.OfferResult) -> None:
        """What an offer's end means for the agent it rang (STD-008: only a ring limit that
        ran out is a ring-no-answer; a phone that refused is a rejection)."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        if result is calls.OfferResult.ANSWERED:  # the router's offer, or one made on a phone
            routed = agent.state is agent_events.AgentState.RINGING and agent.call_id == call_id
            self.agent_fact(agent_id, agent_state.CallAnswered(call_id) if routed
                            else agent_state.CallJoined(call_id))
            return
        if agent.call_id != call_id:
            return  # the agent's phone rang for a transfer or forward the router did not make
        if result is calls.OfferResult.NO_ANSWER:
            self.agent_fact(agent_id, agent_state.OfferTimedOut(call_id))
        elif result in REJECTIONS:
            self.agent_fact(agent_id, agent_state.OfferRejected(call_id, REJECTIONS[result]))
        else:
            self.agent_fact(agent_id, agent_state.OfferWithdrawn(call_id))
            if result is calls.OfferResult.UNAVAILABLE:
                # the softphone cannot be reached: not offered again until PJSIP says so
                log.warning("agent %s: softphone unavailable", agent_id)
                self.agent_fact(agent_id, agent_state.SoftphoneUnreachable())
                self._recheck_softphone(agent.extension)

    def _recheck_softphone(self, endpoint: str) -> None:
        """Ask PJSIP now whether the desk's softphone is reachable. A phone that answers
        an offer 480 Temporarily Unavailable still answers qualify: PJSIP holds its
        contact Reachable and, nothing having changed, says nothing more; without asking,
        the agent stayed flagged unreachable and could not go ready again (STD-099) until
        the next AMI resync (measured live). The agent stays not-ready either way."""
        if not endpoint or self.adapters.pbx is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (pure tests)
            return
        task = loop.create_task(self._ask_softphone(endpoint))
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _ask_softphone(self, endpoint: str) -> None:
        asked = time.monotonic()  # a ContactStatus event newer than the listing wins
        try:
            listing = await self.query(ListEndpoints())
        except CallflowError as exc:
            log.warning("softphone %s not rechecked: %s", endpoint, exc)
            return
        for item in listing:
            if item.get("ObjectName") == endpoint:
                self.softphone_status(endpoint, item.get("DeviceState") not in UNAVAILABLE,
                                      asked)

    # --- AMI ------------------------------------------------------------------------

    def ami_event_names(self) -> frozenset[str]:
        """Every AMI event someone here reads: the core's handlers, ContactStatus, the
        invariants and the features' ``on_ami`` listeners. The AMI adapter asks Asterisk
        for these alone (manager event filters, issue 20), so an event nobody reads is
        neither sent nor parsed; call it after the features have started."""
        return (self.asterisk.reads | INVARIANT_READS | {"ContactStatus"}
                | frozenset(self._listeners))

    def on_ami_batch(self, batch: Sequence[AmiFrame]) -> None:
        """Called on the loop with each batch of AMI events, in order."""
        self.stats.ami_batches += 1
        now = time.monotonic()
        for frame in batch:
            self.stats.ami_events += 1
            self.stats.seen_events[frame.name] = self.stats.seen_events.get(frame.name, 0) + 1
            self.stats.max_event_lag_s = max(self.stats.max_event_lag_s, now - frame.received_at)
            core = self.asterisk.handles(frame.name) or frame.name == "ContactStatus"
            listeners = self._listeners.get(frame.name, ())
            if frame.suspect:  # runtime/doubted.py: applied nowhere, not even checked
                if core or listeners:
                    self.execute(self.doubted.note(frame))
                continue
            self._watch(self.invariants.on_frame, frame)
            if not core and not listeners:
                continue
            try:
                if frame.name == "ContactStatus":
                    self._on_contact_status(frame)
                else:
                    self.asterisk.on_frame(frame)
                for listener in listeners:
                    listener(frame)
            except Exception:
                self.stats.errors += 1
                log.exception("AMI %s event could not be applied: %r", frame.name, frame)

    def _on_contact_status(self, frame: AmiFrame) -> None:
        """A desk is reachable while any of its contacts is: with ``remove_existing`` a
        phone that registers again replaces its old contact, whose ``Removed`` must not
        make a registered phone unreachable. ``Unknown`` (not qualified yet) says nothing."""
        aor, status = frame.get("AOR"), frame.get("ContactStatus")
        uri = frame.get("URI") or frame.get("Uri") or "?"
        contacts = self._contacts.setdefault(aor, {})
        if status == "Removed":
            contacts.pop(uri, None)
        elif status in ("Reachable", "NonQualified", "Created", "Updated"):
            contacts[uri] = True
        elif status == "Unreachable":
            contacts[uri] = False
        else:
            return
        self.softphone_status(aor, any(contacts.values()), frame.received_at)

    def softphone_status(self, endpoint: str, reachable: bool, observed_at: float) -> None:
        """PJSIP's word on a desk's softphone, observed at monotonic ``observed_at``; a word
        older than one already applied (a listing answered after a newer event) is dropped.

        After a (re)connection, a desk not yet seen reachable gets
        ``supervision.softphone_grace_s`` before "unreachable" counts: Asterisk qualifies
        its contacts again after it starts, and a healthy phone must not be alarmed and
        set not-ready at every start (issue 14)."""
        if observed_at < self._endpoint_seen.get(endpoint, float("-inf")):
            return
        self._endpoint_seen[endpoint] = observed_at
        self.endpoint_reachable[endpoint] = reachable
        if reachable:
            if endpoint not in self._confirmed:
                self._confirmed.add(endpoint)
                for waiting in self.waiters.values():  # a held-back desk is offered again
                    waiting.set()
        elif endpoint not in self._confirmed and self._defer_judgement(endpoint):
            return
        self._judge_softphone(endpoint)

    def _defer_judgement(self, endpoint: str) -> bool:
        left = self._softphone_grace_until - time.monotonic()
        if left <= 0:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (pure tests): judged at once
            return False
        loop.call_later(left, self._judge_softphone, endpoint)
        return True

    def _judge_softphone(self, endpoint: str) -> None:
        agent_id = self.agent_at(endpoint)
        reachable = self.endpoint_reachable.get(endpoint)
        if agent_id is not None and reachable is not None:
            self.agent_fact(agent_id, agent_state.SoftphoneReachable() if reachable
                                    else agent_state.SoftphoneUnreachable())

    # --- resync after an AMI (re)connect ----------------------------------------------

    def apply_resync(self, channels: Sequence[AmiFrame], contacts: Sequence[AmiFrame],
                     endpoints: Sequence[AmiFrame] = ()) -> None:
        """After an AMI (re)login: Asterisk's listings are the whole truth (events were held
        while they were taken). Channels, calls and agents are put right
        (runtime/reconcile.py), then every desk's softphone status: the contact listing
        names only registered contacts, so a fixed-contact desk is known by its endpoint's
        device state (``Unavailable`` until qualified, e.g. just after Asterisk started)."""
        self.stats.resyncs += 1
        reconcile(self, channels, requested_at=time.monotonic(), full=True)
        self._contacts.clear()
        self._confirmed.clear()
        self._softphone_grace_until = time.monotonic() + self.policy.supervision.softphone_grace_s
        for endpoint in endpoints:
            name = endpoint.get("ObjectName")
            if name and self.agent_at(name) is not None:
                self.softphone_status(name, endpoint.get("DeviceState") not in UNAVAILABLE,
                                      endpoint.received_at)
        for contact in contacts:
            self._on_contact_status(_ContactView(contact))
        for listener in self._resync_listeners:
            try:
                listener()
            except Exception:
                self.stats.errors += 1
                log.exception("resync listener %r failed", listener)

    def pbx_lost(self, reason: str) -> int:
        """Asterisk died or restarted: its calls are lost to a PBX failure and its agents
        freed (runtime/reconcile.py ``pbx_gone``); each correction is a ``state_corrected``
        alarm. The number of corrections."""
        fixes = pbx_gone(self, reason, time.time())
        self.execute([Alarm("state_corrected", fix, std="STD-147") for fix in fixes.items])
        return len(fixes.items)

    async def reconcile_now(self) -> int:
        """Compare with Asterisk's channel listing now and correct (a periodic check while
        the link is up); the number of corrections."""
        if not self.pbx_up:
            return 0
        asked = time.monotonic()
        items = await self.query(ListChannels())
        return len(reconcile(self, items, requested_at=asked, full=False).items)

    # --- views ------------------------------------------------------------------------

    def snapshot(self, may_see: Callable[[str], bool]) -> dict[str, Any]:
        """The state a (re)connecting client starts from, limited to what it may see."""
        board = may_see("board")
        agents = [agent_state.agent_view(a, self.epoch_of)
                  for a in self.agents.values() if board or may_see(f"agent:{a.agent_id}")]
        live = [calls.call_record(c, self.timings) for c in self.live_calls()] if board else []
        state: dict[str, Any] = {"agents": agents, "calls": live}
        for key, part in self._snapshot_parts.items():
            state[key] = part(may_see)
        return state

    def live_calls(self) -> list[calls.InboundCall]:
        return [c for c in self.calls.values() if c.phase is not calls.Phase.ENDED]

    def _forget_later(self, call_id: str) -> None:
        """An ended call stays in memory a while (late AMI events, features finishing their
        records), then only the store has it: an engine that runs for months stays small."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (pure tests): nothing accumulates there
            return
        loop.call_later(self.ended_call_retention_s, self._forget, call_id)

    def _forget(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.phase is calls.Phase.ENDED:
            del self.calls[call_id]


class _ContactView:
    """PJSIPShowContacts items name the AOR and status like ContactStatus events do."""

    def __init__(self, frame: AmiFrame) -> None:
        self._frame = frame
        self.name = "ContactStatus"
        self.received_at = frame.received_at
        self.suspect = frame.suspect

    def get(self, key: str, default: str = "") -> str:
        if key == "ContactStatus":
            return self._frame.get("Status", default)
        if key == "AOR":  # ContactList names the AOR only in the contact's id "<aor>;@<hash>"
            return self._frame.get("AOR") or self._frame.get("ObjectName").split(";@")[0]
        return self._frame.get(key, default)


def call_rules(policy: Policy) -> calls.CallRules:
    return calls.CallRules(
        ring_cycle_s=policy.ring_cycle_s,
        apology_after_s=policy.rings_to_seconds(policy.answering.apology_after_rings),
        short_abandon_s=policy.kpi.short_abandon_s,
        dropped_call_causes=frozenset(policy.routing.dropped_call_causes),
        dropped_call_callback=policy.routing.dropped_call_callback,
        missed_call_callbacks=policy.routing.missed_call_callbacks,
    )


def _log_pbx_failure(action: PbxAction) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s not done by Asterisk: %s", action, task.exception())
    return done
