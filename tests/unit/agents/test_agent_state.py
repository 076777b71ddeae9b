"""The agent state machine: every legal transition, every illegal request, timers, totals."""

from __future__ import annotations

from typing import Any

import pytest
from edges import as_edges

from callflow.agents.events import AgentEvent, feature_code_event
from callflow.agents.state import (
    AgentSnapshot,
    AgentState,
    ApproveBusy,
    CallAnswered,
    CallEnded,
    CallJoined,
    CallOffered,
    DayRollover,
    EndAcw,
    ExtendAcw,
    HoldEnded,
    HoldStarted,
    LogIn,
    LogOut,
    OfferRejected,
    OfferTimedOut,
    OfferWithdrawn,
    PhoneInUse,
    RequestState,
    SoftphoneReachable,
    SoftphoneUnreachable,
    TimerFired,
    longest_idle,
    new_agent,
    rejected,
    routable,
    time_in,
    timer_key,
    transition,
)
from callflow.engine.clock import FakeClock
from callflow.engine.effects import Alarm, CancelTimer, Effect, Persist, Publish, StartTimer
from callflow.engine.policy import Policy, parse_policy
from callflow.errors import StateError

S = AgentState
DEFAULTS = Policy.defaults()


class Desk:
    """One agent driven through the machine; due timers fire back in, as the runtime does."""

    def __init__(self, policy: Policy = DEFAULTS, agent_id: str = "1001") -> None:
        self.clock = FakeClock()
        self.policy = policy
        self.agent = new_agent(agent_id, f"agent{agent_id}")
        self.timers: dict[str, float] = {}
        self.log: list[Effect] = []

    def send(self, event: AgentEvent) -> list[Effect]:
        self.agent, effects = transition(self.agent, event, self.clock.now(), self.policy)
        effects = as_edges(effects)
        for effect in effects:
            if isinstance(effect, StartTimer):
                self.timers[effect.key] = effect.at
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.key, None)
        self.log += effects
        return effects

    def advance(self, seconds: float) -> None:
        target = self.clock.now() + seconds
        while True:
            due = sorted((at, key) for key, at in self.timers.items() if at <= target)
            if not due:
                break
            at, key = due[0]
            self.clock.advance(max(0.0, at - self.clock.now()))
            del self.timers[key]
            self.send(TimerFired(key))
        self.clock.advance(target - self.clock.now())

    def alarms(self, kind: str) -> list[Alarm]:
        return [e for e in self.log if isinstance(e, Alarm) and e.kind == kind]

    def persisted(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.log if isinstance(e, Persist) and e.kind == kind]

    # scenario steps
    def ready(self) -> Desk:
        self.send(LogIn())
        return self

    def ringing(self, call_id: str = "c1") -> Desk:
        self.ready().send(CallOffered(call_id))
        return self

    def talking(self, call_id: str = "c1") -> Desk:
        self.ringing(call_id).send(CallAnswered(call_id))
        return self

    def holding(self) -> Desk:
        self.talking().send(HoldStarted("c1"))
        return self

    def in_acw(self) -> Desk:
        self.talking().send(CallEnded("c1"))
        return self

    def busy(self, reason: str = "meal") -> Desk:
        self.ready().send(RequestState(S.BUSY, reason))
        return self

    def not_ready(self, reason: str = "break") -> Desk:
        self.ready().send(RequestState(S.NOT_READY, reason))
        return self

    def call(self, talk_s: float, acw_s: float | None, call_id: str) -> None:
        """Offer, answer after 1 s, talk, end; ACW ended by the agent after acw_s."""
        self.send(CallOffered(call_id))
        self.advance(1)
        self.send(CallAnswered(call_id))
        self.advance(talk_s)
        self.send(CallEnded(call_id))
        if acw_s is not None:
            self.advance(acw_s)
            self.send(EndAcw())



# --- legal transitions --------------------------------------------------------------------


