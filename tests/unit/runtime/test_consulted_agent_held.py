"""A colleague a desktop warm transfer consults is not offered a queue call in the ms
between the request (the Atxfer sent) and their phone ringing (issue 18)."""

from __future__ import annotations

import time

import pytest

from callflow.agents.events import AgentState, LogIn
from callflow.agents.roster import Roster, RosterAgent
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters


def runtime() -> Runtime:
    clock = RealClock()
    rt = Runtime(Policy(), clock,
                 Roster(tuple(RosterAgent(a, a, f"agent{a}") for a in ("1002", "1003"))),
                 edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None))
    rt.agent_event("1002", LogIn())  # ready longest: routing's first choice
    rt.agent_event("1003", LogIn())
    return rt


@pytest.mark.parametrize(("consulting", "offered"), [
    ("talking", "1003"),  # the desktop asked to consult 1002 (Atxfer sent): skipped
    ("gone", "1002"),  # a consultation whose call is not (or no longer) live holds nobody
    (None, "1002"),  # no consultation: 1002, ready longest, is routing's choice
])
async def test_the_consulted_colleague_is_skipped_while_the_call_lives(
        consulting: str | None, offered: str) -> None:
    rt = runtime()
    rt.call_entered("queued", "PJSIP/caller-2", "140", "100", at=time.time())
    rt.start_waiting("queued")
    rt.call_entered("talking", "PJSIP/caller-1", "139", "100", at=time.time())
    if consulting is not None:
        rt.consults["1002"] = consulting
    assert rt.agents["1002"].state is AgentState.READY  # the phone does not ring yet
    chosen = rt.choose_agent("queued")
    assert chosen is not None and chosen.agent_id == offered
