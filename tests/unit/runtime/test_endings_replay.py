"""Every way a call ends or moves, replayed from real Asterisk 22 captures.

Each capture in tests/fixtures/ami/endings/ (see its README) is one call, byte for
byte as AMI sent it. The runtime hears it as it would live: the call is handed to
the core when its channel appears (the AGI flow's ``call_entered``) and, where the
capture dials agent 1001, the router reserves that agent first (``choose_agent``), as
the flow does before its Dial. Then every frame goes through ``on_ami_batch``. The
assertions are the call record's classification (issue 13: outcome, who released
first, the ending, each offer's result), every agent's state afterwards, and the
record's times, which must be Asterisk's own stamps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from callflow.agents.events import AgentState, LogIn, RequestState
from callflow.agents.roster import Roster, RosterAgent
from callflow.ami.frames import AmiFrameParser, AmiMessage
from callflow.engine.calls import InboundCall, OfferResult, Outcome, Phase, call_record
from callflow.engine.clock import RealClock
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.policy import Policy
from callflow.errors import StateError
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters

ENDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "ami" / "endings"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
AGENTS = ("1001", "1002", "1003")


def frames(case: str) -> list[AmiMessage]:
    parser = AmiFrameParser()
    parsed = parser.feed(BANNER + (ENDINGS / f"{case}.txt").read_bytes(), 0.0)
    assert not parsed.problems
    return list(parsed.messages)


@dataclass
class Replay:
    runtime: Runtime
    frames: list[AmiMessage]
    call_id: str
    events: list[DomainEvent] = field(default_factory=list)

    @property
    def call(self) -> InboundCall:
        return self.runtime.calls[self.call_id]

    def call_record(self) -> dict[str, Any]:
        return call_record(self.call, self.runtime.timings)

    def agent(self, agent_id: str) -> Any:
        return self.runtime.agents[agent_id]

    def stamp(self, event: str, channel_prefix: str, nth: int = 0, **match: str) -> float:
        """Asterisk's Timestamp of the ``nth`` ``event`` on a channel named so."""
        found = [f for f in self.frames if f.name == event
                 and f.get("Channel").startswith(channel_prefix)
                 and all(f.get(k) == v for k, v in match.items())]
        return float(found[nth].get("Timestamp"))

    def alarms(self, kind: str) -> list[Alarm]:
        return [e for e in self.events if isinstance(e, Alarm) and e.kind == kind]

    def offers(self) -> list[tuple[str, OfferResult | None]]:
        return [(o.agent_id, o.result) for o in self.call.offers]


def roster() -> Roster:
    return Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}") for a in AGENTS))


async def replay(case: str, *, reserve: str | None = "1001",
                 logged_in: Iterable[str] = AGENTS, pbx: Any = None,
                 captured: list[AmiMessage] | None = None) -> Replay:
    """``captured``: the case's frames in another order Asterisk also sends them."""
    clock = RealClock()
    runtime = Runtime(Policy.defaults(), clock, roster(), edge_adapters(
        clock, persist=lambda kind, data: None, publish=lambda topic, payload: None,
        pbx=pbx))
    for agent_id in logged_in:
        runtime.agent_event(agent_id, LogIn())
    captured = frames(case) if captured is None else captured
    caller = next(f for f in captured if f.name == "Newchannel"
                  and f.get("Channel").startswith("PJSIP/caller"))
    result = Replay(runtime, captured, caller.get("Uniqueid"))
    runtime.on_event(result.events.append)
    entered = False
    for frame in captured:
        if not entered and frame is caller:
            runtime.call_entered(result.call_id, caller.get("Channel"), "13800000001", "100",
                                 at=float(caller.get("Timestamp")))
            if reserve is not None:
                assert runtime.choose_agent(result.call_id, only=reserve) is not None
            entered = True
        runtime.on_ami_batch([frame])
    # the record's invariants, judged against Asterisk's own frames
    assert runtime.invariants.finish() == []
    return result


async def test_caller_hangs_up_while_waiting_is_an_abandon_at_the_bye() -> None:
    r = await replay("caller_bye_waiting", reserve=None)
    assert r.call.phase is Phase.ENDED
    assert (r.call.outcome, r.call.released_by) == (Outcome.SHORT_ABANDON, "caller")
    # recorded at the caller's BYE, not when the flow let go of the channel
    assert r.call.ended_at == r.stamp("HangupRequest", "PJSIP/caller")
    # nobody was rung (the capture's qualify found no phones: they are unreachable)
    assert all(r.agent(a).state not in (AgentState.RINGING, AgentState.ON_CALL)
               for a in AGENTS)


async def test_caller_hangs_up_while_the_agent_rings() -> None:
    r = await replay("caller_bye_ringing")
    assert r.offers() == [("1001", OfferResult.CALLER_GONE)]
    assert r.call.released_by == "caller"
    assert r.call.ended_at == r.stamp("HangupRequest", "PJSIP/caller")
    # the ring starts when Dial rings the phone (DialBegin), not when its leg was made
    assert r.call.offers[0].started_at == r.stamp("DialBegin", "PJSIP/caller")
    agent = r.agent("1001")
    assert agent.state is AgentState.READY and agent.ring_no_answer_count == 0
    assert not agent.phone_in_use