def test_login_makes_ready_and_publishes() -> None:
    desk = Desk()
    effects = desk.send(LogIn())
    agent = desk.agent
    assert (agent.state, agent.extension, agent.since) == (S.READY, "agent1001", 1000.0)
    assert routable(agent)
    topics = [e.topic for e in effects if isinstance(e, Publish)]
    assert topics == ["agent:1001", "board"]
    payload = next(e.payload for e in effects if isinstance(e, Publish))
    assert payload["state"] == "ready" and payload["prev_state"] == "logged_out"
    assert payload["since"] == 1000.0 and payload["by"] == "agent"
    record = desk.persisted("agent_state")[-1]
    assert record == {"agent_id": "1001", "state": "ready", "reason": None,
                      "call_uniqueid": None, "acw_extended": False, "by": "agent",
                      "cause": "login", "at": 1000.0}


def test_login_on_another_extension() -> None:
    desk = Desk()
    desk.send(LogIn(extension="agent2002"))
    assert desk.agent.extension == "agent2002"


@pytest.mark.std("STD-098")
def test_call_cycle() -> None:
    desk = Desk().ready()
    desk.send(CallOffered("c1"))
    assert (desk.agent.state, desk.agent.call_id) == (S.RINGING, "c1")
    assert not routable(desk.agent)
    desk.send(CallAnswered("c1"))
    assert desk.agent.state is S.ON_CALL
    desk.send(HoldStarted("c1"))
    assert desk.agent.state is S.ON_HOLD
    desk.send(HoldEnded("c1"))
    assert desk.agent.state is S.ON_CALL
    effects = desk.send(CallEnded("c1"))
    assert (desk.agent.state, desk.agent.call_id) == (S.ACW, "c1")
    assert StartTimer(timer_key(desk.agent, "acw"), 1060.0) in effects  # STD-100: 60 s
    desk.advance(20)
    effects = desk.send(RequestState(S.READY))
    assert (desk.agent.state, desk.agent.call_id) == (S.READY, "")
    assert any(isinstance(e, CancelTimer) for e in effects)
    assert desk.persisted("acw")[-1]["seconds"] == 20
    assert desk.persisted("acw")[-1]["overrun"] is False
    assert desk.agent.calls_handled == 1


@pytest.mark.parametrize("setup", ["ready", "in_acw", "not_ready"])
def test_busy_from(setup: str) -> None:
    desk = getattr(Desk(), setup)()
    desk.send(RequestState(S.BUSY, "meal"))
    assert (desk.agent.state, desk.agent.reason) == (S.BUSY, "meal")


@pytest.mark.parametrize("setup", ["ready", "in_acw", "busy"])
def test_not_ready_from(setup: str) -> None:
    desk = getattr(Desk(), setup)()
    desk.send(RequestState(S.NOT_READY, "training"))
    assert (desk.agent.state, desk.agent.reason) == (S.NOT_READY, "training")


@pytest.mark.parametrize("setup", ["busy", "not_ready", "in_acw"])
def test_ready_from(setup: str) -> None:
    desk = getattr(Desk(), setup)()
    desk.send(RequestState(S.READY))
    assert (desk.agent.state, desk.agent.reason) == (S.READY, "")


@pytest.mark.std("STD-097")
def test_busy_reason_change() -> None:
    desk = Desk().busy("meal")
    desk.send(RequestState(S.BUSY, "restroom"))
    assert desk.agent.reason == "restroom"


@pytest.mark.parametrize("setup", ["ready", "busy", "not_ready", "in_acw"])
def test_logout_from(setup: str) -> None:
    desk = getattr(Desk(), setup)()
    desk.send(LogOut())
    assert desk.agent.state is S.LOGGED_OUT
    assert not routable(desk.agent)


def test_logout_for_inactivity_records_why() -> None:
    desk = Desk().ready()
    desk.send(LogOut(by="system", reason="inactivity"))  # STD-102, decided by the runtime
    assert (desk.agent.state, desk.agent.reason) == (S.LOGGED_OUT, "inactivity")
    assert desk.persisted("agent_state")[-1]["by"] == "system"


def test_offer_withdrawn_returns_to_ready() -> None:
    desk = Desk().ringing()
    desk.send(OfferWithdrawn("c1"))
    assert (desk.agent.state, desk.agent.call_id) == (S.READY, "")
    desk.send(CallOffered("c2"))
    desk.send(CallEnded("c2"))  # caller gone before the answer: same as withdrawn
    assert desk.agent.state is S.READY
    assert desk.agent.calls_handled == 0


