"""A missing wrap-up form that only flags its call (issue 18), on a fake clock.

The issue's rule for a disposition missing at the end of ACW is "auto-ready still
happens; the call is flagged"; STD-092 wants the form before ready after an outbound
call. Both are Policy choices per direction (``outbound.wrapup_missing_inbound`` = flag,
``outbound.wrapup_missing_outbound`` = hold by default); these tests prove the flag side,
test_wrapup_gate.py the hold side.
"""

from __future__ import annotations

import pytest
from test_agent_state import Desk
from test_wrapup_gate import outbound_acw

from callflow.agents.changes import WrapupMissing, WrapupOwed, WrapupSubmitted
from callflow.agents.restore import StoredAgent, restored
from callflow.agents.state import (
    AgentState,
    EndAcw,
    RequestState,
    SubmitWrapup,
)
from callflow.engine.policy import PolicyError, parse_policy

S = AgentState


def flags(desk: Desk) -> list[WrapupMissing]:
    return [e for e in desk.log if isinstance(e, WrapupMissing)]


@pytest.mark.std("STD-092")
def test_an_inbound_form_missing_at_the_acw_limit_auto_readies_and_flags_the_call() -> None:
    desk = Desk().in_acw()
    assert (desk.agent.wrapup_call, desk.agent.wrapup_flag_only) == ("c1", True)
    [owed] = [e for e in desk.log if isinstance(e, WrapupOwed)]
    assert owed.flag_only  # a restart knows the form only flags
    desk.advance(59.9)
    assert desk.agent.state is S.ACW and flags(desk) == []
    desk.advance(0.2)
    assert desk.agent.state is S.READY  # auto-ready still happens
    [flag] = flags(desk)
    assert (flag.agent_id, flag.call_id) == ("1001", "c1")
    assert desk.agent.wrapup_call == "" and desk.alarms("wrapup_missing") == []
    acw = desk.persisted("acw")
    assert acw == [] or not acw[-1]["overrun"]  # on time: the limit ended it


@pytest.mark.std("STD-092")
def test_the_agents_own_ready_is_allowed_and_flags_the_call_too() -> None:
    desk = Desk().in_acw()
    desk.advance(5)
    desk.send(RequestState(S.READY))
    assert desk.agent.state is S.READY and len(flags(desk)) == 1
    other = Desk().in_acw()
    other.send(EndAcw(by="feature_code"))
    assert other.agent.state is S.READY and len(flags(other)) == 1
    away = Desk().in_acw()
    away.send(RequestState(S.BUSY, "meal"))  # leaving ACW any way without the form flags
    assert away.agent.state is S.BUSY and len(flags(away)) == 1


@pytest.mark.std("STD-092")
def test_a_form_handed_in_during_acw_is_stored_and_nothing_is_flagged() -> None:
    desk = Desk().in_acw()
    desk.advance(10)
    desk.send(SubmitWrapup("c1", "follow_up", "call back about the invoice"))
    [form] = [e for e in desk.log if isinstance(e, WrapupSubmitted)]
    assert (form.call_id, form.disposition) == ("c1", "follow_up")
    desk.advance(60)
    assert desk.agent.state is S.READY and flags(desk) == []


@pytest.mark.std("STD-092")
def test_outbound_can_be_switched_to_flag_and_inbound_to_hold() -> None:
    policy = parse_policy({"outbound": {"wrapup_missing_outbound": "flag",
                                        "wrapup_missing_inbound": "hold"}})
    out = outbound_acw(policy)
    out.advance(61)
    assert out.agent.state is S.READY and len(flags(out)) == 1
    held = Desk(policy).in_acw()
    held.advance(61)
    assert held.agent.state is S.ACW and held.alarms("wrapup_missing")  # the form wins


def test_acw_switched_off_asks_no_flag_only_form() -> None:
    desk = Desk(parse_policy({"agents": {"acw_limit_s": 0}})).talking()
    from callflow.agents.state import CallEnded
    desk.send(CallEnded("c1"))
    assert desk.agent.state is S.READY and desk.agent.wrapup_call == "" and flags(desk) == []


def test_a_restart_keeps_the_forms_mode() -> None:
    from datetime import UTC, datetime
    policy = parse_policy({})
    stored = StoredAgent(agent_id="1001", state="acw", reason=None,
                         since=datetime.now(UTC), call_id="c1", extension="agent1001",
                         wrapup_call="c1", wrapup_flag_only=True)
    agent, _ = restored(stored, "agent1001", 100.0, datetime.now(UTC), policy)
    assert (agent.wrapup_call, agent.wrapup_flag_only) == ("c1", True)


def test_an_unknown_mode_is_refused_by_name() -> None:
    with pytest.raises(PolicyError, match=r"outbound\.wrapup_missing_inbound"):
        parse_policy({"outbound": {"wrapup_missing_inbound": "ignore"}})
