"""A younger call is not left asleep while an agent is free (found by the live
simulation proof, issue 17).

Two agents freed a few ms apart: the older call chose the first and, before its Dial
started, the younger call asked for the second and was told "not your turn" (the older
call still counted as in line). Nothing woke it again until yet another agent freed up,
a second later in the recorded burst. Now the older call's offer starting wakes it.
"""

from __future__ import annotations

import time

from callflow.agents.events import LogIn
from callflow.agents.roster import Roster, RosterAgent
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters


def runtime() -> Runtime:
    clock = RealClock()
    rt = Runtime(Policy(), clock,
                 Roster((RosterAgent("1001", "1001", "agent1001"),
                         RosterAgent("1002", "1002", "agent1002"))),
                 edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None))
    rt.agent_event("1001", LogIn())
    return rt


async def test_the_younger_call_is_woken_when_the_older_one_starts_ringing() -> None:
    rt = runtime()
    now = time.time()
    rt.call_entered("old", "PJSIP/caller-1", "139", "100", at=now - 2)
    rt.call_entered("young", "PJSIP/caller-2", "140", "100", at=now - 1)
    rt.start_waiting("old")
    young = rt.start_waiting("young")
    chosen = rt.choose_agent("old")
    assert chosen is not None and chosen.agent_id == "1001"
    rt.agent_event("1002", LogIn())  # the second agent frees up before the Dial starts
    assert young.is_set()
    young.clear()
    assert rt.choose_agent("young") is None  # the older call is still in line
    rt.offer_dialling("old", "1001")
    assert young.is_set()  # without this the younger call slept with 1002 ready
    member = rt.choose_agent("young")
    assert member is not None and member.agent_id == "1002"
