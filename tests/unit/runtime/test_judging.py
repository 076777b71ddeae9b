"""The runtime's judge routes each closing fact to its rule's judge once, with the call's
queue (runtime/judging.py); an open call or a repeated end is not judged again."""

from __future__ import annotations

import pytest

from callflow.agents.changes import AcwFinished
from callflow.agents.state import CallOffered, LogIn, OfferTimedOut, new_agent, transition
from callflow.engine import calls
from callflow.engine.calls import CallEntered, CallReleased, OfferEnded, OfferStarted
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.policy import Policy
from callflow.runtime.judging import Judge

T0 = 1_800_000_000.0
TIMINGS = calls.CallRules(ring_cycle_s=5.0, apology_after_s=15.0, short_abandon_s=5.0)


@pytest.mark.std("STD-008", "STD-100")
def test_each_end_is_judged_once_with_the_calls_queue() -> None:
    call, _ = calls.start(CallEntered("c1", "PJSIP/c-1", "139", "100", "sales", T0), TIMINGS)
    live: dict[str, calls.InboundCall] = {}
    judge = Judge(Policy(), live.get, lambda t: T0 + t, lambda: T0 + 99)
    for event in (OfferStarted("c1", "1001", "PJSIP/a-1", T0 + 1),
                  OfferEnded("c1", "1001", "ANSWER", T0 + 4)):
        call, effects = calls.step(call, event, TIMINGS)
        assert all(judge(e) is None for e in effects if isinstance(e, calls.CallChanged))
    call, effects = calls.step(call, CallReleased("c1", T0 + 30, by="caller"), TIMINGS)
    live["c1"] = call
    [changed] = [e for e in effects if isinstance(e, calls.CallChanged)]
    first = judge(changed)
    assert first is not None
    assert {(v.rule, v.key, v.outcome.value, v.queue) for v in first.verdicts} == {
        ("STD-008", "answer", "pass", "sales"), ("STD-009", "", "not_applicable", "sales")}
    assert judge(changed) is None  # the same end reported again
    acw = AcwFinished("1001", "c1", 12.0, "agent", False, False, 50.0, limit_s=60.0)
    judged = judge(acw)
    assert judged is not None
    [v] = judged.verdicts
    assert (v.rule, v.outcome.value, v.queue, v.at, v.detail) == (
        "STD-100", "pass", "sales", T0 + 50.0, "ACW 12 s of 60")
    assert judge(acw) is None
    assert judge(AcwFinished("1001", "", 0.0, "no_acw", False, False, 51.0)) is None


@pytest.mark.std("STD-008")
def test_the_agents_state_after_a_ring_no_answer_reaches_the_calls_verdict() -> None:
    """The agent machine's AgentChanged (cause ring_no_answer), then its alarm naming the
    call: the call's RONA verdict knows the agent went not-ready."""
    policy = Policy()
    judge = Judge(policy, {}.get, lambda t: T0 + t, lambda: T0)
    agent = new_agent("1001", "agent1001")
    for event in (LogIn(), CallOffered("c1")):
        agent, _ = transition(agent, event, 1.0, policy)
    agent, effects = transition(agent, OfferTimedOut("c1"), 16.0, policy)
    assert any(isinstance(e, Alarm) for e in effects)
    for effect in effects:  # the agent's change, then the alarm that names the call
        if isinstance(effect, DomainEvent):
            assert judge(effect) is None
    call, _ = calls.start(CallEntered("c1", "PJSIP/c-1", "139", "100", "main", T0), TIMINGS)
    for event in (OfferStarted("c1", "1001", "PJSIP/a-1", T0 + 1),
                  OfferEnded("c1", "1001", "NOANSWER", T0 + 16),
                  CallReleased("c1", T0 + 20, by="caller")):
        call, effects = calls.step(call, event, TIMINGS)
    [changed] = [e for e in effects if isinstance(e, calls.CallChanged)]
    judged = judge(changed)
    assert judged is not None
    [rona] = [v for v in judged.verdicts if v.key == "offer:1"]
    assert rona.outcome.value == "pass" and rona.detail.endswith("agent not_ready")