@pytest.mark.parametrize("case", ["caller_bye_during_opening", "caller_bye_talking"])
async def test_caller_releases_an_answered_call(case: str) -> None:
    r = await replay(case)
    assert (r.call.outcome, r.call.released_by) == (Outcome.ANSWERED, "caller")
    assert r.call.answered_at == r.stamp("Newstate", "PJSIP/agent1001", ChannelStateDesc="Up")
    assert r.call.ended_at == r.stamp("HangupRequest", "PJSIP/caller")
    assert r.call_record()["ending"] == "caller_released"
    assert r.agent("1001").state is AgentState.ACW
    assert r.alarms("agent_hung_up_first") == []


@pytest.mark.parametrize("case", ["agent_bye_during_opening", "agent_bye_talking",
                                  "agent_bye_talking_dial_g"])
async def test_the_agent_hangs_up_first(case: str) -> None:
    """The most common ending: classified at the agent's BYE, the real answer time kept,
    the agent in ACW, nobody rung again."""
    r = await replay(case)
    assert (r.call.outcome, r.call.released_by) == (Outcome.ANSWERED, "agent")
    assert r.call.answered_at == r.stamp("Newstate", "PJSIP/agent1001", ChannelStateDesc="Up")
    assert r.call.ended_at == r.stamp("HangupRequest", "PJSIP/agent1001")
    assert r.call_record()["ending"] == "agent_released"
    assert r.agent("1001").state is AgentState.ACW
    assert [o.result for o in r.call.offers] == [OfferResult.ANSWERED]  # offered once


@pytest.mark.parametrize(("case", "result", "why"), [
    ("reject_486", OfferResult.BUSY, "busy"),
    ("reject_603", OfferResult.DECLINED, "declined"),
])
async def test_a_phone_that_refuses_is_a_rejection_not_a_ring_no_answer(
        case: str, result: OfferResult, why: str) -> None:
    r = await replay(case)
    assert r.offers() == [("1001", result)]
    agent = r.agent("1001")
    assert (agent.state, agent.reason) == (AgentState.NOT_READY, "rejected")
    assert agent.ring_no_answer_count == 0 and r.alarms("ring_no_answer") == []
    assert [a.detail["why"] for a in r.alarms("offer_rejected")] == [why]


async def test_480_temporarily_unavailable_is_an_unreachable_phone() -> None:
    r = await replay("reject_480")
    assert r.offers() == [("1001", OfferResult.UNAVAILABLE)]
    agent = r.agent("1001")
    assert agent.state is AgentState.NOT_READY and agent.ring_no_answer_count == 0


class Endpoints:
    """Asterisk's answer to PJSIPShowEndpoints: each desk's device state."""

    up = True

    def __init__(self, **states: str) -> None:
        self.states = states
        self.asked: list[Any] = []

    @property
    def stats(self) -> dict[str, float]:
        return {}

    async def send(self, action: Any) -> Any:
        raise AssertionError(f"no action expected: {action}")

    async def query(self, query: Any) -> list[AmiMessage]:
        self.asked.append(query)
        return [AmiMessage("EndpointList", {"ObjectName": name, "DeviceState": state}, 0.0)
                for name, state in self.states.items()]


@pytest.mark.parametrize(("device_state", "reachable"), [("Not in use", True),
                                                         ("Unavailable", False)])
async def test_after_a_480_pjsip_is_asked_whether_the_softphone_is_there(
        device_state: str, reachable: bool) -> None:
    """A phone that answers 480 still answers qualify: PJSIP holds it Reachable and says
    nothing more (live: the agent stayed flagged unreachable and could not go ready). The
    engine asks; the agent stays not-ready (unreachable) until they go ready themselves."""
    asterisk = Endpoints(agent1001=device_state, agent1002="Not in use")
    r = await replay("reject_480", pbx=asterisk)
    await asyncio.sleep(0.01)  # the listing comes back
    assert [type(q).__name__ for q in asterisk.asked] == ["ListEndpoints"]
    agent = r.agent("1001")
    assert (agent.state, agent.reason) == (AgentState.NOT_READY, "unreachable")
    assert agent.softphone_reachable is reachable
    if reachable:
        r.runtime.agent_event("1001", RequestState(AgentState.READY))
        assert r.agent("1001").state is AgentState.READY
    else:
        with pytest.raises(StateError, match="softphone_unreachable"):
            r.runtime.agent_event("1001", RequestState(AgentState.READY))


async def test_only_a_ring_limit_that_ran_out_is_a_ring_no_answer() -> None:
    r = await replay("noanswer_timeout")
    assert r.offers() == [("1001", OfferResult.NO_ANSWER)]
    agent = r.agent("1001")
    assert (agent.state, agent.reason) == (AgentState.NOT_READY, "ring_no_answer")
    assert agent.ring_no_answer_count == 1 and len(r.alarms("ring_no_answer")) == 1


