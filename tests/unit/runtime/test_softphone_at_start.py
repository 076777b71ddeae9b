"""No false "softphone unreachable" at every start (issue 14).

Found: every restart raised ``softphone_unreachable`` for healthy, registered phones (7
starts, 7 unacknowledged alarms) and twice left ready agents not-ready. Asterisk
qualifies its contacts again after it starts, and a phone that registers again replaces
its old contact (``Removed``). Now a desk not yet seen reachable since the last resync
gets ``supervision.softphone_grace_s``; a desk is reachable while any contact is; and a
standing condition already open is not raised again.
"""

from __future__ import annotations

import asyncio
import time

from test_occupancy import frame

from callflow.agents.events import AgentState, LogIn
from callflow.agents.roster import Roster, RosterAgent
from callflow.ami.frames import AmiMessage
from callflow.board.alarms import AlarmBook, BoardAlarms
from callflow.engine.clock import RealClock
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.policy import Policy
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters


def runtime(grace_s: float) -> tuple[Runtime, list[DomainEvent]]:
    clock = RealClock()
    policy = Policy.model_validate({"supervision": {"softphone_grace_s": grace_s}})
    rt = Runtime(policy, clock, Roster((RosterAgent("1001", "1001", "agent1001"),)),
                 edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None))
    events: list[DomainEvent] = []
    rt.on_event(events.append)
    rt.agent_event("1001", LogIn())
    return rt, events


def contact(status: str, uri: str = "sip:agent1001@127.0.0.1:5070") -> AmiMessage:
    return AmiMessage("ContactList", {"Event": "ContactList", "ObjectName":
                                      "agent1001;@abc", "Uri": uri, "Status": status},
                      time.monotonic())


def unreachable_alarms(events: list[DomainEvent]) -> list[Alarm]:
    return [e for e in events if isinstance(e, Alarm) and e.kind == "softphone_unreachable"]


async def test_a_phone_qualified_within_the_grace_is_never_alarmed() -> None:
    rt, events = runtime(grace_s=0.3)
    rt.apply_resync([], [contact("Unreachable")])  # Asterisk has not qualified it yet
    assert rt.agents["1001"].state is AgentState.READY
    rt.on_ami_batch([frame("ContactStatus", AOR="agent1001", URI="sip:agent1001@x",
                           ContactStatus="Reachable")])
    await asyncio.sleep(0.4)
    assert rt.agents["1001"].state is AgentState.READY
    assert unreachable_alarms(events) == []


async def test_a_phone_still_unreachable_after_the_grace_counts() -> None:
    rt, events = runtime(grace_s=0.2)
    rt.apply_resync([], [contact("Unreachable")])
    await asyncio.sleep(0.3)
    assert rt.agents["1001"].state is AgentState.NOT_READY
    assert len(unreachable_alarms(events)) == 1


async def test_a_phone_seen_reachable_since_the_resync_is_judged_at_once() -> None:
    rt, events = runtime(grace_s=60)
    rt.apply_resync([], [contact("Reachable")])
    rt.on_ami_batch([frame("ContactStatus", AOR="agent1001", URI="sip:agent1001@127.0.0.1:5070",
                           ContactStatus="Removed")])  # unregistered
    assert rt.agents["1001"].state is AgentState.NOT_READY
    assert len(unreachable_alarms(events)) == 1


async def test_a_phone_that_registers_again_stays_reachable() -> None:
    rt, events = runtime(grace_s=0)
    rt.apply_resync([], [contact("Reachable", "sip:agent1001@127.0.0.1:5070")])
    rt.on_ami_batch([
        frame("ContactStatus", AOR="agent1001", URI="sip:agent1001@127.0.0.1:5072",
              ContactStatus="Created"),
        frame("ContactStatus", AOR="agent1001", URI="sip:agent1001@127.0.0.1:5070",
              ContactStatus="Removed")])  # remove_existing: the old contact goes
    assert rt.agents["1001"].state is AgentState.READY
    assert unreachable_alarms(events) == []


async def test_an_open_condition_is_not_raised_again() -> None:
    rt, events = runtime(grace_s=0)
    alarms = BoardAlarms.__new__(BoardAlarms)
    alarms.book = AlarmBook()
    rt.gate_alarms(alarms.admits)
    rt.on_event(lambda e: alarms.book.from_alarm(e) if isinstance(e, Alarm) else None)
    for _ in range(3):  # three starts, the phone down each time
        rt.apply_resync([], [contact("Unreachable")])
        rt.apply_resync([], [contact("Reachable")])
    assert len(unreachable_alarms(events)) == 1
    assert rt.stats.alarms_repeated == 2
    rt.execute([Alarm("ring_no_answer", {"agent_id": "1001"}),
                Alarm("ring_no_answer", {"agent_id": "1001"})])  # incidents: each counts
    assert len([e for e in events if isinstance(e, Alarm) and e.kind == "ring_no_answer"]) == 2


def endpoint(state: str) -> AmiMessage:
    return AmiMessage("EndpointList", {"Event": "EndpointList", "ObjectName": "agent1001",
                                       "DeviceState": state}, time.monotonic())


async def test_just_after_asterisk_started_a_desk_is_offered_calls_once_qualified() -> None:
    # found live: after an Asterisk restart the contact listing was empty (it names only
    # registered contacts) and the first call rang a fixed-contact desk whose phone had gone
    rt, events = runtime(grace_s=60)
    rt.apply_resync([], [], [endpoint("Unavailable")])  # not qualified yet
    rt.call_entered("c1", "PJSIP/caller-1", "139", "100", at=time.time())
    waiting = rt.start_waiting("c1")
    assert rt.choose_agent("c1") is None
    assert rt.agents["1001"].state is AgentState.READY  # not judged: no alarm, no change
    assert unreachable_alarms(events) == []
    rt.on_ami_batch([frame("ContactStatus", AOR="agent1001", URI="sip:agent1001@x",
                           ContactStatus="Reachable")])
    assert waiting.is_set()  # the waiting call asks again at once
    member = rt.choose_agent("c1")
    assert member is not None and member.agent_id == "1001"


async def test_a_fixed_contact_desk_in_service_is_offered_calls_at_once() -> None:
    rt, _ = runtime(grace_s=60)
    rt.apply_resync([], [], [endpoint("Not in use")])  # qualified; no registered contact
    rt.call_entered("c1", "PJSIP/caller-1", "139", "100", at=time.time())
    member = rt.choose_agent("c1")
    assert member is not None and member.agent_id == "1001"
