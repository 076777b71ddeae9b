"""Asterisk died or restarted: its calls are lost to a PBX failure, nobody is blamed.

Issue 14: "A PBX restart recorded the connected call as 'agent hung up first', gave the
ringing agent a RONA 4.4 s into a 15 s limit and marked the waiting caller abandoned."
With ``Runtime.pbx_lost`` every live call ends as ``pbx_failure`` released by ``pbx``,
flagged incomplete with the reason, and no agent stays on a call that is gone.
"""

from __future__ import annotations

import time

from test_occupancy import corrections, frame, runtime

from callflow.agents.events import AgentState
from callflow.engine.calls import OfferResult, Outcome, Phase
from callflow.engine.effects import Alarm


def _talking(rt, call_id: str, agent: str, uid: str) -> None:  # type: ignore[no-untyped-def]
    rt.call_entered(call_id, f"PJSIP/caller-{call_id}", "139", "100", at=time.time())
    rt.on_ami_batch([frame("Newchannel", Uniqueid=call_id, Channel=f"PJSIP/caller-{call_id}",
                           Linkedid=call_id)])
    assert rt.choose_agent(call_id, only=agent) is not None
    rt.on_ami_batch([
        frame("Newchannel", Uniqueid=uid, Channel=f"PJSIP/agent{agent}-0000000{uid[-1]}",
              Linkedid=call_id),
        frame("Newstate", Uniqueid=uid, Channel=f"PJSIP/agent{agent}-0000000{uid[-1]}",
              Linkedid=call_id, ChannelStateDesc="Up")])


async def test_every_live_call_ends_as_a_pbx_failure_and_agents_are_freed() -> None:
    rt, events = runtime("1001", "1002")
    _talking(rt, "c1", "1001", "a1")
    rt.call_entered("c2", "PJSIP/caller-c2", "138", "100", at=time.time())  # waiting
    rt.on_ami_batch([frame("Newchannel", Uniqueid="c2", Channel="PJSIP/caller-c2",
                           Linkedid="c2")])
    assert rt.agents["1001"].state is AgentState.ON_CALL

    fixed = rt.pbx_lost("Asterisk (pid 42) is gone")

    for call_id in ("c1", "c2"):
        call = rt.calls[call_id]
        assert call.phase is Phase.ENDED
        assert (call.outcome, call.released_by) == (Outcome.PBX_FAILURE, "pbx")
        assert call.incomplete == "Asterisk (pid 42) is gone"
    assert rt.calls["c1"].answered_at is not None  # what happened before stays true
    assert rt.agents["1001"].state is not AgentState.ON_CALL
    assert rt.agents["1001"].call_id != "c1" or rt.agents["1001"].state is AgentState.ACW
    assert not rt.asterisk.view.channels and rt.asterisk.view.shutting_down
    assert fixed and {"channels_gone", "call_lost_with_pbx"} <= set(corrections(events))
    assert not [e for e in events if isinstance(e, Alarm) and e.kind == "ring_no_answer"]


async def test_a_ringing_offer_is_a_pbx_failure_not_a_ring_no_answer() -> None:
    rt, _events = runtime("1001")
    rt.call_entered("c1", "PJSIP/caller-c1", "139", "100", at=time.time())
    assert rt.choose_agent("c1") is not None
    rt.on_ami_batch([frame("Newchannel", Uniqueid="a1", Channel="PJSIP/agent1001-00000001",
                           Linkedid="c1")])
    rt.pbx_lost("Asterisk restarted")
    offer = rt.calls["c1"].offers[-1]
    assert offer.result is OfferResult.PBX_FAILURE
    assert rt.agents["1001"].state is AgentState.READY
    assert rt.agents["1001"].ring_no_answer_count == 0


async def test_a_second_report_of_the_same_loss_changes_nothing() -> None:
    rt, events = runtime("1001")
    _talking(rt, "c1", "1001", "a1")
    rt.pbx_lost("gone")
    before = (dict(rt.calls), dict(rt.agents), len(events))
    assert rt.pbx_lost("gone again") == 0
    assert (dict(rt.calls), dict(rt.agents), len(events)) == before