def test_supervisor_sets_state() -> None:
    desk = Desk().ready()
    desk.send(RequestState(S.NOT_READY, "meeting", by="supervisor"))
    assert desk.agent.state is S.NOT_READY
    assert desk.persisted("agent_state")[-1]["by"] == "supervisor"


# --- illegal requests: rejected with a reason, agent unchanged ------------------------------

ILLEGAL = [
    ("logged_out", RequestState(S.READY), "not_logged_in"),
    ("logged_out", RequestState(S.BUSY, "meal"), "not_logged_in"),
    ("logged_out", LogOut(), "not_logged_in"),
    ("logged_out", EndAcw(), "not_in_acw"),
    ("logged_out", CallOffered("c9"), "not_routable"),
    ("ready", LogIn(), "already_logged_in"),
    ("ready", RequestState(S.READY), "no_change"),
    ("ready", RequestState(S.BUSY), "reason_required"),
    ("ready", RequestState(S.BUSY, "nap"), "unknown_reason"),
    ("ready", RequestState(S.NOT_READY, "restroom"), "unknown_reason"),
    ("ready", RequestState(S.NOT_READY, "ring_no_answer"), "system_reason"),
    ("ready", RequestState(S.NOT_READY, "unreachable", by="supervisor"), "system_reason"),
    ("ready", RequestState(S.ACW), "not_requestable"),
    ("ready", RequestState(S.ON_CALL), "not_requestable"),
    ("ready", RequestState(S.LOGGED_OUT), "not_requestable"),
    ("ready", EndAcw(), "not_in_acw"),
    ("ready", ExtendAcw(30), "not_in_acw"),
    ("ready", ApproveBusy(), "nothing_to_approve"),
    ("ready", CallAnswered("c1"), "stale_event"),
    ("ready", OfferTimedOut("c1"), "stale_event"),
    ("ready", CallEnded("c1"), "stale_event"),
    ("ringing", LogOut(), "on_call"),
    ("ringing", RequestState(S.BUSY, "meal"), "on_call"),
    ("ringing", CallOffered("c2"), "not_routable"),
    ("ringing", CallAnswered("c2"), "stale_event"),
    ("ringing", HoldStarted("c1"), "stale_event"),
    ("talking", LogOut(by="supervisor"), "on_call"),
    ("talking", RequestState(S.READY), "on_call"),
    ("talking", RequestState(S.NOT_READY, "break"), "on_call"),
    ("talking", CallOffered("c2"), "not_routable"),
    ("talking", HoldStarted("c2"), "stale_event"),
    ("talking", OfferWithdrawn("c1"), "stale_event"),
    ("holding", RequestState(S.BUSY, "meal"), "on_call"),
    ("holding", CallOffered("c2"), "not_routable"),
    ("in_acw", CallOffered("c2"), "not_routable"),
    ("in_acw", ExtendAcw(30, by="agent"), "supervisor_only"),
    ("in_acw", ExtendAcw(0), "bad_extension"),
    ("in_acw", RequestState(S.ACW), "not_requestable"),
    ("in_acw", CallEnded("c2"), "stale_event"),
    ("busy", RequestState(S.BUSY, "meal"), "no_change"),
    ("busy", CallOffered("c2"), "not_routable"),
    ("busy", ApproveBusy(by="agent"), "supervisor_only"),
    ("not_ready", RequestState(S.NOT_READY, "break"), "no_change"),
    ("not_ready", CallOffered("c2"), "not_routable"),
]


@pytest.mark.parametrize(("setup", "event", "reason"), ILLEGAL,
                         ids=[f"{s}-{type(e).__name__}-{r}" for s, e, r in ILLEGAL])
def test_illegal_is_rejected_and_changes_nothing(setup: str, event: AgentEvent,
                                                 reason: str) -> None:
    desk = Desk()
    if setup != "logged_out":
        getattr(desk, setup)()
    before = desk.agent
    with pytest.raises(StateError) as info:
        desk.send(event)
    assert info.value.reason == reason
    assert desk.agent is before


