"""Routing's first-come-first-served rule (agents/routing.py): only calls still waiting
for an agent hold younger ones back."""

from __future__ import annotations

from dataclasses import replace

from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.routing import next_agent, older_waiting, queue_position
from callflow.agents.state import AgentState, new_agent
from callflow.engine.calls import InboundCall, Phase

ROSTER = Roster((RosterAgent("1001", "A", "agent1001"), RosterAgent("1002", "B", "agent1002")))


def call(call_id: str, entered_at: float, phase: Phase = Phase.ROUTING) -> InboundCall:
    return InboundCall(call_id, "", "", "100", "main", entered_at, phase=phase)


def test_an_older_call_still_in_routing_goes_first() -> None:
    old, young = call("a", 1.0), call("b", 2.0)
    assert older_waiting(young, [old, young]) is old
    ready = replace(new_agent("1001", "agent1001"), state=AgentState.READY)
    assert next_agent(young, waiting=[old, young], agents=[ready], roster=ROSTER) is None
    assert next_agent(old, waiting=[old, young], agents=[ready], roster=ROSTER) == ready
    assert queue_position(young, [old, young]) == 2


def test_an_older_call_ringing_or_talking_holds_no_younger_call_back() -> None:
    """A call that waited stays among the runtime's waiters until its flow ends; once an
    agent rings or talks for it, it is not in line any more (issue 17: found replaying
    recorded calls, where a free agent sat idle while a younger caller gave up)."""
    ready = replace(new_agent("1002", "agent1002"), state=AgentState.READY, since=5.0)
    young = call("b", 2.0)
    for phase in (Phase.OFFERING, Phase.CONNECTED, Phase.ENDED):
        old = call("a", 1.0, phase)
        assert older_waiting(young, [old, young]) is None
        assert queue_position(young, [old, young]) == 1
        assert next_agent(young, waiting=[old, young], agents=[ready], roster=ROSTER) == ready
