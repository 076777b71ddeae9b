"""Supervisor workflows in the pure core (issue 18): absence refusal (STD-106), a request
for more ACW (STD-100), the inactivity log-out rule (STD-102), the escalation alarm
(STD-066) and where a log-in leads (agents.login_state). A fake clock throughout."""

from __future__ import annotations

import pytest
from test_agent_state import Desk

from callflow.agents.escalation import escalation_alarm
from callflow.agents.events import (
    AskAcwExtension,
    CallAnswered,
    CallOffered,
    ExtendAcw,
    LogIn,
    RefuseAcwExtension,
    RefuseBusy,
    RequestState,
)
from callflow.agents.inactivity import (
    counts_as_input,
    inactivity_logout_due,
    next_check_at,
)
from callflow.agents.state import MAX_ACW_ASK_REASON, AgentState, agent_view
from callflow.engine.policy import LOGGED_IN, Policy, parse_policy
from callflow.errors import PolicyError, StateError

S = AgentState
DEFAULTS = Policy.defaults()


def _policy(**agents: object) -> Policy:
    return parse_policy({"agents": agents})


# --- absence refused (STD-106) ---------------------------------------------------------


@pytest.mark.std("STD-106")
def test_refused_absence_sends_the_agent_back_to_ready_and_tells_the_desktop() -> None:
    desk = Desk().busy("away")
    assert desk.agent.approval_pending
    desk.advance(60)
    effects = desk.send(RefuseBusy())
    assert (desk.agent.state, desk.agent.approval_pending) == (S.READY, False)
    assert any(getattr(e, "topic", "") == "agent:1001"
               and e.payload.get("kind") == "absence_refused" for e in effects)
    desk.advance(30 * 60)  # the approval timer was cancelled with the busy state
    assert desk.alarms("unapproved_absence") == []


@pytest.mark.std("STD-106")
def test_refused_absence_with_policy_busy_stays_away_and_is_flagged_at_once() -> None:
    desk = Desk(_policy(absence_refused_state="busy")).busy("away")
    desk.advance(90)
    desk.send(RefuseBusy())
    assert (desk.agent.state, desk.agent.reason, desk.agent.approval_pending) == (
        S.BUSY, "away", False)
    [alarm] = desk.alarms("unapproved_absence")
    assert alarm.detail["refused"] is True and alarm.detail["minutes"] == 1.5
    desk.advance(30 * 60)
    assert len(desk.alarms("unapproved_absence")) == 1  # flagged once


@pytest.mark.parametrize(("event", "setup", "reason"), [
    (RefuseBusy(by="agent"), "away", "supervisor_only"),
    (RefuseBusy(), "meal", "nothing_to_refuse"),
])
def test_refusal_needs_a_supervisor_and_a_pending_absence(event: RefuseBusy, setup: str,
                                                         reason: str) -> None:
    desk = Desk().busy(setup)
    before = desk.agent
    with pytest.raises(StateError) as err:
        desk.send(event)
    assert err.value.reason == reason and desk.agent == before


# --- more after-call work on request (STD-100) ---------------------------------------------


@pytest.mark.std("STD-100")
def test_agent_asks_for_more_acw_and_the_grant_moves_the_deadline() -> None:
    desk = Desk().in_acw()
    deadline = desk.agent.acw_deadline
    desk.advance(10)
    desk.send(AskAcwExtension("form still open"))
    assert (desk.agent.acw_ask, desk.agent.acw_ask_reason) == ("open", "form still open")
    view = agent_view(desk.agent, lambda t: t + 1e9)
    assert view["acw_extend_request"]["status"] == "open"
    desk.send(ExtendAcw(DEFAULTS.agents.acw_extension_s))
    assert desk.agent.acw_ask == "granted"
    assert desk.agent.acw_deadline == deadline + 60
    desk.advance(deadline - desk.clock.now() + 30)  # past the original limit: still ACW
    assert desk.agent.state is S.ACW
    desk.advance(30)  # the new limit: ready by itself
    assert desk.agent.state is S.READY
    assert agent_view(desk.agent, lambda t: t)["acw_extend_request"] is None


@pytest.mark.std("STD-100")
def test_refused_request_leaves_the_deadline_and_one_request_per_acw() -> None:
    desk = Desk().in_acw()
    deadline = desk.agent.acw_deadline
    desk.send(AskAcwExtension())
    desk.send(RefuseAcwExtension())
    assert (desk.agent.acw_ask, desk.agent.acw_deadline) == ("refused", deadline)
    with pytest.raises(StateError, match="already_asked"):
        desk.send(AskAcwExtension("again"))
    desk.advance(60)
    assert desk.agent.state is S.READY  # at the original limit


