"""The runtime's judge: every domain event that closes something a rule judges becomes
verdicts (engine/verdicts.py), emitted as one ``CallJudged`` through the same path as
every other fact (store journal first, the live stream, the features).

Why in the runtime: the facts a call is judged on come from several machines (the call,
its holds, its release, the agent's ACW after it), and only the runtime sees them all, in
order, with the call's queue at hand. The judging itself is the core's; this module only
routes each event to its judge, once (a repeated end of the same call or episode is not
judged twice).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from callflow.agents.changes import AcwFinished, AgentChanged
from callflow.engine import verdicts
from callflow.engine.calls import CallChanged, InboundCall, Phase
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.hold import HoldChanged
from callflow.engine.policy import Policy
from callflow.engine.special_calls import ReleaseJudged

#: How many judged keys are remembered against repeats (a day of a large centre).
REMEMBERED = 50_000


class Judge:
    """Events in, ``CallJudged`` out (or None)."""

    def __init__(self, policy: Policy, call_of: Callable[[str], InboundCall | None],
                 epoch_of: Callable[[float], float], wall: Callable[[], float]) -> None:
        self.rules = verdicts.VerdictRules.from_policy(policy)
        self._call_of = call_of
        self._epoch_of = epoch_of
        self._wall = wall
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        # STD-008: the state an agent entered at their ring-no-answer (AgentChanged comes
        # first, then the machine's ring_no_answer alarm names the call), per call
        self._rona_state: dict[str, str] = {}
        self._after_rona: OrderedDict[str, dict[str, str]] = OrderedDict()

    def _first(self, call_id: str, what: str) -> bool:
        key = (call_id, what)
        if key in self._done:
            return False
        self._done[key] = None
        while len(self._done) > REMEMBERED:
            self._done.popitem(last=False)
        return True

    def __call__(self, event: DomainEvent) -> verdicts.CallJudged | None:
        found = self._judge(event)
        return verdicts.CallJudged(tuple(found)) if found else None

    def _queue(self, call_id: str) -> tuple[str, InboundCall | None]:
        call = self._call_of(call_id)
        return (call.queue if call is not None else ""), call

    def _judge(self, event: DomainEvent) -> list[verdicts.Verdict]:
        if isinstance(event, AgentChanged):
            if event.cause == "ring_no_answer":
                self._rona_state[event.agent.agent_id] = event.agent.state.value
            return []
        if isinstance(event, Alarm):
            if event.kind == "ring_no_answer":
                agent = str(event.detail.get("agent_id", ""))
                call_id = str(event.detail.get("call_id", ""))
                state = self._rona_state.pop(agent, None)
                if state is not None and call_id:
                    self._after_rona.setdefault(call_id, {})[agent] = state
                    while len(self._after_rona) > REMEMBERED:
                        self._after_rona.popitem(last=False)
            return []
        if isinstance(event, CallChanged):
            call = event.call
            if call.phase is not Phase.ENDED or not self._first(call.call_id, "call"):
                return []
            return verdicts.judge_call(call, event.rules, self.rules,
                                       self._after_rona.pop(call.call_id, None))
        if isinstance(event, HoldChanged):
            if event.kind != "hold_ended" \
                    or not self._first(event.holds.call_id, f"hold:{event.episode}"):
                return []
            queue, _ = self._queue(event.holds.call_id)
            return verdicts.with_queue(
                verdicts.judge_hold(event, self.rules.hold, self._wall()), queue)
        if isinstance(event, ReleaseJudged):
            if not self._first(event.call_id, "release"):
                return []
            queue, ended = self._queue(event.call_id)
            at = ended.ended_at if ended is not None and ended.ended_at else self._wall()
            return verdicts.judge_release(event, ended.agent_id if ended else None, queue, at)
        if isinstance(event, AcwFinished):
            if not event.call_id or event.ended_by == "no_acw" \
                    or not self._first(event.call_id, f"acw:{event.agent_id}"):
                return []
            queue, _ = self._queue(event.call_id)
            return verdicts.judge_acw(event.call_id, event.agent_id, event.seconds,
                                      event.limit_s, event.overrun,
                                      self._epoch_of(event.at), queue)
        return []