def test_login_needs_an_extension() -> None:
    with pytest.raises(StateError, match="no_extension"):
        transition(new_agent("1001"), LogIn(), 0.0, DEFAULTS)


def test_unknown_event_is_rejected() -> None:
    with pytest.raises(StateError, match="unknown_event"):
        transition(new_agent("1001", "x"), "hello", 0.0, DEFAULTS)  # type: ignore[arg-type]


def test_rejection_effects_tell_the_desktop() -> None:
    agent = Desk().ready().agent
    event = RequestState(S.BUSY, "nap")
    with pytest.raises(StateError) as info:
        transition(agent, event, 1.0, DEFAULTS)
    [effect] = [e for e in as_edges(rejected(agent, event, info.value))
                if isinstance(e, Publish)]
    assert effect.topic == "agent:1001"
    assert effect.payload["reason"] == "unknown_reason"
    assert effect.payload["event"] == "RequestState"
    assert effect.payload["state"] == "ready"


# --- repeated facts are no-ops -----------------------------------------------------------------


@pytest.mark.parametrize(("setup", "event"), [
    ("ringing", CallOffered("c1")),
    ("talking", CallAnswered("c1")),
    ("holding", HoldStarted("c1")),
    ("holding", CallAnswered("c1")),
    ("talking", HoldEnded("c1")),
    ("in_acw", CallEnded("c1")),
    ("ready", SoftphoneReachable()),
])
def test_repeated_fact_is_a_no_op(setup: str, event: AgentEvent) -> None:
    desk = getattr(Desk(), setup)()
    before = desk.agent
    assert desk.send(event) == []
    assert desk.agent is before


# --- ACW (STD-098, STD-100) ----------------------------------------------------------------------


@pytest.mark.std("STD-100")
def test_acw_auto_ready_at_the_limit() -> None:
    desk = Desk().in_acw()
    desk.advance(59.9)
    assert desk.agent.state is S.ACW
    desk.advance(0.1)
    assert (desk.agent.state, desk.clock.now()) == (S.READY, 1060.0)
    # ended on time by the limit: not an overrun (issue 13: no alarm for it)
    assert desk.agent.acw_overruns == 0 and desk.alarms("acw_overrun") == []
    [record] = desk.persisted("acw")
    assert record["seconds"] == 60 and not record["overrun"]
    assert record["ended_by"] == "acw_limit"
    assert desk.persisted("agent_state")[-1]["cause"] == "acw_limit"


@pytest.mark.parametrize("event", [EndAcw(), RequestState(S.READY), EndAcw(by="feature_code")])
def test_agent_ends_acw_before_the_limit(event: AgentEvent) -> None:
    desk = Desk().in_acw()
    desk.advance(30)
    desk.send(event)
    assert desk.agent.state is S.READY
    assert desk.timers == {}
    desk.advance(60)
    assert desk.agent.state is S.READY and desk.agent.acw_overruns == 0
    assert desk.alarms("acw_overrun") == []


def test_supervisor_extends_acw_for_one_call() -> None:
    desk = Desk().in_acw()
    desk.advance(50)
    desk.send(ExtendAcw(30))
    assert desk.agent.acw_extended
    desk.advance(20)  # past the plain 60 s limit
    assert desk.agent.state is S.ACW
    desk.advance(20)  # the limit plus 30 s
    assert desk.agent.state is S.READY
    assert desk.persisted("acw")[-1]["seconds"] == 90
    assert desk.persisted("acw")[-1]["extended"] is True
    assert desk.persisted("acw_extended")[-1]["seconds"] == 30
    # the next call's ACW has the plain limit again
    desk.call(talk_s=10, acw_s=None, call_id="c2")
    assert not desk.agent.acw_extended
    desk.advance(60)
    assert desk.agent.state is S.READY


def test_acw_limit_without_auto_ready() -> None:
    policy = parse_policy({"agents": {"acw_auto_ready": False}})
    desk = Desk(policy).in_acw()
    desk.advance(61)
    assert desk.agent.state is S.ACW
    assert desk.agent.acw_overruns == 1 and len(desk.alarms("acw_overrun")) == 1
    desk.send(EndAcw())
    assert desk.agent.state is S.READY and desk.agent.acw_overruns == 1
    assert desk.persisted("acw")[-1]["overrun"] is True