@pytest.mark.parametrize(("prepare", "event", "reason"), [
    ("ready", AskAcwExtension(), "not_in_acw"),
    ("acw", AskAcwExtension("x" * (MAX_ACW_ASK_REASON + 1)), "reason_too_long"),
    ("acw", RefuseAcwExtension(), "nothing_to_refuse"),
    ("acw_asked", RefuseAcwExtension(by="agent"), "supervisor_only"),
])
def test_acw_request_refusals_change_nothing(prepare: str, event: object,
                                             reason: str) -> None:
    desk = Desk()
    if prepare == "ready":
        desk.ready()
    else:
        desk.in_acw()
        if prepare == "acw_asked":
            desk.send(AskAcwExtension())
    before = desk.agent
    with pytest.raises(StateError) as err:
        desk.send(event)  # type: ignore[arg-type]
    assert err.value.reason == reason and desk.agent == before


# --- inactivity log-out (STD-102) ----------------------------------------------------------------


@pytest.mark.std("STD-102")
@pytest.mark.parametrize(("state", "page", "idle_s", "due"), [
    (S.READY, False, 30 * 60, True),
    (S.READY, False, 30 * 60 - 1, False),
    (S.NOT_READY, False, 31 * 60, True),
    (S.BUSY, False, 31 * 60, True),  # the meal of STD-102 is busy(meal)
    (S.BUSY, True, 5 * 3600, False),  # left on the service page: never
    (S.ACW, False, 31 * 60, False),
    (S.ON_CALL, False, 31 * 60, False),
    (S.ON_HOLD, False, 31 * 60, False),
    (S.RINGING, False, 31 * 60, False),
    (S.LOGGED_OUT, False, 31 * 60, False),
])
def test_inactivity_logout_rule(state: AgentState, page: bool, idle_s: float,
                                due: bool) -> None:
    assert inactivity_logout_due(state, 1000.0, page, 1000.0 + idle_s, DEFAULTS) is due


@pytest.mark.std("STD-102")
def test_inactivity_limit_is_the_policy_and_zero_switches_it_off() -> None:
    short = _policy(inactivity_logout_min=0.05)
    assert inactivity_logout_due(S.READY, 0.0, False, 3.0, short)
    assert not inactivity_logout_due(S.READY, 0.0, False, 2.9, short)
    assert next_check_at(10.0, short) == pytest.approx(13.0)
    off = _policy(inactivity_logout_min=0)
    assert not inactivity_logout_due(S.READY, 0.0, False, 1e9, off)
    assert next_check_at(10.0, off) is None


def test_work_starting_or_ending_counts_as_input() -> None:
    assert counts_as_input(S.ON_CALL, S.READY)
    assert counts_as_input(S.READY, S.ACW)
    assert counts_as_input(S.READY, S.LOGGED_OUT)
    assert not counts_as_input(S.BUSY, S.READY)


# --- escalate (STD-066) ------------------------------------------------------------------


@pytest.mark.std("STD-066")
def test_escalation_alarm_carries_the_live_call() -> None:
    desk = Desk().talking("c9")
    desk.advance(42)
    alarm = escalation_alarm(desk.agent, "abusive", caller="139****0061",
                             channel="PJSIP/agent1001-00000001", duration_s=42.04)
    assert (alarm.kind, alarm.std) == ("escalation", "STD-066")
    assert alarm.detail == {"agent_id": "1001", "call_id": "c9", "caller": "139****0061",
                            "channel": "PJSIP/agent1001-00000001", "duration_s": 42.0,
                            "reason": "abusive", "state": "on_call"}


@pytest.mark.std("STD-066")
@pytest.mark.parametrize("prepare", ["ready", "ringing", "acw"])
def test_escalation_needs_a_live_call(prepare: str) -> None:
    desk = Desk()
    {"ready": desk.ready, "ringing": desk.ringing, "acw": desk.in_acw}[prepare]()
    with pytest.raises(StateError, match="not_on_call"):
        escalation_alarm(desk.agent, "", caller="", channel="", duration_s=0.0)


# --- where log-in leads (agents.login_state) ---------------------------------------------------


@pytest.mark.std("STD-099")
def test_login_state_not_ready_offers_no_call_until_ready() -> None:
    desk = Desk(_policy(login_state="not_ready"))
    desk.send(LogIn())
    assert (desk.agent.state, desk.agent.reason) == (S.NOT_READY, LOGGED_IN)
    with pytest.raises(StateError, match="not_routable"):
        desk.send(CallOffered("c1"))
    with pytest.raises(StateError, match="system_reason"):
        desk.send(RequestState(S.NOT_READY, LOGGED_IN))
    desk.send(RequestState(S.READY))
    desk.send(CallOffered("c1"))
    desk.send(CallAnswered("c1"))
    assert desk.agent.state is S.ON_CALL


def test_login_state_default_is_ready() -> None:
    desk = Desk()
    desk.send(LogIn())
    assert desk.agent.state is S.READY


def test_login_state_not_ready_needs_the_logged_in_reason() -> None:
    reasons = [{"code": "ring_no_answer", "label_zh": "a", "label_en": "a", "system": True},
               {"code": "unreachable", "label_zh": "b", "label_en": "b", "system": True},
               {"code": "rejected", "label_zh": "c", "label_en": "c", "system": True},
               {"code": "break", "label_zh": "d", "label_en": "d"}]
    with pytest.raises(PolicyError, match="logged_in"):
        parse_policy({"agents": {"login_state": "not_ready", "not_ready_reasons": reasons}})
