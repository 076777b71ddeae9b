"""AMI frames a caller's number wrote into, replayed through the runtime (issue 15).

tests/fixtures/ami/hostile holds real Asterisk 22 streams of callers whose From user held
%0d%0a (see its README): lines added to real events, an ``Event:`` line inside them, whole
forged ``ContactStatus`` and ``Hangup`` frames aimed at agent 1001 and at a call with
uniqueid 1796000000.1. Here that call is live and agents 1001 and 1002 are ready; after the
stream, nothing of theirs has changed, and supervisors got one alarm. Replayed with the
frames believed, the same streams end that call, tie the caller's channel to it, or take
agent 1001's softphone away: the check is what stands between them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from callflow.agents.events import AgentState, LogIn
from callflow.agents.roster import Roster, RosterAgent
from callflow.ami.frames import AmiFrameParser, AmiListResult, AmiMessage
from callflow.ami.pbx import AmiPbx
from callflow.engine.calls import Phase
from callflow.engine.clock import RealClock
from callflow.engine.effects import Alarm, DomainEvent, ListChannels
from callflow.engine.policy import Policy
from callflow.errors import AmiProtocolError
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters

HOSTILE = Path(__file__).resolve().parents[2] / "fixtures" / "ami" / "hostile"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
VICTIM = "1796000000.1"
AGENTS = ("1001", "1002")
CASES = sorted(p.stem for p in HOSTILE.glob("*.txt"))


def captured(case: str) -> list[AmiMessage]:
    return AmiFrameParser().feed(BANNER + (HOSTILE / f"{case}.txt").read_bytes(), 0.0).messages


def replay(frames: Sequence[AmiMessage]) -> tuple[Runtime, list[DomainEvent]]:
    clock = RealClock()
    runtime = Runtime(Policy.defaults(), clock, Roster(tuple(
        RosterAgent(a, f"Agent {a}", f"agent{a}") for a in AGENTS)), edge_adapters(
        clock, persist=lambda kind, data: None, publish=lambda topic, payload: None))
    for agent_id in AGENTS:
        runtime.agent_event(agent_id, LogIn())
        runtime.softphone_status(f"agent{agent_id}", True, 0.0)
    runtime.call_entered(VICTIM, "PJSIP/caller-000000aa", "13900000000", "100")
    events: list[DomainEvent] = []
    runtime.on_event(events.append)
    for frame in frames:
        runtime.on_ami_batch([frame])
    return runtime, events


def untouched(runtime: Runtime) -> bool:
    """The call is live and tied to no channel of the hostile caller; the agents are
    ready, their softphones reachable."""
    return runtime.calls[VICTIM].phase is not Phase.ENDED \
        and VICTIM not in runtime.asterisk.view.channels \
        and all(runtime.agents[a].state is AgentState.READY for a in AGENTS) \
        and all(runtime.endpoint_reachable[f"agent{a}"] for a in AGENTS)


@pytest.mark.parametrize("case", CASES)
def test_what_a_callers_number_writes_into_ami_changes_nothing(case: str) -> None:
    runtime, events = replay(captured(case))
    assert untouched(runtime)
    assert set(runtime.calls) == {VICTIM}   # AMI never makes a call: only the flow does
    assert runtime.stats.errors == 0
    alarms = [e for e in events if isinstance(e, Alarm)]
    if case == "number_adds_lines":          # keys no reader reads: nothing to refuse
        assert alarms == [] and runtime.doubted.refused == 0
        return
    assert [a.kind for a in alarms] == ["ami_frame_refused"]     # one, however many frames
    assert runtime.doubted.refused >= 1


@pytest.mark.parametrize("case", [c for c in CASES if c != "number_adds_lines"])
def test_the_same_frames_believed_would_misattribute_a_channel_or_a_call(case: str) -> None:
    believed = [dataclasses.replace(m, suspect="") for m in captured(case)]
    runtime, _ = replay(believed)
    assert not untouched(runtime)


class _Listing:
    """An ``AmiClient`` stand-in that answers every listing with ``items``."""

    def __init__(self, items: list[AmiMessage]) -> None:
        self.items = items

    async def action_list(self, name: str, **_fields: object) -> AmiListResult:
        response = AmiMessage("Success", {"Response": "Success"}, 0.0, "response")
        return AmiListResult(response, self.items, None)


async def test_a_listing_with_an_item_not_believed_is_not_acted_on() -> None:
    """A channel listing taken while a hostile caller's number was still raw: the
    reconciler must not take the listing (its cut item) for the whole picture."""
    items = [m for m in AmiFrameParser().feed(
        BANNER + b"Event: CoreShowChannel\r\nActionID: 1\r\nChannel: PJSIP/caller-1\r\n"
        b"CallerIDNum: 1\r\n\r\n", 0.0).messages]
    pbx = AmiPbx(_Listing(items))  # type: ignore[arg-type]
    with pytest.raises(AmiProtocolError, match=r"CoreShowChannel.*not believed"):
        await pbx.query(ListChannels())