def test_acw_switched_off() -> None:
    desk = Desk(parse_policy({"agents": {"acw_limit_s": 0}})).talking()
    desk.send(CallEnded("c1"))
    assert desk.agent.state is S.READY and desk.timers == {}
    assert desk.persisted("acw")[-1]["seconds"] == 0
    assert desk.agent.calls_handled == 1


@pytest.mark.std("STD-100")
def test_acw_running_average_alert() -> None:
    # test hint 15: ACW 40 s, 50 s, 100 s -> running average 63.3 s > 60 s -> board alert
    desk = Desk().ready()
    desk.call(talk_s=30, acw_s=40, call_id="c1")
    desk.call(talk_s=30, acw_s=50, call_id="c2")
    assert desk.alarms("acw_average_high") == []
    desk.send(CallOffered("c3"))
    desk.send(CallAnswered("c3"))
    desk.send(CallEnded("c3"))
    desk.send(ExtendAcw(60))
    desk.advance(100)
    desk.send(EndAcw())
    [alarm] = desk.alarms("acw_average_high")
    assert alarm.std == "STD-100"
    assert alarm.detail["average_s"] == 63.3 and alarm.detail["calls"] == 3
    assert time_in(desk.agent, S.ACW) == pytest.approx(190)


# --- ring-no-answer (STD-008, STD-099) ---------------------------------------------------------


@pytest.mark.std("STD-008", "STD-099")
def test_ring_no_answer_sets_not_ready_and_routing_moves_on() -> None:
    a, b = Desk(agent_id="1001").ready(), Desk(agent_id="1002")
    b.clock.advance(5)
    b.ready()
    assert longest_idle([a.agent, b.agent]) is a.agent
    a.send(CallOffered("c1"))
    a.advance(15)  # 3 rings at the cn cadence: the call's dial timeout
    a.send(OfferTimedOut("c1"))
    assert (a.agent.state, a.agent.reason) == (S.NOT_READY, "ring_no_answer")
    assert a.agent.ring_no_answer_count == 1
    [alarm] = a.alarms("ring_no_answer")
    assert alarm.std == "STD-008" and alarm.detail == {"agent_id": "1001", "call_id": "c1",
                                                      "count": 1}
    assert any(isinstance(e, Publish) and e.topic == "board" and
               e.payload["reason"] == "ring_no_answer" for e in a.log)
    assert longest_idle([a.agent, b.agent]) is b.agent
    a.send(RequestState(S.READY))  # STD-099: the agent makes themselves ready
    assert routable(a.agent)


def test_ring_no_answer_without_not_ready() -> None:
    desk = Desk(parse_policy({"answering": {"rona_sets_not_ready": False}})).ringing()
    desk.send(OfferTimedOut("c1"))
    assert desk.agent.state is S.READY and desk.agent.ring_no_answer_count == 1


# --- what Asterisk says of the desk (issue 13) ------------------------------------------------


@pytest.mark.parametrize("why", ["busy", "declined", "forwarded"])
def test_a_phone_that_refuses_an_offer_is_a_rejection_not_a_ring_no_answer(why: str) -> None:
    desk = Desk().ringing()
    desk.send(OfferRejected("c1", why))
    assert (desk.agent.state, desk.agent.reason) == (S.NOT_READY, "rejected")
    assert desk.agent.ring_no_answer_count == 0 and desk.alarms("ring_no_answer") == []
    [alarm] = desk.alarms("offer_rejected")
    assert alarm.std == "STD-008" and alarm.detail["why"] == why
    assert desk.persisted("agent_state")[-1]["cause"] == f"rejected_{why}"


def test_a_rejection_leaves_the_agent_ready_when_the_policy_says_so() -> None:
    desk = Desk(parse_policy({"answering": {"rejection_sets_not_ready": False}})).ringing()
    desk.send(OfferRejected("c1", "busy"))
    assert desk.agent.state is S.READY


def test_a_desk_in_use_is_never_routable_whatever_the_state() -> None:
    desk = Desk().ready()
    assert routable(desk.agent)
    desk.send(PhoneInUse(busy=True))
    assert desk.agent.state is S.READY and not routable(desk.agent)
    assert longest_idle([desk.agent]) is None
    assert desk.send(PhoneInUse(busy=True)) == []  # the same word again: nothing
    desk.send(PhoneInUse(busy=False))
    assert routable(desk.agent)


