"""Asterisk is the truth for occupancy, and the reconciler puts the engine right.

Runtime-level: AMI frames in (as Asterisk 22 sends them), the router's choices and the
corrections out. Issue 13: "an agent is offered a call only when the engine's state
allows it AND Asterisk reports every device of theirs idle"; drift is corrected and
alarmed as ``state_corrected``.
"""

from __future__ import annotations

import time

from callflow.agents.events import AgentState, LogIn
from callflow.agents.roster import Roster, RosterAgent
from callflow.ami.frames import AmiMessage
from callflow.engine.calls import Phase
from callflow.engine.clock import RealClock
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.policy import Policy
from callflow.runtime.core import Runtime
from callflow.runtime.reconcile import reconcile
from callflow.service import edge_adapters


def frame(name: str, **fields: str) -> AmiMessage:
    return AmiMessage(name, {"Event": name, "Timestamp": f"{time.time():.6f}", **fields},
                      time.monotonic())


def listing(*channels: tuple[str, str, str]) -> list[AmiMessage]:
    """CoreShowChannel items: (uniqueid, channel, bridge)."""
    return [AmiMessage("CoreShowChannel", {"Event": "CoreShowChannel", "Uniqueid": uid,
                                           "Channel": name, "Linkedid": uid,
                                           "ChannelStateDesc": "Up", "BridgeId": bridge},
                       time.monotonic()) for uid, name, bridge in channels]


def runtime(*logged_in: str) -> tuple[Runtime, list[DomainEvent]]:
    clock = RealClock()
    rt = Runtime(Policy.defaults(), clock,
                 Roster(tuple(RosterAgent(a, a, f"agent{a}") for a in ("1001", "1002"))),
                 edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None))
    events: list[DomainEvent] = []
    rt.on_event(events.append)
    for agent_id in logged_in:
        rt.agent_event(agent_id, LogIn())
    return rt, events


def corrections(events: list[DomainEvent]) -> list[str]:
    return [e.detail["what"] for e in events
            if isinstance(e, Alarm) and e.kind == "state_corrected"]


async def test_a_desk_with_a_live_channel_is_not_offered_a_call() -> None:
    rt, _ = runtime("1001", "1002")
    rt.call_entered("c1", "PJSIP/caller-1", "139", "100", at=time.time())
    # agent 1001's phone rings with a call the engine does not route (a personal call)
    rt.on_ami_batch([frame("Newchannel", Uniqueid="p1", Channel="PJSIP/agent1001-00000001",
                           Linkedid="p0", ChannelStateDesc="Ring")])
    assert rt.agents["1001"].state is AgentState.READY and rt.agents["1001"].phone_in_use
    chosen = rt.choose_agent("c1")
    assert chosen is not None and chosen.agent_id == "1002"  # not the longest idle 1001


async def test_a_personal_call_makes_the_agent_on_call_then_back_to_ready() -> None:
    rt, _ = runtime("1001")
    rt.on_ami_batch([
        frame("Newchannel", Uniqueid="p1", Channel="PJSIP/agent1001-00000001", Linkedid="p1"),
        frame("Newchannel", Uniqueid="p2", Channel="PJSIP/outside-00000002", Linkedid="p1"),
        frame("BridgeEnter", Uniqueid="p1", Channel="PJSIP/agent1001-00000001",
              BridgeUniqueid="b1"),
        frame("BridgeEnter", Uniqueid="p2", Channel="PJSIP/outside-00000002",
              BridgeUniqueid="b1")])
    agent = rt.agents["1001"]
    assert (agent.state, agent.call_id, agent.call_tracked) == (AgentState.ON_CALL, "pbx:p1",
                                                                False)
    rt.on_ami_batch([frame("Hangup", Uniqueid="p2", Channel="PJSIP/outside-00000002"),
                     frame("Hangup", Uniqueid="p1", Channel="PJSIP/agent1001-00000001")])
    agent = rt.agents["1001"]
    assert agent.state is AgentState.READY and not agent.phone_in_use


async def test_a_lost_hangup_is_found_by_the_next_reconciliation() -> None:
    rt, events = runtime("1001")
    rt.on_ami_batch([frame("Newchannel", Uniqueid="p1", Channel="PJSIP/agent1001-00000001",
                           Linkedid="p1")])
    assert rt.agents["1001"].phone_in_use
    asked = time.monotonic()
    reconcile(rt, listing(), requested_at=asked, full=False)  # Asterisk lists nothing
    assert not rt.agents["1001"].phone_in_use
    assert corrections(events) == ["channels_gone"]


async def test_a_channel_born_after_the_listing_was_asked_is_kept() -> None:
    rt, events = runtime("1001")
    asked = time.monotonic()
    rt.on_ami_batch([frame("Newchannel", Uniqueid="p1", Channel="PJSIP/agent1001-00000001",
                           Linkedid="p1")])
    reconcile(rt, listing(), requested_at=asked, full=False)
    assert rt.agents["1001"].phone_in_use and corrections(events) == []


async def test_a_call_whose_channel_vanished_is_closed_incomplete() -> None:
    rt, events = runtime("1001")
    rt.call_entered("c1", "PJSIP/caller-1", "139", "100", at=time.time())
    reconcile(rt, listing(), requested_at=time.monotonic(), full=True)
    call = rt.calls["c1"]
    assert call.phase is Phase.ENDED and call.released_by == "unknown"
    assert call.incomplete.startswith("ended while Asterisk's events were not seen")
    assert "call_ended_out_of_sight" in corrections(events)


async def test_an_agent_the_engine_thinks_talking_with_no_channel_is_freed() -> None:
    rt, events = runtime("1001")
    rt.call_entered("c1", "PJSIP/caller-1", "139", "100", at=time.time())
    assert rt.choose_agent("c1") is not None
    rt.on_ami_batch([
        frame("Newchannel", Uniqueid="a1", Channel="PJSIP/agent1001-00000001", Linkedid="c1"),
        frame("Newstate", Uniqueid="a1", Channel="PJSIP/agent1001-00000001", Linkedid="c1",
              ChannelStateDesc="Up")])
    assert rt.agents["1001"].state is AgentState.ON_CALL
    # the agent's and the caller's Hangup were both lost
    reconcile(rt, listing(), requested_at=time.monotonic(), full=False)
    assert rt.agents["1001"].state is AgentState.ACW
    assert {"channels_gone", "call_ended_out_of_sight", "agent_freed"} <= set(
        corrections(events))


async def test_an_agent_talking_unseen_is_put_on_that_call() -> None:
    rt, events = runtime("1001")
    reconcile(rt, listing(("x1", "PJSIP/agent1001-00000009", "b7"),
                          ("x2", "PJSIP/trunk-0000000a", "b7")),
              requested_at=time.monotonic(), full=True)
    agent = rt.agents["1001"]
    assert (agent.state, agent.call_id) == (AgentState.ON_CALL, "pbx:x1")
    assert "agent_on_call" in corrections(events)
