"""A day of calls replayed through the pure core: a discrete-event simulation.

``callflow simulate`` asks "what would this day have looked like under another Policy or
another staffing?". The answer comes from the same machines and rules that run live,
driven by an event queue and a simulated clock instead of Asterisk and asyncio:

* the agents are ``agents/state.py`` snapshots moved by ``transition`` (ringing, talk,
  hold, ACW with its limit timer, ring-no-answer to not-ready, log-in and log-out);
* who gets a call is ``agents/routing.py`` ``next_agent`` (queue skills from the roster,
  first come first served, the agent ready the longest);
* an offer rings at most ``ring_limit_seconds(policy)`` (STD-008), then the call goes
  back to the head of its queue and the agent becomes not-ready when the Policy says so;
* when the callback choice is heard comes from ``engine/waiting.py`` (STD-047).

What the core cannot know comes from the callers and agents of the day being replayed
(``Arrival``): when each call reached routing, how long the caller would have waited,
how long the agent needed to pick up (per offer), the talk and hold, the agent's own
after-call work, whether the caller takes a callback when offered. The simulation never
sleeps and never reads a clock: time is seconds from the start of the day, and the same
inputs give the same output, event for event (a seed only enters through the inputs).

The output is the calls as ``engine/kpi.py`` facts, so every figure is computed by the
KPI module's own functions (``engine/sim_report.py``): a simulated service level means
exactly what a recorded one means.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from callflow.agents.events import AgentEvent
from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.routing import next_agent
from callflow.agents.state import (
    AgentSnapshot,
    AgentState,
    CallAnswered,
    CallEnded,
    CallOffered,
    EndAcw,
    HoldEnded,
    HoldStarted,
    LogIn,
    LogOut,
    OfferTimedOut,
    OfferWithdrawn,
    RequestState,
    SubmitWrapup,
    TimerFired,
    new_agent,
    transition,
)
from callflow.engine import waiting
from callflow.engine.calls import InboundCall
from callflow.engine.effects import StartTimer
from callflow.engine.kpi import CallFact, HoldFact, OfferFact, StateSpan
from callflow.engine.policy import RING_NO_ANSWER, Policy, ring_limit_seconds
from callflow.errors import StateError


@dataclass(frozen=True)
class Arrival:
    """One caller of the day, as the simulation needs them (times in seconds).

    ``answer_delays``: how long the agent's phone rang before the agent picked up, offer
    by offer (None: this offer was not picked up); offers past the end repeat the last.
    ``talk_s`` runs from the answer to the end and includes ``holds`` ((start after the
    answer, length) each). ``acw_s``: the after-call work the agent does (None: until the
    Policy's limit ends it). ``patience_s``: the caller hangs up this long after reaching
    routing unless answered (None: waits as long as it takes).
    """

    call_id: str
    at: float
    queue: str = "main"
    patience_s: float | None = None
    talk_s: float = 60.0
    answer_delays: tuple[float | None, ...] = (2.0,)
    acw_s: float | None = None
    holds: tuple[tuple[float, float], ...] = ()
    takes_callback: bool = False


@dataclass(frozen=True)
class AgentPlan:
    """One agent's day: the queues served and the spans on duty ``[start, end)``.

    Off duty means logged out, on a break or in a chosen not-ready state: the agent takes
    no call. A span that ends during a call ends after the call and its ACW.
    ``answer_delay_s``: when known (a recorded agent), how long this agent's phone rings
    before they pick up, whichever call it is; an offer the call's record says rang out
    still rings out."""

    agent_id: str
    on_duty: tuple[tuple[float, float], ...]
    queues: tuple[str, ...] = ("main",)
    answer_delay_s: float | None = None  # how fast this agent picks up; None: the call's


@dataclass(frozen=True)
class SimOptions:
    """Behaviour the Policy does not decide.

    ``rona_recovery_s``: an agent set not-ready by a ring-no-answer asks to be ready again
    this long after (people do, the Policy leaves it to them). ``day_start``: the wall
    time second 0 stands for (the facts carry datetimes)."""

    day_start: datetime
    rona_recovery_s: float = 30.0


@dataclass
class SimResult:
    """The simulated day: the calls and agent states as KPI facts."""

    calls: list[CallFact]
    spans: list[StateSpan]
    events: int  # events processed (for the benchmark's rate)
    end_s: float  # the simulated clock at the end


#: How many of the longest-ready agents routing is shown per call (``_Sim.candidates``).
_WINDOW = 8

# --- the event queue ---------------------------------------------------------------------

_ARRIVE, _PATIENCE, _CALLBACK, _ANSWER, _RING_LIMIT, _HOLD_ON, _HOLD_OFF, _END, \
    _ACW_DONE, _TIMER, _DUTY_ON, _DUTY_OFF, _READY_AGAIN = range(13)


@dataclass
class _Call:
    """A call's progress in the simulation (mutable, private)."""

    arrival: Arrival
    inbound: InboundCall
    offer_no: int = 0  # offers made so far
    ringing: str = ""  # the agent whose phone rings now
    ring_start: float = 0.0
    answered_at: float | None = None
    ring_started_at: float | None = None  # of the answered offer
    ended_at: float | None = None
    outcome: str | None = None
    agent_id: str | None = None
    offers: list[tuple[str, float, float, str]] = field(default_factory=list)
    holds: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class _Agent:
    snap: AgentSnapshot
    queues: tuple[str, ...]
    on_duty: bool = False
    span_start: float = 0.0


class _Sim:
    def __init__(self, arrivals: Sequence[Arrival], plans: Sequence[AgentPlan],
                 policy: Policy, options: SimOptions) -> None:
        self.policy = policy
        self.options = options
        self.ring_limit = ring_limit_seconds(policy)
        self.callback_at = first_callback_offer_s(policy)
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.events = 0
        self.calls: dict[str, _Call] = {}
        self.waiting: dict[str, list[InboundCall]] = {}
        self.ready: dict[str, AgentSnapshot] = {}
        self.agents: dict[str, _Agent] = {}
        self.spans: list[tuple[str, str, str, float, float, str]] = []
        self.answer_delay = {p.agent_id: p.answer_delay_s for p in plans
                             if p.answer_delay_s is not None}
        self.roster_agents = {p.agent_id: RosterAgent(p.agent_id, p.agent_id,
                                                      f"sim{p.agent_id}", queues=p.queues)
                              for p in plans}
        for plan in plans:
            self.agents[plan.agent_id] = _Agent(new_agent(plan.agent_id, f"sim{plan.agent_id}"),
                                                plan.queues)
            for start, end in plan.on_duty:
                if end > start:
                    self.push(start, _DUTY_ON, plan.agent_id)
                    self.push(end, _DUTY_OFF, plan.agent_id)
        for arrival in arrivals:
            self.push(arrival.at, _ARRIVE, arrival)

    def push(self, at: float, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, payload))

    # --- agents: every change goes through the agent state machine ---------------------

    def agent_event(self, agent_id: str, event: AgentEvent) -> bool:
        """Apply one event to the agent; False when the machine refuses it (stale)."""
        agent = self.agents[agent_id]
        before = agent.snap
        try:
            after, effects = transition(before, event, self.now, self.policy)
        except StateError:
            return False
        agent.snap = after
        for effect in effects:
            if isinstance(effect, StartTimer):
                self.push(effect.at, _TIMER, (agent_id, effect.key))
        if after.seq != before.seq:  # a new state began: the previous span closes
            if before.state is not AgentState.LOGGED_OUT:
                self.spans.append((agent_id, before.state.value, before.reason,
                                   agent.span_start, self.now, before.call_id))
            agent.span_start = self.now
        if after.state is AgentState.READY:
            self.ready[agent_id] = after
            if not agent.on_duty:  # the shift ended during the call: leave now
                self.agent_event(agent_id, LogOut(by="system"))
        else:
            self.ready.pop(agent_id, None)
        return True

    # --- calls -------------------------------------------------------------------------

    def enqueue(self, call: _Call) -> None:
        insort(self.waiting.setdefault(call.inbound.queue, []), call.inbound,
               key=lambda c: (c.entered_at, c.call_id))

    def unqueue(self, call: _Call) -> None:
        line = self.waiting.get(call.inbound.queue, [])
        if call.inbound in line:
            line.remove(call.inbound)

    def dispatch(self) -> None:
        """Offer waiting calls while routing finds an agent for one of them."""
        while self.ready:
            heads = sorted((line[0] for line in self.waiting.values() if line),
                           key=lambda c: c.entered_at)
            if not heads:
                return
            for head in heads:
                pool = self.candidates(head.queue)
                if not pool:
                    continue
                roster = Roster(tuple(self.roster_agents[a.agent_id] for a in pool))
                agent = next_agent(head, waiting=self.waiting[head.queue], agents=pool,
                                   roster=roster)
                if agent is not None:
                    self.offer(self.calls[head.call_id], agent.agent_id)
                    break
            else:
                return

    def candidates(self, queue: str) -> list[AgentSnapshot]:
        """The ready agents serving ``queue`` that routing could pick: a window of the
        longest-ready ones, so a 200-agent day does not hand routing 200 agents per call.

        ``self.ready`` keeps agents in the order they became ready (``since`` never goes
        back in a simulation), so every agent ready longer than the window's last one is
        in the window, and so is every agent ready exactly as long (ties are broken by
        routing, by work number): ``next_agent`` over the window chooses whom it would
        choose over all of them."""
        out: list[AgentSnapshot] = []
        for snap in self.ready.values():
            if queue in self.agents[snap.agent_id].queues:
                if len(out) >= _WINDOW and snap.since > out[-1].since:
                    break
                out.append(snap)
        return out

    def offer(self, call: _Call, agent_id: str) -> None:
        if not self.agent_event(agent_id, CallOffered(call.arrival.call_id)):
            return
        self.unqueue(call)
        call.ringing, call.ring_start = agent_id, self.now
        delays = call.arrival.answer_delays
        delay = delays[min(call.offer_no, len(delays) - 1)] if delays else None
        if delay is not None:
            delay = self.answer_delay.get(agent_id, delay)
        call.offer_no += 1
        if delay is not None and delay < self.ring_limit:
            self.push(self.now + max(0.0, delay), _ANSWER, (call, call.offer_no))
        else:  # STD-008: the ring limit ends the offer
            self.push(self.now + self.ring_limit, _RING_LIMIT, (call, call.offer_no))

    def end_offer(self, call: _Call, result: str) -> str:
        agent_id = call.ringing
        call.offers.append((agent_id, call.ring_start, self.now, result))
        call.ringing = ""
        return agent_id

    def handle(self, kind: int, payload: Any) -> None:
        if kind == _ARRIVE:
            assert isinstance(payload, Arrival)
            inbound = InboundCall(call_id=payload.call_id, channel="", caller="", did="",
                                  queue=payload.queue, entered_at=payload.at)
            call = _Call(payload, inbound)
            self.calls[payload.call_id] = call
            self.enqueue(call)
            if payload.patience_s is not None:
                self.push(self.now + payload.patience_s, _PATIENCE, call)
            if payload.takes_callback and self.callback_at is not None:
                self.push(self.now + self.callback_at, _CALLBACK, call)
        elif kind in (_PATIENCE, _CALLBACK):
            assert isinstance(payload, _Call)
            call = payload
            if call.answered_at is not None or call.ended_at is not None:
                return
            if call.ringing:
                if kind == _CALLBACK:  # the offer is only heard while waiting
                    return
                agent_id = self.end_offer(call, "caller_gone")
                self.agent_event(agent_id, OfferWithdrawn(call.arrival.call_id))
            self.unqueue(call)
            call.ended_at = self.now
            call.outcome = "callback" if kind == _CALLBACK else "abandoned"
        elif kind == _ANSWER:
            call, offer_no = payload
            if call.offer_no != offer_no or not call.ringing or call.ended_at is not None:
                return
            agent_id = call.ringing
            start = call.ring_start
            self.end_offer(call, "answered")
            self.agent_event(agent_id, CallAnswered(call.arrival.call_id))
            call.answered_at, call.ring_started_at, call.agent_id = self.now, start, agent_id
            for offset, length in call.arrival.holds:
                self.push(self.now + offset, _HOLD_ON, (call, length))
            self.push(self.now + call.arrival.talk_s, _END, call)
        elif kind == _RING_LIMIT:
            call, offer_no = payload
            if call.offer_no != offer_no or not call.ringing or call.ended_at is not None:
                return
            agent_id = self.end_offer(call, "no_answer")
            self.agent_event(agent_id, OfferTimedOut(call.arrival.call_id))
            snap = self.agents[agent_id].snap
            if snap.state is AgentState.NOT_READY and snap.reason == RING_NO_ANSWER:
                self.push(self.now + self.options.rona_recovery_s, _READY_AGAIN,
                          (agent_id, snap.seq))
            self.enqueue(call)
        elif kind == _HOLD_ON:
            call, length = payload
            if call.ended_at is None and call.agent_id is not None and self.agent_event(
                    call.agent_id, HoldStarted(call.arrival.call_id)):
                call.holds.append((self.now, length))
                self.push(self.now + length, _HOLD_OFF, call)
        elif kind == _HOLD_OFF:
            call = payload
            if call.ended_at is None and call.agent_id is not None:
                self.agent_event(call.agent_id, HoldEnded(call.arrival.call_id))
        elif kind == _END:
            call = payload
            call.ended_at = self.now
            call.outcome = "answered"
            assert call.agent_id is not None
            self.agent_event(call.agent_id, CallEnded(call.arrival.call_id))
            if call.arrival.acw_s is not None:
                self.push(self.now + call.arrival.acw_s, _ACW_DONE,
                          (call.agent_id, call.arrival.call_id))
        elif kind == _ACW_DONE:
            agent_id, call_id = payload
            snap = self.agents[agent_id].snap
            if snap.state is AgentState.ACW and snap.call_id == call_id:
                if snap.wrapup_call:  # the form is handed in as the work ends (STD-092)
                    codes = self.policy.outbound.dispositions
                    self.agent_event(agent_id, SubmitWrapup(snap.wrapup_call,
                                                            codes[0].code if codes else ""))
                if self.agents[agent_id].snap.state is AgentState.ACW:
                    self.agent_event(agent_id, EndAcw())
        elif kind == _TIMER:
            agent_id, key = payload
            self.agent_event(agent_id, TimerFired(key))
        elif kind == _DUTY_ON:
            agent = self.agents[payload]
            agent.on_duty = True
            if agent.snap.state is AgentState.LOGGED_OUT:
                self.agent_event(agent.snap.agent_id, LogIn())
        elif kind == _DUTY_OFF:
            agent = self.agents[payload]
            agent.on_duty = False
            if agent.snap.state in (AgentState.READY, AgentState.NOT_READY):
                self.agent_event(agent.snap.agent_id, LogOut(by="system"))
        elif kind == _READY_AGAIN:
            agent_id, seq = payload
            agent = self.agents[agent_id]
            if agent.snap.seq == seq:
                if agent.on_duty:
                    self.agent_event(agent_id, RequestState(AgentState.READY))
                else:
                    self.agent_event(agent_id, LogOut(by="system"))

    def run(self) -> SimResult:
        heap = self.heap
        while heap:
            at, _, kind, payload = heapq.heappop(heap)
            self.now = max(self.now, at)
            self.events += 1
            self.handle(kind, payload)
            if self.ready and kind != _HOLD_ON and kind != _HOLD_OFF:
                self.dispatch()
        for agent in self.agents.values():  # open spans end with the day
            snap = agent.snap
            if snap.state is not AgentState.LOGGED_OUT:
                self.spans.append((snap.agent_id, snap.state.value, snap.reason,
                                   agent.span_start, self.now, snap.call_id))
        return SimResult(self._facts(), self._span_facts(), self.events, self.now)

    # --- output as KPI facts -------------------------------------------------------------

    def _facts(self) -> list[CallFact]:
        day = self.options.day_start

        def at(s: float | None) -> datetime | None:
            return None if s is None else day + timedelta(seconds=s)

        out = []
        for call in sorted(self.calls.values(), key=lambda c: (c.arrival.at, c.arrival.call_id)):
            out.append(CallFact(
                uniqueid=call.arrival.call_id, queue=call.arrival.queue,
                entered_at=day + timedelta(seconds=call.arrival.at),
                answered_at=at(call.answered_at), ended_at=at(call.ended_at),
                agent_id=call.agent_id, outcome=call.outcome,
                ring_started_at=at(call.ring_started_at),
                offers=tuple(OfferFact(a, day + timedelta(seconds=s), at(e), r)
                             for a, s, e, r in call.offers),
                holds=tuple(HoldFact(day + timedelta(seconds=s), at(s + n), call.agent_id)
                            for s, n in call.holds)))
        return out

    def _span_facts(self) -> list[StateSpan]:
        day = self.options.day_start
        return [StateSpan(a, state, day + timedelta(seconds=s), day + timedelta(seconds=e),
                          reason or None, call_id or None)
                for a, state, reason, s, e, call_id in self.spans]


def first_callback_offer_s(policy: Policy, horizon_s: float = 86_400.0) -> float | None:
    """When a waiting caller first hears the callback choice, by ``engine/waiting.py``'s own
    plan (announcements taken as instantaneous); None when callbacks are off."""
    if not policy.waiting.callbacks_enabled:
        return None
    plan = waiting.start_waiting(0.0, 0.0)
    while True:
        step = waiting.next_step(plan, policy)
        if step.action is waiting.WaitAction.OFFER_CALLBACK:
            return step.at
        if step.at > horizon_s:
            return None
        plan = waiting.heard(plan, step, step.at)


def simulate(arrivals: Iterable[Arrival], plans: Sequence[AgentPlan], policy: Policy,
             options: SimOptions) -> SimResult:
    """Run the day: every arrival through routing, the agents' machines and the Policy's
    timers, until nothing is left to happen."""
    return _Sim(list(arrivals), plans, policy, options).run()
