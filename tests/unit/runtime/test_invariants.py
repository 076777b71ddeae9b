"""The invariant checker catches each kind of breach (runtime/invariants.py)."""

from __future__ import annotations

import time
from dataclasses import replace

from callflow.agents.changes import AgentChanged
from callflow.agents.events import AgentState
from callflow.agents.state import new_agent
from callflow.ami.frames import AmiMessage
from callflow.engine.calls import (
    CallChanged,
    CallRules,
    InboundCall,
    Offer,
    OfferResult,
    Outcome,
    Phase,
)
from callflow.runtime.invariants import InvariantChecker

RULES = CallRules(ring_cycle_s=5.0, apology_after_s=15.0, short_abandon_s=5.0)
T0 = 1_800_000_000.0


def frame(name: str, at: float, **fields: str) -> AmiMessage:
    return AmiMessage(name, {"Event": name, "Timestamp": f"{at:.6f}", **fields},
                      time.monotonic())


def call(**changes: object) -> InboundCall:
    base = InboundCall("c1", "PJSIP/caller-1", "138", "100", "main", T0)
    return replace(base, **changes)  # type: ignore[arg-type]


def ended(answer_at: float, end_at: float) -> InboundCall:
    offer = Offer("1001", "PJSIP/agent1001-2", T0 + 1, ended_at=answer_at,
                  result=OfferResult.ANSWERED, left_at=end_at)
    return call(phase=Phase.ENDED, offers=(offer,), agent_id="1001", answered_at=answer_at,
                ended_at=end_at, outcome=Outcome.ANSWERED, released_by="agent")


def asterisk_call(checker: InvariantChecker) -> None:
    """The caller at T0, agent 1001's leg from T0+1, up at T0+3, its BYE at T0+20."""
    for f in (frame("Newchannel", T0, Uniqueid="c1", Channel="PJSIP/caller-1", Linkedid="c1"),
              frame("Newchannel", T0 + 1, Uniqueid="a1", Channel="PJSIP/agent1001-2",
                    Linkedid="c1"),
              frame("Newstate", T0 + 3, Uniqueid="a1", ChannelStateDesc="Up"),
              frame("HangupRequest", T0 + 20, Uniqueid="a1", Cause="16"),
              frame("Hangup", T0 + 20.001, Uniqueid="a1"),
              frame("Hangup", T0 + 21, Uniqueid="c1")):
        checker.on_frame(f)


def test_a_record_with_asterisks_times_keeps_every_promise() -> None:
    checker = InvariantChecker()
    asterisk_call(checker)
    checker.on_event(CallChanged(ended(T0 + 3.05, T0 + 20.0), RULES))
    assert checker.finish() == []


def test_an_answer_time_that_is_not_asterisks_breaks_invariant_4() -> None:
    checker = InvariantChecker()
    asterisk_call(checker)
    checker.on_event(CallChanged(ended(T0 + 11.55, T0 + 20.0), RULES))
    [breach] = checker.finish()
    assert (breach.invariant, breach.what) == (4, "the record's answer is not Asterisk's")
    assert breach.detail["recorded"] == round(T0 + 11.55, 3)


def test_an_end_recorded_late_breaks_invariant_4() -> None:
    checker = InvariantChecker()
    asterisk_call(checker)
    checker.on_event(CallChanged(ended(T0 + 3, T0 + 26.0), RULES))
    assert [b.what for b in checker.finish()] == ["the record's end is not Asterisk's"]


def test_a_call_ended_twice_or_never_breaks_invariant_1() -> None:
    checker = InvariantChecker()
    done = ended(T0 + 3, T0 + 20)
    checker.on_event(CallChanged(done, RULES))
    checker.on_event(CallChanged(done, RULES))
    offered = replace(done, call_id="c2", phase=Phase.OFFERING, outcome=None, ended_at=None)
    checker.on_event(CallChanged(offered, RULES))
    assert [(b.invariant, b.what) for b in checker.finish()] == [
        (1, "a call ended twice"), (1, "an offered call never ended")]


def test_an_offer_to_a_desk_in_use_breaks_invariant_2() -> None:
    checker = InvariantChecker()
    checker.on_frame(frame("Newchannel", T0, Uniqueid="p1", Channel="PJSIP/agent1001-9",
                           Linkedid="p1"))
    agent = replace(new_agent("1001", "agent1001"), state=AgentState.RINGING, call_id="c1")
    checker.on_event(AgentChanged(agent, by="system", cause="offered",
                                  prev_state=AgentState.READY))
    [breach] = checker.finish()
    assert breach.invariant == 2 and breach.detail["channels"] == ["p1"]


def test_an_idle_agent_talking_past_the_grace_breaks_invariant_3() -> None:
    checker = InvariantChecker()
    ready = replace(new_agent("1001", "agent1001"), state=AgentState.READY)
    checker.on_event(AgentChanged(ready, by="agent", cause="request"))
    for f in (frame("Newchannel", T0, Uniqueid="p1", Channel="PJSIP/agent1001-9",
                    Linkedid="p1"),
              frame("Newchannel", T0, Uniqueid="p2", Channel="PJSIP/trunk-1", Linkedid="p1"),
              frame("BridgeEnter", T0 + 0.5, Uniqueid="p1", BridgeUniqueid="b"),
              frame("BridgeEnter", T0 + 0.5, Uniqueid="p2", BridgeUniqueid="b"),
              frame("RTCPSent", T0 + 1.0, Uniqueid="p1")):
        checker.on_frame(f)
    assert checker.breaches == []  # within the grace: a state change may be on its way
    checker.on_frame(frame("RTCPSent", T0 + 2.0, Uniqueid="p1"))
    [breach] = checker.finish()
    assert (breach.invariant, breach.detail["agent_id"]) == (3, "1001")


def test_a_channel_that_ended_while_the_link_was_down_is_gone_at_the_resync() -> None:
    """Issue 14: its Hangup was never heard; the resync's listing says it is gone, so an
    agent put in ACW by the resync is not held to a channel that no longer exists."""
    checker = InvariantChecker()
    for f in (frame("Newchannel", T0, Uniqueid="p1", Channel="PJSIP/agent1001-9",
                    Linkedid="c1"),
              frame("Newchannel", T0, Uniqueid="c1", Channel="PJSIP/caller-1", Linkedid="c1"),
              frame("BridgeEnter", T0 + 0.5, Uniqueid="p1", BridgeUniqueid="b"),
              frame("BridgeEnter", T0 + 0.5, Uniqueid="c1", BridgeUniqueid="b")):
        checker.on_frame(f)
    checker.asterisk_listed(set())  # the link was down; Asterisk lists nothing any more
    acw = replace(new_agent("1001", "agent1001"), state=AgentState.ACW)
    checker.on_event(AgentChanged(acw, by="system", cause="call_ended"))
    checker.on_frame(frame("RTCPSent", T0 + 30.0, Uniqueid="x"))
    assert checker.finish() == []