def test_a_call_transferred_or_forwarded_to_the_agent_is_theirs_with_acw_after() -> None:
    desk = Desk().ready()
    desk.send(CallJoined("c9"))
    assert (desk.agent.state, desk.agent.call_id, desk.agent.call_tracked) == (
        S.ON_CALL, "c9", True)
    desk.send(CallEnded("c9"))
    assert desk.agent.state is S.ACW and desk.agent.calls_handled == 1


@pytest.mark.parametrize(("setup", "state", "reason"), [
    ("ready", S.READY, ""), ("not_ready", S.NOT_READY, "break"), ("busy", S.BUSY, "meal")])
def test_a_personal_call_puts_the_agent_back_where_they_were(setup: str, state: AgentState,
                                                            reason: str) -> None:
    desk = Desk().ready()
    if setup != "ready":
        desk.send(RequestState(state, reason))
    desk.send(CallJoined("pbx:77", tracked=False))
    assert (desk.agent.state, desk.agent.call_id) == (S.ON_CALL, "pbx:77")
    desk.send(CallEnded("pbx:77"))
    assert (desk.agent.state, desk.agent.reason) == (state, reason)
    assert desk.agent.calls_handled == 0  # not a call of the centre's


def test_a_second_call_on_one_agent_is_refused() -> None:
    desk = Desk().talking()
    with pytest.raises(StateError) as refused:
        transition(desk.agent, CallJoined("c2"), desk.clock.now(), DEFAULTS)
    assert refused.value.reason == "two_calls"


def test_a_consultation_that_becomes_the_transferred_call_keeps_the_conversation() -> None:
    desk = Desk().ready()
    desk.send(CallJoined("pbx:consult", tracked=False))
    since = desk.agent.since
    desk.send(CallJoined("c1"))
    assert (desk.agent.state, desk.agent.call_id, desk.agent.call_tracked) == (
        S.ON_CALL, "c1", True)
    assert desk.agent.since == since


# --- softphone reachability ---------------------------------------------------------------------


def test_unreachable_when_ready() -> None:
    desk = Desk().ready()
    desk.send(SoftphoneUnreachable())
    assert (desk.agent.state, desk.agent.reason) == (S.NOT_READY, "unreachable")
    assert desk.alarms("softphone_unreachable")[0].std == "STD-099"
    with pytest.raises(StateError, match="softphone_unreachable"):
        desk.send(RequestState(S.READY))
    desk.send(SoftphoneReachable())
    assert desk.agent.state is S.NOT_READY  # STD-099: not made ready behind the agent's back
    desk.send(RequestState(S.READY))
    assert desk.agent.state is S.READY


def test_unreachable_while_ringing_drops_the_offer() -> None:
    desk = Desk().ringing()
    desk.send(SoftphoneUnreachable())
    assert (desk.agent.state, desk.agent.call_id) == (S.NOT_READY, "")
    with pytest.raises(StateError, match="stale_event"):
        desk.send(OfferWithdrawn("c1"))


@pytest.mark.std("STD-045")
def test_unreachable_during_a_call() -> None:
    desk = Desk().talking()
    desk.send(SoftphoneUnreachable())
    assert desk.agent.state is S.ON_CALL and not desk.agent.softphone_reachable
    assert desk.alarms("softphone_unreachable")[0].std == "STD-045"
    desk.send(CallEnded("c1"))
    desk.advance(60)
    assert (desk.agent.state, desk.agent.reason) == (S.NOT_READY, "unreachable")


def test_unreachable_while_busy_blocks_ready() -> None:
    desk = Desk().busy("meal")
    desk.send(SoftphoneUnreachable())
    assert (desk.agent.state, desk.agent.reason) == (S.BUSY, "meal")
    with pytest.raises(StateError, match="softphone_unreachable"):
        desk.send(RequestState(S.READY))