async def test_a_302_forward_is_answered_by_its_target_on_one_record() -> None:
    r = await replay("redirect_302")
    assert r.offers() == [("1001", OfferResult.FORWARDED), ("1002", OfferResult.ANSWERED)]
    assert (r.call.outcome, r.call.agent_id, r.call.released_by) == (
        Outcome.ANSWERED, "1002", "agent")
    assert r.call.answered_at == r.stamp("Newstate", "PJSIP/agent1002", ChannelStateDesc="Up")
    assert (r.agent("1001").state, r.agent("1001").reason) == (AgentState.NOT_READY,
                                                               "rejected")
    assert r.agent("1002").state is AgentState.ACW  # it was that agent's call
    assert r.alarms("offer_rejected")[0].detail["why"] == "forwarded"


async def test_a_302_target_reported_before_the_forwarding_legs_dial_end() -> None:
    """Asterisk publishes the target's Newchannel and the forwarding leg's DialEnd on
    different topics; a CI run saw them in this order and the forwarded offer stayed open."""
    captured = frames("redirect_302")
    forward = next(f for f in captured if f.name == "DialEnd" and f.get("Forward"))
    target = next(f for f in captured if f.name == "Newchannel"
                  and f.get("Channel").startswith("PJSIP/agent1002"))
    captured.remove(target)
    captured.insert(captured.index(forward), target)
    r = await replay("redirect_302", captured=captured)
    assert r.offers() == [("1001", OfferResult.FORWARDED), ("1002", OfferResult.ANSWERED)]
    assert r.call.offers[0].ended_at == float(forward.get("Timestamp"))
    assert (r.agent("1001").state, r.agent("1001").reason) == (AgentState.NOT_READY,
                                                               "rejected")
    assert r.agent("1002").state is AgentState.ACW


async def test_a_302_with_the_forward_ignored_is_still_the_phones_refusal() -> None:
    r = await replay("redirect_302_dial_i")
    assert r.offers() == [("1001", OfferResult.FORWARDED)]
    assert r.agent("1001").reason == "rejected"


async def test_a_blind_transfer_moves_the_caller_to_the_target_agent() -> None:
    r = await replay("refer_blind")
    assert r.offers() == [("1001", OfferResult.ANSWERED), ("1002", OfferResult.ANSWERED)]
    first = r.call.offers[0]
    assert first.left_at == r.stamp("BlindTransfer", "")  # the first agent's part ends there
    assert r.call.transfer_count == 1 and r.call.agent_id == "1002"
    assert (r.call.outcome, r.call.released_by) == (Outcome.ANSWERED, "caller")
    assert r.call.answered_at == first.ended_at  # t_ans is the first answer
    assert r.agent("1001").state is AgentState.ACW and r.agent("1002").state is AgentState.ACW
    assert r.call_record()["ending"] == "caller_released"


async def test_an_attended_transfer_gives_the_caller_to_the_consulted_agent() -> None:
    r = await replay("refer_attended")
    assert r.offers() == [("1001", OfferResult.ANSWERED), ("1002", OfferResult.ANSWERED)]
    assert r.call.transfer_count == 1 and r.call.agent_id == "1002"
    assert r.call.offers[0].left_at == r.stamp("AttendedTransfer", "")
    assert (r.call.outcome, r.call.released_by) == (Outcome.ANSWERED, "caller")
    # the consultation made 1002 busy; the transfer made it the caller's agent
    assert r.agent("1002").state is AgentState.ACW and r.agent("1002").call_id == r.call_id
    assert r.agent("1001").state is AgentState.ACW
    assert r.alarms("state_corrected") == []


@pytest.mark.parametrize(("case", "who"), [("caller_bye_cause38", "caller"),
                                           ("agent_bye_cause38", "agent")])
async def test_a_network_drop_is_its_own_ending_and_is_called_back(case: str, who: str) -> None:
    r = await replay(case)
    assert (r.call.released_by, r.call.hangup_cause) == (who, 38)
    assert r.call_record()["ending"] == "network_drop"
    tasks = [e for e in r.events if type(e).__name__ == "TaskRequested"]
    assert [t.kind for t in tasks] == ["dropped_call"]  # type: ignore[attr-defined]


async def test_an_asterisk_stop_is_a_pbx_failure_blamed_on_nobody() -> None:
    r = await replay("shutdown_talking")
    assert (r.call.outcome, r.call.released_by) == (Outcome.PBX_FAILURE, "pbx")
    assert r.call.ended_at == r.stamp("SoftHangupRequest", "PJSIP/caller", Cause="4")
    assert r.call_record()["ending"] == "pbx_failure"
    assert r.alarms("agent_hung_up_first") == [] and r.alarms("ring_no_answer") == []
    assert r.agent("1001").ring_no_answer_count == 0

