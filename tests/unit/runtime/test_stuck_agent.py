"""An agent the engine thinks on a call Asterisk no longer has is never stuck (issue 14).

Found: after a 24 s AMI outage an agent stayed ``on_call``; the supervisor's force-ready
and the agent's own ready, not-ready and logout were refused (409) until the engine was
restarted. A request refused only because of a call Asterisk shows no channel for is
now accepted: the agent is freed first (``state_corrected``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from test_occupancy import corrections, frame

from callflow.agents.events import AgentState, LogIn, LogOut, RequestState
from callflow.agents.roster import Roster, RosterAgent
from callflow.engine import channels as ch
from callflow.engine.clock import RealClock
from callflow.engine.effects import DomainEvent
from callflow.engine.policy import Policy
from callflow.errors import StateError
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters


class LinkUp:
    """A PBX port whose link is up (nothing is sent in these tests)."""

    up = True
    stats: Mapping[str, float] = {}


def talking_runtime() -> tuple[Runtime, list[DomainEvent]]:
    clock = RealClock()
    rt = Runtime(Policy.defaults(), clock, Roster((RosterAgent("1001", "1001", "agent1001"),)),
                 edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None,
                               pbx=LinkUp()))  # type: ignore[arg-type]
    events: list[DomainEvent] = []
    rt.on_event(events.append)
    rt.agent_event("1001", LogIn())
    rt.call_entered("c1", "PJSIP/caller-1", "139", "100", at=time.time())
    assert rt.choose_agent("c1") is not None
    rt.on_ami_batch([
        frame("Newchannel", Uniqueid="a1", Channel="PJSIP/agent1001-00000001", Linkedid="c1"),
        frame("Newstate", Uniqueid="a1", Channel="PJSIP/agent1001-00000001", Linkedid="c1",
              ChannelStateDesc="Up")])
    assert rt.agents["1001"].state is AgentState.ON_CALL
    return rt, events


@pytest.mark.parametrize("request_", [
    RequestState(AgentState.READY, by="supervisor"), RequestState(AgentState.READY),
    RequestState(AgentState.NOT_READY, "break"), LogOut()])
async def test_a_request_is_accepted_when_asterisk_shows_no_channel(request_: object) -> None:
    rt, events = talking_runtime()
    rt.asterisk.replace_view(ch.PbxView())  # the agent leg's Hangup was lost
    rt.agent_event("1001", request_)
    assert rt.agents["1001"].state is not AgentState.ON_CALL
    assert "agent_freed" in corrections(events)


async def test_a_request_is_still_refused_while_the_agent_really_talks() -> None:
    rt, events = talking_runtime()
    with pytest.raises(StateError):
        rt.agent_event("1001", RequestState(AgentState.NOT_READY, "break"))
    assert rt.agents["1001"].state is AgentState.ON_CALL
    assert corrections(events) == []
