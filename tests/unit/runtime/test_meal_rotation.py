"""STD-104 through the runtime: the meal-rotation cap is checked against every agent the
engine knows before an agent's meal break is taken (agents/state.py check_meal_rotation)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from callflow.agents.events import AgentState, LogIn, RequestState
from callflow.agents.roster import Roster, RosterAgent
from callflow.engine.clock import RealClock
from callflow.engine.policy import parse_policy
from callflow.errors import StateError
from callflow.runtime.core import Runtime
from callflow.service import edge_adapters


class LinkUp:
    up = True
    stats: Mapping[str, float] = {}


@pytest.mark.std("STD-104")
def test_the_runtime_refuses_a_meal_break_past_the_cap_and_changes_nothing() -> None:
    clock = RealClock()
    roster = Roster(tuple(RosterAgent(a, a, f"agent{a}") for a in ("1001", "1002")))
    rt = Runtime(parse_policy({"agents": {"meal_concurrent_cap": 1}}), clock, roster,
                 edge_adapters(clock, persist=lambda k, d: None, publish=lambda t, p: None,
                               pbx=LinkUp()))  # type: ignore[arg-type]
    for agent_id in ("1001", "1002"):
        rt.agent_event(agent_id, LogIn())
    rt.agent_event("1001", RequestState(AgentState.BUSY, "meal"))
    with pytest.raises(StateError) as refused:
        rt.agent_event("1002", RequestState(AgentState.NOT_READY, "meal"))
    assert refused.value.reason == "meal_cap_reached"
    assert rt.agents["1002"].state is AgentState.READY
    rt.agent_event("1002", RequestState(AgentState.BUSY, "restroom"))  # other reasons: fine
    rt.agent_event("1001", RequestState(AgentState.READY))
    rt.agent_event("1002", RequestState(AgentState.BUSY, "meal"))  # a place is free again
    assert (rt.agents["1002"].state, rt.agents["1002"].reason) == (AgentState.BUSY, "meal")
