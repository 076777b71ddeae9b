"""The outbound rules, pure: six rings by cadence, outcomes from Asterisk's facts, the
calling window and working days, due times per kind (C-11), the retry rule, and one
attempt from Originate to the last Hangup (STD-081..090)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callflow.ami.actions import encode
from callflow.engine import outbound
from callflow.engine.outbound import (
    AttemptOutcome,
    ChannelCreated,
    CustomerDialled,
    DialEnded,
    HangupRequested,
    LegHungUp,
    LegUp,
    OriginateRefused,
    OriginateResult,
    Phase,
    Vanished,
)
from callflow.engine.policy import CAMPAIGNS, Policy, ring_limit_seconds
from callflow.errors import StateError
from callflow.store.models import TASK_KINDS

SHANGHAI = ZoneInfo("Asia/Shanghai")
P = Policy.defaults()


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    """A centre-local instant (Asia/Shanghai, the default calendar zone) in UTC."""
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


def policy(**outbound_fields: object) -> Policy:
    data = P.model_dump()
    data["outbound"].update(outbound_fields)
    return Policy.model_validate(data)


# --- six rings, caller ID, the Originate ---------------------------------------------------


@pytest.mark.std("STD-081")
@pytest.mark.parametrize("country, seconds", [("cn", 30.0), ("us", 36.0), ("uk", 18.0)])
def test_six_rings_follow_the_country_cadence(country: str, seconds: float) -> None:
    p = Policy.model_validate({"country": country})
    assert outbound.customer_ring_seconds(p) == seconds == 6 * p.ring_cycle_s


def test_custom_cadence_and_fewer_rings_convert_too() -> None:
    p = Policy.model_validate({"country": "custom", "custom_cadence_ms": [1000, 2000],
                               "outbound": {"no_answer_rings": 2}})
    assert outbound.customer_ring_seconds(p) == 6.0


def originate_fields(attempt: outbound.Attempt, p: Policy, desk: str,
                     route: outbound.OutboundRoute | None = None) -> dict[str, Any]:
    """The attempt's Originate as Asterisk receives it (the AMI adapter's encoding)."""
    return encode(outbound.originate(attempt, p, desk, route=route))[1]


def test_originate_is_agent_first_with_channel_id_and_the_rings_in_the_dialplan() -> None:
    p = policy(caller_id="4000", caller_ids={"follow_up": "4001"})
    attempt = outbound.new_attempt("cfo-7-1-abc", 7, "callback", "13900000001", "1001", 0.0)
    fields = originate_fields(attempt, p, "agent1001")
    assert fields["Channel"] == "PJSIP/agent1001"
    assert fields["ChannelId"] == "cfo-7-1-abc"  # harness A5: always set
    assert (fields["Context"], fields["Exten"], fields["Priority"]) == (
        "callflow-outbound", "13900000001", "1")
    assert fields["Async"] == "true"
    # the agent's softphone rings like any offer (STD-008), the customer six rings (STD-081)
    assert fields["Timeout"] == str(int(ring_limit_seconds(p) * 1000)) == "15000"
    assert fields["Variable"] == ["CALLFLOW_RING_S=30", "CALLFLOW_TASK=7", "CALLFLOW_CLI=4000"]
    assert "13900000001" in str(fields["CallerID"])  # the agent sees whom they call
    follow = outbound.new_attempt("cfo-8-1-abc", 8, "follow_up", "13900000002", "1001", 0.0)
    assert "CALLFLOW_CLI=4001" in originate_fields(follow, p, "agent1001")["Variable"]
    plain = originate_fields(attempt, P, "agent1001")["Variable"]
    assert "CALLFLOW_CLI=" in plain  # none configured: empty, never the customer's own
    trunk = outbound.OutboundRoute(presented_number="4008000000",
                                   presented_numbers={"follow_up": "4008000001"})
    assert "CALLFLOW_CLI=4008000000" in originate_fields(attempt, P, "agent1001",
                                                         route=trunk)["Variable"]
    assert "CALLFLOW_CLI=4001" in originate_fields(follow, p, "agent1001",
                                                   route=trunk)["Variable"]  # Policy first
    assert "CALLFLOW_CLI=4008000001" in originate_fields(follow, P, "agent1001",
                                                         route=trunk)["Variable"]
    e164 = outbound.new_attempt("cfo-9-1-abc", 9, "manual", "+861065521234", "1001", 0.0)
    assert originate_fields(e164, P, "agent1001", route=trunk)["Exten"] == "01065521234"
    e164_trunk = outbound.OutboundRoute(number_format="e164")
    assert originate_fields(e164, P, "agent1001", route=e164_trunk)["Exten"] == "+861065521234"


def test_campaigns_are_the_task_kinds() -> None:
    assert set(CAMPAIGNS) == set(TASK_KINDS) == set(outbound.TASK_KINDS)
    with pytest.raises(ValueError, match="unknown campaign"):
        policy(caller_ids={"sales": "4000"})
    with pytest.raises(ValueError, match="1-32 digits"):
        policy(caller_ids={"manual": "+86"})


# --- outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize("answered, status, cause, expected", [
    (True, "", None, "answered"),
    (False, "ANSWER", 16, "answered"),
    (False, "BUSY", 17, "busy"),
    (False, "NOANSWER", 16, "no_answer"),  # Dial's timeout: the cancelled leg says 'normal'
    (False, "NOANSWER", 0, "no_answer"),
    (False, "NOANSWER", None, "no_answer"),
    (False, "NOANSWER", 127, "failed"),  # a carrier's unknown final code (499): not rung out
    (False, "NOANSWER", 21, "busy"),
    (False, "NOANSWER", 19, "no_answer"),
    (False, "NOANSWER", 1, "invalid_number"),  # refused leg: AMI's DialEnd says NOANSWER
    (False, "", 19, "no_answer"),  # Originate straight to a customer: no DialEnd (A5)
    (False, "", 17, "busy"),  # busy callee: OriginateResponse Reason 0, Hangup 17
    (False, "CHANUNAVAIL", 1, "invalid_number"),  # 404
    (False, "CONGESTION", 28, "invalid_number"),  # 484
    (False, "CHANUNAVAIL", 22, "invalid_number"),  # 410
    (False, "CONGESTION", 21, "busy"),  # 603 Decline
    (False, "CONGESTION", 34, "failed"),
    (False, "CHANUNAVAIL", None, "failed"),
    (False, "CANCEL", 16, "agent_cancelled"),
    (False, "", 16, "failed"),
])
def test_outcome_from_dialstatus_then_cause(answered: bool, status: str, cause: int | None,
                                            expected: str) -> None:
    assert outbound.classify(answered=answered, dial_status=status, cause=cause) == expected


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, digits", [("13900000001", "13900000001"),
                                         ("139 0000-0001", "13900000001"),
                                         ("(010) 6552.1234", "+861065521234"), ("110", "110")])
def test_numbers_are_normalised(raw: str, digits: str) -> None:
    assert outbound.normalize_number(raw) == digits


@pytest.mark.parametrize("raw, why", [("", "not a phone number"), ("12", "not a phone number"),
                                      ("1" * 21, "not a phone number"),
                                      ("139abc", "not a phone number"),
                                      ("+86139", "international number"),
                                      ("139;1", "not a phone number")])
def test_invalid_numbers_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(StateError, match=why) as err:
        outbound.normalize_number(raw)
    assert err.value.reason == "invalid_number"


# --- calling window and calendar (STD-085) ---------------------------------------------------


@pytest.mark.std("STD-085")
def test_calling_window_is_centre_local() -> None:
    monday_noon = local(2026, 1, 5, 12)
    assert outbound.in_calling_window(monday_noon, P)
    early = local(2026, 1, 5, 7, 30)
    assert outbound.next_calling_time(early, P) == local(2026, 1, 5, 9)
    late = local(2026, 1, 5, 21, 0)  # the window closes at 21:00
    assert not outbound.in_calling_window(late, P)
    assert outbound.next_calling_time(late, P) == local(2026, 1, 6, 9)


def test_weekends_and_holidays_are_skipped() -> None:
    friday_night = local(2026, 1, 9, 22)
    assert outbound.next_calling_time(friday_night, P) == local(2026, 1, 12, 9)
    holiday = Policy.model_validate({"calendar": {"holidays": [date(2026, 1, 12)]}})
    assert outbound.next_calling_time(friday_night, holiday) == local(2026, 1, 13, 9)
    weekends = Policy.model_validate({"calendar": {"holidays": [date(2026, 1, 11)]},
                                      "outbound": {"calling_days": "all_but_holidays"}})
    assert outbound.next_calling_time(friday_night, weekends) == local(2026, 1, 10, 9)
    saturday_night = local(2026, 1, 10, 22)
    assert outbound.next_calling_time(saturday_night, weekends) == local(2026, 1, 12, 9)
    makeup = Policy.model_validate({"calendar": {"extra_workdays": [date(2026, 1, 10)]}})
    assert outbound.next_calling_time(friday_night, makeup) == local(2026, 1, 10, 9)


def test_the_result_keeps_the_callers_time_zone() -> None:
    beijing = datetime(2026, 1, 5, 7, 0, tzinfo=SHANGHAI)
    assert outbound.next_calling_time(beijing, P).tzinfo is SHANGHAI


def test_a_calendar_without_calling_days_is_an_error() -> None:
    every_day = [date(2026, 1, 1) + timedelta(days=i) for i in range(400)]
    bad = Policy.model_validate({"calendar": {"holidays": every_day}})
    with pytest.raises(Exception, match="no calling day"):
        outbound.next_calling_time(local(2026, 1, 5, 12), bad)


# --- due times (C-11) ------------------------------------------------------------------------


@pytest.mark.std("STD-089")
def test_a_fault_follow_up_is_due_after_the_policys_working_days() -> None:
    """STD-089: outbound.followup_fault_days working days after the call (Friday 16:00):
    1 -> Monday, 2 -> Tuesday, 0 -> today, while the calling window is still open."""
    friday = local(2026, 1, 9, 16)
    for days, due_day in ((1, 12), (2, 13), (0, 9)):
        policy = Policy.model_validate({"outbound": {"followup_fault_days": days}})
        fault = outbound.plan_due("follow_up", friday, policy, follow_up="fault")
        expected = friday if days == 0 else local(2026, 1, due_day, 9)
        assert fault == outbound.Due(expected, local(2026, 1, due_day, 21)), days


@pytest.mark.std("STD-086", "STD-089")
def test_follow_up_is_due_the_next_working_day() -> None:
    friday = local(2026, 1, 9, 16)
    due = outbound.plan_due("follow_up", friday, P)
    assert due.due_at == local(2026, 1, 12, 9)
    assert due.deadline_at == friday + timedelta(days=P.outbound.followup_general_days)
    fault = outbound.plan_due("follow_up", friday, P, follow_up="fault")
    assert fault.due_at == local(2026, 1, 12, 9)
    assert fault.deadline_at == local(2026, 1, 12, 21)  # STD-089: done the next day
    later_start = Policy.model_validate({"calendar": {"work_start": "10:00"}})
    assert outbound.plan_due("follow_up", friday, later_start).due_at == local(2026, 1, 12, 10)
    long_holiday = Policy.model_validate(
        {"calendar": {"holidays": [date(2026, 1, d) for d in range(12, 17)]}})
    after = outbound.plan_due("follow_up", friday, long_holiday)
    assert after == outbound.Due(local(2026, 1, 19, 9), local(2026, 1, 19, 21))


def test_dropped_call_and_named_agent_are_due_now_inside_the_window() -> None:
    now = local(2026, 1, 5, 15)
    assert outbound.plan_due("dropped_call", now, P).due_at == now
    named = outbound.plan_due("named_agent", now, P)
    minutes = P.routing.named_agent_callback_due_min
    assert named == outbound.Due(now, now + timedelta(minutes=minutes))
    night = local(2026, 1, 5, 23)
    assert outbound.plan_due("dropped_call", night, P).due_at == local(2026, 1, 6, 9)


@pytest.mark.std("STD-091")
def test_a_callback_is_dialled_at_the_customers_time() -> None:
    now = local(2026, 1, 5, 10)
    chosen = local(2026, 1, 5, 16, 30)  # STD-091
    assert outbound.plan_due("callback", now, P, requested_at=chosen).due_at == chosen
    past = local(2026, 1, 5, 8)
    assert outbound.plan_due("manual", now, P, requested_at=past).due_at == now
    with pytest.raises(StateError, match="invalid_kind"):
        outbound.plan_due("sales", now, P)


def test_several_rules_earliest_wins() -> None:
    a, b = local(2026, 1, 7, 9), local(2026, 1, 6, 9)
    assert outbound.earliest_due([a, b]) == b


# --- the retry rule ----------------------------------------------------------------------------


def decide(outcome: AttemptOutcome, now: datetime, *, attempts: int = 1, kind: str = "callback",
           today: int = 1, p: Policy = P) -> outbound.Decision:
    return outbound.decide(outcome, kind=kind, attempts=attempts, max_attempts=3,
                           attempts_today=today, now=now, due_at=now, policy=p)


def test_answered_is_done() -> None:
    d = decide(AttemptOutcome.ANSWERED, local(2026, 1, 5, 10))
    assert (d.counted, d.reached, d.status) == (True, True, "done")


@pytest.mark.std("STD-081")
@pytest.mark.parametrize("outcome", [AttemptOutcome.NO_ANSWER, AttemptOutcome.BUSY,
                                     AttemptOutcome.FAILED, AttemptOutcome.AGENT_CANCELLED,
                                     AttemptOutcome.UNKNOWN])
def test_not_reached_retries_after_the_spacing(outcome: AttemptOutcome) -> None:
    now = local(2026, 1, 5, 10)
    d = decide(outcome, now)
    assert d.status == "pending" and d.counted
    assert d.retry_at == now + timedelta(minutes=P.outbound.retry_spacing_min)


def test_a_retry_past_the_window_waits_for_the_next_calling_day() -> None:
    d = decide(AttemptOutcome.NO_ANSWER, local(2026, 1, 9, 20, 45))  # Friday evening
    assert d.retry_at == local(2026, 1, 12, 9)


def test_max_attempts_and_invalid_numbers_are_unreachable() -> None:
    now = local(2026, 1, 5, 10)
    assert decide(AttemptOutcome.NO_ANSWER, now, attempts=3).status == "unreachable"
    assert decide(AttemptOutcome.INVALID_NUMBER, now, attempts=1).status == "unreachable"


def test_the_agents_own_failures_are_not_counted_and_stay_due() -> None:
    now = local(2026, 1, 5, 10)
    later = now + timedelta(seconds=Policy().outbound.agent_failure_backoff_s)
    agent = decide(AttemptOutcome.AGENT_NO_ANSWER, now, attempts=3)
    assert (agent.counted, agent.status, agent.retry_at) == (False, "pending", later)
    taken = decide(AttemptOutcome.NOT_OFFERED, now)
    assert (taken.counted, taken.retry_at) == (False, later)


@pytest.mark.parametrize("outcome", [AttemptOutcome.NOT_DIALLED, AttemptOutcome.NO_ROUTE])
def test_an_attempt_that_dialled_nothing_counts_on_the_retry_ladder(
        outcome: AttemptOutcome) -> None:  # issue 16: it was refunded, and redialled forever
    now = local(2026, 1, 5, 10)
    spacing = timedelta(minutes=Policy().outbound.retry_spacing_min)
    first = decide(outcome, now, attempts=1)
    assert (first.counted, first.status, first.retry_at) == (True, "pending", now + spacing)
    assert decide(outcome, now, attempts=3).status == "unreachable"


def test_the_agent_failure_backoff_is_policy() -> None:
    now = local(2026, 1, 5, 10)
    policy = Policy.model_validate({"outbound": {"agent_failure_backoff_s": 90}})
    d = outbound.decide(AttemptOutcome.AGENT_NO_ANSWER, kind="callback", attempts=1,
                        max_attempts=3, attempts_today=1, now=now, due_at=now, policy=policy)
    assert d.retry_at == now + timedelta(seconds=90)


@pytest.mark.std("STD-090")
def test_a_follow_up_dials_a_number_once_per_calling_day() -> None:  # STD-090
    now = local(2026, 1, 5, 10)
    d = decide(AttemptOutcome.NO_ANSWER, now, kind="follow_up", today=1)
    assert d.retry_at == local(2026, 1, 6, 9)
    twice = policy(attempts_per_number_per_run=2)
    d2 = decide(AttemptOutcome.NO_ANSWER, now, kind="follow_up", today=1, p=twice)
    assert d2.retry_at == now + timedelta(minutes=30)


# --- one attempt ---------------------------------------------------------------------------


def fresh() -> outbound.Attempt:
    return outbound.new_attempt("cfo-1-1-x", 1, "callback", "13900000001", "1001", 100.0)


def run(*events: outbound.AttemptEvent) -> outbound.Attempt:
    attempt = fresh()
    for event in events:
        attempt = outbound.step(attempt, event)
    return attempt


def test_answered_attempt_is_decided_at_the_answer_and_ends_at_the_hangup() -> None:
    a = run(LegUp("cfo-1-1-x", 101.0), OriginateResult(True, "4", 101.0),
            CustomerDialled("cust-1", 101.1), LegUp("cust-1", 113.0))
    assert a.phase is Phase.CONNECTED and a.outcome is AttemptOutcome.ANSWERED
    assert (a.agent_answered_at, a.customer_ring_at, a.customer_answered_at) == (
        101.0, 101.1, 113.0)
    a = outbound.step(a, DialEnded("ANSWER", 113.0))
    a = outbound.step(a, HangupRequested("cust-1", 120.0))
    a = outbound.step(a, LegHungUp("cust-1", 16, 120.0))
    a = outbound.step(a, LegHungUp("cfo-1-1-x", 16, 120.1))
    assert a.phase is Phase.ENDED and a.outcome is AttemptOutcome.ANSWERED
    assert (a.released_by, a.cause) == ("customer", 16)
    record = outbound.call_record(a)
    assert record is not None
    assert (record["direction"], record["outcome"], record["released_by"],
            record["ring_started_at"], record["answered_at"]) == (
        "outbound", "answered", "caller", 101.1, 113.0)


def test_six_unanswered_rings_end_as_no_answer_with_the_cause_kept() -> None:
    a = run(LegUp("cfo-1-1-x", 101.0), CustomerDialled("cust-1", 101.1),
            LegHungUp("cust-1", 19, 131.1), DialEnded("NOANSWER", 131.1))
    assert a.outcome is None and a.phase is Phase.AGENT_CONNECTED
    a = outbound.step(a, LegHungUp("cfo-1-1-x", 16, 131.2))
    assert (a.outcome, a.cause, a.ended_at) == (AttemptOutcome.NO_ANSWER, 19, 131.2)
    record = outbound.call_record(a)
    assert record is not None and (record["outcome"], record["released_by"]) == (
        "no_answer", "system")


def test_busy_customer() -> None:
    a = run(LegUp("cfo-1-1-x", 101.0), CustomerDialled("cust-1", 101.1),
            DialEnded("BUSY", 101.2), LegHungUp("cust-1", 17, 101.2),
            LegHungUp("cfo-1-1-x", 16, 101.3))
    assert (a.outcome, a.cause) == (AttemptOutcome.BUSY, 17)


def test_agent_not_picking_up_is_their_ring_no_answer_and_no_customer_attempt() -> None:
    a = run(ChannelCreated("cfo-1-1-x", 100.1), OriginateResult(False, "3", 116.0))
    assert a.phase is Phase.AGENT_RINGING  # waits for the Hangup and its cause
    a = outbound.step(a, LegHungUp("cfo-1-1-x", 19, 116.0))
    assert a.outcome is AttemptOutcome.AGENT_NO_ANSWER and outbound.agent_rang_out(a)
    assert a.cause == 19
    assert outbound.call_record(a) is None
    gone = run(OriginateResult(False, "0", 100.2))  # e.g. softphone unregistered
    assert gone.outcome is AttemptOutcome.AGENT_NO_ANSWER and not outbound.agent_rang_out(gone)


def test_refused_originate_ends_the_attempt_at_once() -> None:
    a = run(OriginateRefused("AMI link is down", 100.0))
    assert (a.phase, a.outcome, a.detail) == (Phase.ENDED, AttemptOutcome.NOT_DIALLED,
                                              "AMI link is down")


def test_no_outbound_route_is_told_apart_from_the_agent_hanging_up() -> None:
    # the dialplan plays "not in service" and ends the agent's leg with cause 3
    none = run(LegUp("cfo-1-1-x", 101.0), LegHungUp("cfo-1-1-x", 3, 104.0))
    assert (none.outcome, none.cause) == (AttemptOutcome.NO_ROUTE, 3)
    quit_ = run(LegUp("cfo-1-1-x", 101.0), LegHungUp("cfo-1-1-x", 16, 101.5))
    assert quit_.outcome is AttemptOutcome.NOT_DIALLED


def test_agent_hanging_up_while_the_customer_rings() -> None:
    a = run(LegUp("cfo-1-1-x", 101.0), CustomerDialled("cust-1", 101.1),
            HangupRequested("cfo-1-1-x", 105.0), DialEnded("CANCEL", 105.0),
            LegHungUp("cust-1", 16, 105.0), LegHungUp("cfo-1-1-x", 16, 105.0))
    assert (a.outcome, a.released_by) == (AttemptOutcome.AGENT_CANCELLED, "agent")


def test_facts_after_the_end_and_repeated_facts_change_nothing() -> None:
    a = run(LegUp("cfo-1-1-x", 101.0), LegUp("cfo-1-1-x", 102.0),
            OriginateResult(True, "4", 103.0))
    assert a.agent_answered_at == 101.0
    ended = outbound.step(a, LegHungUp("cfo-1-1-x", 16, 104.0))
    assert outbound.step(ended, LegUp("cust-9", 105.0)) == ended
    assert outbound.step(ended, OriginateResult(False, "3", 105.0)) == ended
    assert outbound.step(a, LegUp("somebody-else", 104.0)) == a


def test_vanished_attempts_while_the_link_was_down() -> None:
    ringing_customer = run(LegUp("cfo-1-1-x", 101.0), CustomerDialled("cust-1", 101.1),
                           Vanished(150.0))
    assert ringing_customer.outcome is AttemptOutcome.UNKNOWN
    never_rang = run(Vanished(150.0))
    assert never_rang.outcome is AttemptOutcome.NOT_DIALLED
    talked = run(LegUp("cfo-1-1-x", 101.0), CustomerDialled("cust-1", 101.1),
                 LegUp("cust-1", 105.0), Vanished(150.0))
    assert talked.outcome is AttemptOutcome.ANSWERED and talked.ended_at == 150.0
    busy = run(LegUp("cfo-1-1-x", 101.0), CustomerDialled("cust-1", 101.1),
               DialEnded("BUSY", 101.2), Vanished(150.0))
    assert busy.outcome is AttemptOutcome.BUSY


@pytest.mark.std("STD-069")
def test_an_agents_own_callback_comes_before_inbound_unless_the_policy_says_otherwise() -> None:
    """routing.callbacks_before_inbound: on (default), an agent's own due callback is
    dialled even while inbound callers wait (and inbound routing skips the agent); off,
    it waits like a pool task until no inbound caller is waiting."""
    off = Policy.model_validate({"routing": {"callbacks_before_inbound": False}})
    assert outbound.own_callbacks_first(P) and not outbound.own_callbacks_first(off)
    assert outbound.may_dial_now(True, False, True, P)
    assert not outbound.may_dial_now(True, False, True, off)
    assert outbound.may_dial_now(True, False, False, off)
    for policy in (P, off):  # pool tasks: inbound first, whatever the key
        assert not outbound.may_dial_now(False, True, True, policy)
        assert outbound.may_dial_now(False, True, False, policy)
        assert not outbound.may_dial_now(False, False, False, policy)


@pytest.mark.std("STD-120")
def test_a_surveyed_kind_keeps_the_customer_for_the_survey_when_the_agent_hangs_up() -> None:
    surveyed = Policy.model_validate({"survey": {"enabled": True,
                                                 "call_kinds": ["inbound", "callback"]}})
    attempt = outbound.new_attempt("cfo-7-1-abc", 7, "callback", "13900000001", "1001", 0.0)
    variables = originate_fields(attempt, surveyed, "agent1001")["Variable"]
    assert variables[3:] == ["CALLFLOW_DIAL_OPTIONS=F(callflow-survey^s^1)",
                             "__CALLFLOW_SURVEY_CALL=cfo-7-1-abc",
                             "__CALLFLOW_SURVEY_AGENT=1001", "__CALLFLOW_SURVEY_KIND=callback"]
    # another kind, or the survey off (the default): Dial hangs the customer up as before
    follow = outbound.new_attempt("cfo-8-1-abc", 8, "follow_up", "13900000002", "1001", 0.0)
    assert len(originate_fields(follow, surveyed, "agent1001")["Variable"]) == 3
    assert len(originate_fields(attempt, P, "agent1001")["Variable"]) == 3