def test_login_with_unreachable_softphone() -> None:
    desk = Desk()
    desk.send(SoftphoneUnreachable())
    assert desk.agent.state is S.LOGGED_OUT and desk.alarms("softphone_unreachable") == []
    desk.send(LogIn())
    assert (desk.agent.state, desk.agent.reason) == (S.NOT_READY, "unreachable")
    assert len(desk.alarms("softphone_unreachable")) == 1


# --- busy reasons: limits and approval (STD-104, STD-106) -----------------------------------------


@pytest.mark.std("STD-104")
def test_meal_over_30_minutes_alerts_agent_and_board() -> None:
    desk = Desk().busy("meal")  # test hint 15: busy(meal) at 12:00 -> alert at 12:30
    desk.advance(29 * 60)
    assert desk.alarms("reason_overrun") == []
    desk.advance(60)
    [alarm] = desk.alarms("reason_overrun")
    assert alarm.std == "STD-104" and alarm.detail["limit_min"] == 30
    assert any(isinstance(e, Publish) and e.topic == "agent:1001" and
               e.payload.get("kind") == "reason_overrun" for e in desk.log)
    assert desk.agent.state is S.BUSY  # an alert, not a state change


def test_short_meal_does_not_alert() -> None:
    desk = Desk().busy("meal")
    desk.advance(10 * 60)
    desk.send(RequestState(S.READY))
    desk.advance(60 * 60)
    assert desk.alarms("reason_overrun") == []


@pytest.mark.std("STD-106")
def test_absence_needing_approval() -> None:
    desk = Desk().busy("away")
    assert desk.agent.approval_pending
    desk.advance(20 * 60)
    [alarm] = desk.alarms("unapproved_absence")
    assert alarm.std == "STD-106"


@pytest.mark.std("STD-106")
def test_approved_absence_is_not_flagged() -> None:
    desk = Desk().busy("away")
    desk.advance(5 * 60)
    desk.send(ApproveBusy())
    assert not desk.agent.approval_pending
    assert desk.persisted("busy_approved")[-1]["reason"] == "away"
    desk.advance(30 * 60)
    assert desk.alarms("unapproved_absence") == []


def test_supervisor_sent_absence_needs_no_approval() -> None:
    desk = Desk().ready()
    desk.send(RequestState(S.BUSY, "away", by="supervisor"))
    assert not desk.agent.approval_pending


def test_stale_timer_is_ignored() -> None:
    desk = Desk().in_acw()
    old_key = timer_key(desk.agent, "acw")
    desk.send(EndAcw())
    before = desk.agent
    assert desk.send(TimerFired(old_key)) == []
    assert desk.agent is before


# --- accumulators -------------------------------------------------------------------------------


def test_accumulators_per_state_and_reason() -> None:
    desk = Desk().ready()
    desk.advance(10)
    desk.send(CallOffered("c1"))
    desk.advance(5)
    desk.send(CallAnswered("c1"))
    desk.advance(30)
    desk.send(HoldStarted("c1"))
    desk.advance(20)
    desk.send(HoldEnded("c1"))
    desk.advance(10)
    desk.send(CallEnded("c1"))
    desk.advance(15)
    desk.send(RequestState(S.BUSY, "meal"))
    desk.advance(100)
    desk.send(RequestState(S.NOT_READY, "break"))
    desk.advance(7)
    desk.send(RequestState(S.READY))
    desk.advance(5)
    agent = desk.agent
    assert dict(agent.totals) == {"ready": 10, "ringing": 5, "on_call": 40, "on_hold": 20,
                                  "acw": 15, "busy:meal": 100, "not_ready:break": 7}
    assert time_in(agent, S.READY, now=desk.clock.now()) == 15  # includes the running part
    assert time_in(agent, S.BUSY) == 100 and time_in(agent, S.BUSY, "restroom") == 0
    assert sum(agent.totals.values()) == 197  # online time so far (STD-103)


def test_logged_out_time_is_not_counted() -> None:
    desk = Desk().ready()
    desk.advance(10)
    desk.send(LogOut())
    desk.advance(500)
    desk.send(LogIn())
    desk.advance(3)
    desk.send(RequestState(S.BUSY, "forms"))
    assert dict(desk.agent.totals) == {"ready": 13}


