"""The mandatory wrap-up form (STD-092) in the agent state machine, on a fake clock.

How the form and the ACW limit meet (agents/state.py): the form wins. No ready while
it is owed; at the ACW limit without it the agent stays in ACW and the board gets
``wrapup_missing``; a form handed in after the limit ends the ACW at once.
"""

from __future__ import annotations

import pytest
from test_agent_state import Desk

from callflow.agents.changes import AgentAlert, WrapupSubmitted
from callflow.agents.state import (
    AgentState,
    CallAnswered,
    CallEnded,
    CallOffered,
    EndAcw,
    LogIn,
    LogOut,
    RequestState,
    SubmitWrapup,
)
from callflow.engine.policy import Policy, parse_policy
from callflow.errors import StateError

S = AgentState


def outbound_acw(policy: Policy | None = None, call_id: str = "cfo-1-1-aa") -> Desk:
    """An agent whose outbound attempt was answered and ended: in ACW, form owed."""
    desk = Desk(policy or Policy.defaults())
    desk.send(LogIn())
    desk.send(CallOffered(call_id, outbound=True))
    desk.advance(1)
    desk.send(CallAnswered(call_id))
    desk.advance(30)
    desk.send(CallEnded(call_id))
    return desk


def submitted(desk: Desk) -> list[WrapupSubmitted]:
    return [e for e in desk.log if isinstance(e, WrapupSubmitted)]


@pytest.mark.std("STD-092")
def test_an_outbound_call_owes_the_form_and_ready_is_refused_until_it_is_in() -> None:
    desk = outbound_acw()
    assert (desk.agent.state, desk.agent.wrapup_call) == (S.ACW, "cfo-1-1-aa")
    for request in (RequestState(S.READY), EndAcw(), EndAcw(by="feature_code")):
        with pytest.raises(StateError) as refused:
            desk.send(request)
        assert refused.value.reason == "wrapup_required"
    assert desk.agent.state is S.ACW
    desk.advance(5)
    desk.send(SubmitWrapup("cfo-1-1-aa", "resolved", "wants the evening tariff"))
    # before the limit the agent stays in ACW (finishing the work), now free to go ready
    assert (desk.agent.state, desk.agent.wrapup_call) == (S.ACW, "")
    [form] = submitted(desk)
    assert (form.call_id, form.disposition, form.notes) == (
        "cfo-1-1-aa", "resolved", "wants the evening tariff")
    [row] = desk.persisted("wrapup")
    assert (row["call_uniqueid"], row["disposition"], row["agent_id"]) == (
        "cfo-1-1-aa", "resolved", "1001")
    desk.send(RequestState(S.READY))
    assert desk.agent.state is S.READY


@pytest.mark.std("STD-105")
def test_acw_limit_with_no_form_keeps_the_agent_in_acw_and_alarms_once() -> None:
    desk = outbound_acw()
    desk.advance(60)  # agents.acw_limit_s: auto-ready would have made them ready here
    assert desk.agent.state is S.ACW and desk.agent.wrapup_call
    [alarm] = desk.alarms("wrapup_missing")
    assert alarm.std == "STD-092" and alarm.detail["call_id"] == "cfo-1-1-aa"
    assert any(isinstance(e, AgentAlert) and e.kind == "wrapup_missing" for e in desk.log)
    assert desk.agent.acw_overruns == 1
    desk.advance(600)
    assert desk.agent.state is S.ACW and len(desk.alarms("wrapup_missing")) == 1
    # the form handed in after the limit ends the ACW at once (only the form held it)
    desk.send(SubmitWrapup("cfo-1-1-aa", "follow_up", ""))
    assert desk.agent.state is S.READY
    [acw] = desk.persisted("acw")
    assert acw["seconds"] == 660 and acw["overrun"]


def test_the_alarm_is_configurable() -> None:
    desk = outbound_acw(parse_policy({"outbound": {"wrapup_missing_alarm": False}}))
    desk.advance(61)
    assert desk.agent.state is S.ACW and desk.alarms("wrapup_missing") == []


def test_the_disposition_must_be_one_of_the_policy_s_and_the_call_the_owed_one() -> None:
    policy = parse_policy({"outbound": {"dispositions": [
        {"code": "sold", "label_zh": "成交", "label_en": "Sold"}]}})
    desk = outbound_acw(policy)
    for form, reason in ((SubmitWrapup("cfo-1-1-aa", "resolved"), "unknown_disposition"),
                         (SubmitWrapup("cfo-9-1-zz", "sold"), "wrong_call"),
                         (SubmitWrapup("cfo-1-1-aa", "sold", "x" * 4001), "notes_too_long")):
        with pytest.raises(StateError) as refused:
            desk.send(form)
        assert refused.value.reason == reason
    assert desk.agent.wrapup_call == "cfo-1-1-aa" and submitted(desk) == []
    desk.send(SubmitWrapup("cfo-1-1-aa", "sold"))
    with pytest.raises(StateError) as again:
        desk.send(SubmitWrapup("cfo-1-1-aa", "sold"))
    assert again.value.reason == "no_wrapup_due"


def test_inbound_calls_owe_no_form_when_the_policy_says_so() -> None:
    desk = Desk(parse_policy({"outbound": {"wrapup_inbound": False}})).in_acw()
    assert desk.agent.wrapup_call == ""
    desk.advance(60)
    assert desk.agent.state is S.READY
    offered = Desk().in_acw()  # the default since issue 18: every answered call
    assert offered.agent.wrapup_call == "c1"
    relaxed = outbound_acw(parse_policy({"outbound": {"wrapup_required": False}}))
    assert relaxed.agent.wrapup_call == ""


def test_busy_is_allowed_and_the_form_follows_the_agent_across_log_out() -> None:
    desk = outbound_acw()
    desk.send(RequestState(S.BUSY, "meal"))
    assert desk.agent.state is S.BUSY and desk.agent.wrapup_call
    with pytest.raises(StateError):
        desk.send(RequestState(S.READY))
    desk.send(LogOut())
    desk.send(LogIn())
    assert (desk.agent.state, desk.agent.call_id) == (S.ACW, "cfo-1-1-aa")
    desk.send(SubmitWrapup("", "resolved"))  # "" = the form owed
    desk.send(EndAcw())
    assert desk.agent.state is S.READY