def test_day_rollover_persists_and_resets() -> None:
    desk = Desk().ready()
    desk.call(talk_s=30, acw_s=10, call_id="c1")
    desk.send(CallOffered("c2"))
    desk.send(OfferTimedOut("c2"))
    desk.advance(4)
    desk.send(DayRollover())
    [day] = desk.persisted("agent_day")
    assert day["calls_handled"] == 1 and day["ring_no_answer_count"] == 1
    assert day["totals"] == {"ringing": 1, "on_call": 30, "acw": 10,
                             "not_ready:ring_no_answer": 4}
    agent = desk.agent
    assert (dict(agent.totals), agent.calls_handled, agent.ring_no_answer_count) == ({}, 0, 0)
    assert agent.state is S.NOT_READY  # the state itself carries on
    desk.advance(6)
    desk.send(RequestState(S.READY))
    assert dict(desk.agent.totals) == {"not_ready:ring_no_answer": 6}


# --- routing helpers ----------------------------------------------------------------------------


def snapshot(agent_id: str, state: AgentState, since: float, reachable: bool = True
             ) -> AgentSnapshot:
    return AgentSnapshot(agent_id=agent_id, extension=agent_id, state=state, since=since,
                         softphone_reachable=reachable)


def test_longest_idle() -> None:
    agents = [
        snapshot("1003", S.READY, 30.0),
        snapshot("1001", S.READY, 10.0, reachable=False),
        snapshot("1002", S.BUSY, 5.0),
        snapshot("1005", S.READY, 20.0),
        snapshot("1004", S.READY, 20.0),
    ]
    chosen = longest_idle(agents)
    assert chosen is not None and chosen.agent_id == "1004"  # 1001 unreachable; tie -> 1004
    assert longest_idle([agents[1], agents[2]]) is None
    assert longest_idle([]) is None


# --- feature codes -------------------------------------------------------------------------


def test_feature_codes() -> None:
    assert feature_code_event("*21", DEFAULTS) == RequestState(S.NOT_READY, "break",
                                                               by="feature_code")
    assert feature_code_event("*22", DEFAULTS) == RequestState(S.READY, by="feature_code")
    assert feature_code_event("*23", DEFAULTS) == RequestState(S.BUSY, "restroom",
                                                               by="feature_code")
    assert feature_code_event("*24", DEFAULTS) == EndAcw(by="feature_code")
    assert feature_code_event("*99", DEFAULTS) is None
    desk = Desk().in_acw()
    event = feature_code_event("*24", DEFAULTS)
    assert event is not None
    desk.send(event)
    assert desk.agent.state is S.READY


@pytest.mark.std("STD-104")
def test_a_meal_break_past_the_rotation_cap_is_refused_with_the_reason() -> None:
    """STD-104: meals in rotation. Cap 1: the second agent asking for a meal break is
    refused (meal_cap_reached) and stays ready; once the first is back it is allowed."""
    from callflow.agents.state import check_meal_rotation
    policy = parse_policy({"agents": {"meal_concurrent_cap": 1}})
    first, second = Desk(policy, "1001").ready(), Desk(policy, "1002").ready()
    meal = RequestState(S.BUSY, "meal")
    check_meal_rotation(first.agent, meal, [second.agent], policy)
    first.send(meal)
    with pytest.raises(StateError) as refused:
        check_meal_rotation(second.agent, RequestState(S.NOT_READY, "meal"), [first.agent],
                            policy)
    assert refused.value.reason == "meal_cap_reached" and "1001" in refused.value.detail
    assert second.agent.state is S.READY
    # other reasons, the agent already on the meal, and the engine are not limited
    check_meal_rotation(second.agent, RequestState(S.BUSY, "restroom"), [first.agent], policy)
    check_meal_rotation(first.agent, RequestState(S.NOT_READY, "meal"), [second.agent],
                        policy)
    check_meal_rotation(second.agent, RequestState(S.BUSY, "meal", by="supervisor"),
                        [first.agent], policy)
    first.send(RequestState(S.READY))
    check_meal_rotation(second.agent, meal, [first.agent], policy)
    # cap 0 (the default): no limit
    check_meal_rotation(second.agent, meal, [first.agent, first.agent], DEFAULTS)
