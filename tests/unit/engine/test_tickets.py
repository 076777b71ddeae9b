"""Ticket clocks on the working-day calendar, the status machine and escalation (issue 19).

Times are the centre's (Asia/Shanghai by default); 2027-01-01 is a Friday.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from callflow.engine import tickets as tk
from callflow.engine.clock import FakeClock
from callflow.engine.policy import TICKET_TYPES, Policy, parse_policy
from callflow.engine.workcalendar import add_working_days, add_working_hours
from callflow.errors import PolicyError

SH = ZoneInfo("Asia/Shanghai")
FRIDAY = date(2027, 1, 1)  # a Friday
MONDAY_HOLIDAY = date(2027, 1, 4)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=SH)


def policy(**tickets: object) -> Policy:
    return Policy.model_validate({"calendar": {"holidays": [MONDAY_HOLIDAY]},
                                  "tickets": tickets})


# --- the calendar ---------------------------------------------------------------------------


@pytest.mark.std("STD-122")
def test_working_hours_skip_nights_weekends_and_holidays() -> None:
    p = policy()
    friday_1750 = at(FRIDAY, 17, 50)
    # 10 minutes left on Friday, Monday is a holiday: the rest runs on Tuesday
    assert add_working_hours(friday_1750, 2, p) == at(date(2027, 1, 5), 10, 50)
    # one working day (9 working hours) from Friday 17:50 is Tuesday 17:50
    assert add_working_days(friday_1750, 1, p) == at(date(2027, 1, 5), 17, 50)
    # a clock started at night starts at the next opening
    assert add_working_hours(at(date(2027, 1, 5), 22, 0), 1, p) == at(date(2027, 1, 6), 10)
    assert add_working_hours(at(FRIDAY, 18, 0), 0, p) == at(FRIDAY, 18, 0)
    assert add_working_hours(at(date(2027, 1, 2), 12), 0, p) == at(date(2027, 1, 5), 9)
    # a make-up working Saturday counts
    makeup = Policy.model_validate({"calendar": {"holidays": [MONDAY_HOLIDAY],
                                                 "extra_workdays": [date(2027, 1, 2)]}})
    assert add_working_days(friday_1750, 1, makeup) == at(date(2027, 1, 2), 17, 50)


def test_work_end_must_follow_work_start() -> None:
    with pytest.raises(PolicyError, match=r"calendar\.work_end: must be after work_start"):
        parse_policy({"calendar": {"work_start": "18:00", "work_end": "09:00"}})


# --- clocks ---------------------------------------------------------------------------------


@pytest.mark.std("STD-124")
@pytest.mark.std("STD-134")
@pytest.mark.std("STD-123")
def test_complaint_logged_friday_1750_falls_due_after_weekend_and_holiday() -> None:
    p = policy()
    ticket = tk.Ticket("complaint_complex", at(FRIDAY, 17, 50))
    due = {c.name: c.due_at for c in tk.clocks(ticket, p)}
    assert due["answer"] == at(date(2027, 1, 2), 17, 50)   # 24 clock hours (STD-123)
    assert due["followup"] == at(date(2027, 1, 2), 17, 50)  # 24 h follow-up (STD-134)
    # 5 working days: Tue 5, Wed 6, Thu 7, Fri 8, Mon 11 at 17:50 (Sat, Sun, holiday skipped)
    assert due["result"] == at(date(2027, 1, 11), 17, 50)
    simple = tk.Ticket("complaint_simple", at(FRIDAY, 17, 50))
    assert {c.name: c.due_at for c in tk.clocks(simple, p)}["answer"] == at(FRIDAY, 19, 50)


@pytest.mark.std("STD-124")
@pytest.mark.std("STD-122")
@pytest.mark.std("STD-126")
def test_enquiry_and_back_office_clocks_count_working_time() -> None:
    p = policy()
    enquiry = tk.Ticket("enquiry", at(FRIDAY, 17, 50))
    assert tk.next_due(enquiry, p) == at(date(2027, 1, 6), 17, 50)  # 2 working days
    office = tk.Ticket("back_office", at(FRIDAY, 17, 50))
    due = {c.name: c.due_at for c in tk.clocks(office, p)}
    assert due == {"to_handler": at(date(2027, 1, 5), 10, 50),   # 2 working hours
                   "response": at(date(2027, 1, 5), 17, 50),     # 1 working day
                   "result": at(date(2027, 1, 6), 17, 50)}       # 2 working days
    # the numbers are the Policy's
    longer = policy(backoffice_response_workdays=3)
    assert {c.name: c.due_at for c in tk.clocks(office, longer)}["response"] == \
        at(date(2027, 1, 7), 17, 50)


def test_met_clocks_stop_counting_and_overdue_lists_the_rest() -> None:
    p = policy()
    t0 = at(date(2027, 1, 5), 10)
    ticket = tk.Ticket("complaint_simple", t0)
    assert [c.name for c in tk.overdue(ticket, t0 + timedelta(hours=3), p)] == ["answer"]
    answered = tk.replied(ticket, t0 + timedelta(hours=1))
    assert tk.overdue(answered, t0 + timedelta(hours=3), p) == []
    assert tk.next_due(answered, p) == t0 + timedelta(hours=24)
    closed = tk.move(answered, "resolved", t0 + timedelta(hours=2))
    assert [c.name for c in tk.open_clocks(closed, p)] == ["followup"]


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(tk.TicketError) as err:
        tk.check_type("rant")
    for known in TICKET_TYPES:
        assert known in str(err.value)


def test_promised_deadline_must_be_ahead() -> None:
    now = at(FRIDAY, 10)
    with pytest.raises(tk.TicketError, match="in the past"):
        tk.check_promise(now - timedelta(minutes=1), now)
    ticket = tk.Ticket("enquiry", now, promised_at=now + timedelta(hours=1))
    assert tk.next_due(ticket, policy()) == now + timedelta(hours=1)


# --- escalation -----------------------------------------------------------------------------


@pytest.mark.std("STD-125")
@pytest.mark.std("STD-137")
def test_escalation_fires_in_order_once_at_the_right_times() -> None:
    p = policy()
    clock = FakeClock(start=at(FRIDAY, 17, 0))
    ticket = tk.Ticket("complaint_complex", clock.wall())
    fired: list[tuple[int, str, datetime]] = []
    # a minute-by-minute sweep over six days, as a watcher would run
    for _ in range(6 * 24 * 60):
        clock.advance(60)
        for step in tk.escalations_due(ticket, clock.wall(), p):
            ticket = tk.escalated(ticket, step)
            fired.append((step.level, step.role, clock.wall()))
    # The 24 h answer (Saturday 17:00) is missed. The rule changed with the daily check
    # (STD-125, scenario 14): the shift lead at the next daily check (not on Saturday
    # 17:00; Sunday and the Monday holiday have none: Tuesday 09:30), the manager at the
    # check after (Wednesday 09:30), not 24 h after the first step.
    assert fired == [(1, "shift_lead", at(date(2027, 1, 5), 9, 30)),
                     (2, "department_manager", at(date(2027, 1, 6), 9, 30))]


@pytest.mark.std("STD-125")
@pytest.mark.std("STD-137")
def test_scenario_14_steps_follow_the_daily_check_over_a_weekend() -> None:
    """Standards scenario 14: a complex complaint logged Friday 17:00, first answer due
    Saturday 17:00; still open at the next daily check after 24 h -> the shift lead
    (Monday 09:30); still open at the next check -> the manager (Tuesday 09:30)."""
    p = Policy()  # no holiday: Monday is a working day
    friday = at(FRIDAY, 17)
    ticket = tk.Ticket("complaint_complex", friday)
    assert tk.clocks(ticket, p)[0].due_at == at(date(2027, 1, 2), 17)  # the answer
    steps = tk.escalation_steps(ticket, p)
    assert [(s.level, s.role, s.at) for s in steps] == [
        (1, "shift_lead", at(date(2027, 1, 4), 9, 30)),
        (2, "department_manager", at(date(2027, 1, 5), 9, 30))]
    assert tk.next_escalation(ticket, p) == at(date(2027, 1, 4), 9, 30)
    # nothing over the weekend, the shift lead on Monday's check, once
    assert tk.escalations_due(ticket, at(date(2027, 1, 4), 9, 29), p) == []
    [first] = tk.escalations_due(ticket, at(date(2027, 1, 4), 9, 30), p)
    ticket = tk.escalated(ticket, first)
    assert tk.escalations_due(ticket, at(date(2027, 1, 4), 18), p) == []
    # resolved before Tuesday's check: the manager is never reached
    done = tk.move(ticket, "resolved", at(date(2027, 1, 5), 9))
    assert tk.escalations_due(done, at(date(2027, 1, 6), 12), p) == []
    # a ticket resolved after the manager's check still got that step
    late = tk.move(ticket, "resolved", at(date(2027, 1, 5), 10))
    assert [s.level for s in tk.escalations_due(late, at(date(2027, 1, 6), 12), p)] == [2]
    # the check's time is the Policy's; a check exactly at the trigger counts
    early = policy(daily_check_at="08:00", escalation_after_h=15)  # trigger Sat 08:00
    assert [s.at for s in tk.escalation_steps(tk.Ticket("enquiry", at(date(2027, 1, 5), 17)),
                                              early)] == [
        at(date(2027, 1, 6), 8), at(date(2027, 1, 7), 8)]


@pytest.mark.std("STD-125")
def test_without_a_daily_check_the_steps_are_the_interval_apart() -> None:
    p = policy(daily_check_at="off")
    friday = at(FRIDAY, 17)
    steps = tk.escalation_steps(tk.Ticket("complaint_complex", friday), p)
    assert [s.at for s in steps] == [at(date(2027, 1, 2), 17), at(date(2027, 1, 3), 17)]
    assert tk.daily_check_time(FRIDAY, p) is None
    assert tk.daily_check_due(at(FRIDAY, 12), set(), p) is None
    # Mondays only: the checks are a week apart, the rule follows them
    mondays = Policy.model_validate({"calendar": {"workdays": ["mon"]}})
    assert [s.at for s in tk.escalation_steps(tk.Ticket("enquiry", friday), mondays)] == [
        at(date(2027, 1, 4), 9, 30), at(date(2027, 1, 11), 9, 30)]
    with pytest.raises(PolicyError, match=r"tickets\.daily_check_at"):
        parse_policy({"tickets": {"daily_check_at": "later"}})


@pytest.mark.std("STD-125")
def test_unresolved_age_escalates_even_before_any_deadline() -> None:
    # the interval rule (no daily check), so the steps fall at the age and 24 h after
    p = policy(escalation_after_h=4, daily_check_at="off")
    t0 = at(date(2027, 1, 5), 9)
    ticket = tk.Ticket("enquiry", t0)  # due in 2 working days
    steps = tk.escalation_steps(ticket, p)
    assert [(s.level, s.at, s.reason) for s in steps] == [
        (1, t0 + timedelta(hours=4), "unresolved_age"),
        (2, t0 + timedelta(hours=28), "unresolved_age")]
    resolved = tk.move(ticket, "resolved", t0 + timedelta(hours=5))
    # level 1 was reached while open; level 2 never is
    assert [s.level for s in tk.escalations_due(resolved, t0 + timedelta(days=3), p)] == [1]
    assert tk.next_escalation(resolved, p) is None
    # with the daily check the same age meets the next check (Wednesday 09:30)
    checked = tk.escalation_steps(ticket, policy(escalation_after_h=4))
    assert [s.at for s in checked] == [at(date(2027, 1, 6), 9, 30), at(date(2027, 1, 7), 9, 30)]


@pytest.mark.std("STD-125")
@pytest.mark.std("STD-137")
def test_restart_fires_the_missed_steps_in_order_and_never_again() -> None:
    p = policy()
    t0 = at(FRIDAY, 17, 0)
    stored = tk.Ticket("complaint_complex", t0)
    # the engine was down from Friday to Wednesday 10:00 (the checks of Tuesday and
    # Wednesday passed while it was down; the rule changed from 24 h apart to the daily
    # checks): at start it fires both steps, in order
    now = at(date(2027, 1, 6), 10)
    steps = tk.escalations_due(stored, now, p)
    assert [s.level for s in steps] == [1, 2]
    for step in steps:
        stored = tk.escalated(stored, step)  # what the store keeps
    # a second restart, rebuilt from the stored level, fires nothing
    assert tk.escalations_due(stored, now + timedelta(hours=1), p) == []
    with pytest.raises(tk.TicketError, match="level by level"):
        tk.escalated(tk.Ticket("enquiry", t0), steps[1])


def test_escalation_chain_is_the_policys() -> None:
    # the interval rule (no daily check): the steps two hours apart
    p = policy(escalation_chain=["shift_lead", "centre_supervisor", "department_manager"],
               escalation_interval_h=2, daily_check_at="off")
    steps = tk.escalation_steps(tk.Ticket("complaint_simple", at(FRIDAY, 10)), p)
    assert [(s.role, s.at) for s in steps] == [
        ("shift_lead", at(FRIDAY, 12)), ("centre_supervisor", at(FRIDAY, 14)),
        ("department_manager", at(FRIDAY, 16))]
    # with the daily check each level takes the next check (Tuesday, Wednesday, Thursday:
    # the weekend and Monday's holiday have none)
    checked = policy(escalation_chain=["shift_lead", "centre_supervisor",
                                       "department_manager"])
    assert [s.at for s in tk.escalation_steps(tk.Ticket("complaint_simple", at(FRIDAY, 10)),
                                              checked)] == [
        at(date(2027, 1, 5), 9, 30), at(date(2027, 1, 6), 9, 30), at(date(2027, 1, 7), 9, 30)]
    with pytest.raises(PolicyError, match=r"tickets\.escalation_chain"):
        parse_policy({"tickets": {"escalation_chain": []}})


# --- status machine, closing, follow-up ----------------------------------------------------


@pytest.mark.std("STD-134")
def test_complaint_closes_only_after_the_customers_confirmation() -> None:
    p = policy()
    t0 = at(FRIDAY, 10)
    ticket = tk.move(tk.Ticket("complaint_simple", t0), "in_progress", t0)
    waiting = tk.close(ticket, t0 + timedelta(hours=1), p)
    assert waiting.status == "awaiting_confirmation"
    assert waiting.resolved_at == t0 + timedelta(hours=1)
    with pytest.raises(tk.TicketError, match="already awaiting_confirmation"):
        tk.close(waiting, t0, p)
    unhappy = tk.confirmed(waiting, satisfied=False, now=t0 + timedelta(hours=2))
    assert (unhappy.status, unhappy.resolved_at) == ("in_progress", None)
    assert unhappy.followed_up_at == t0 + timedelta(hours=2)
    happy = tk.confirmed(tk.close(unhappy, t0 + timedelta(hours=3), p), True,
                         t0 + timedelta(hours=4))
    assert happy.status == "closed"
    # an enquiry closes at once
    assert tk.close(tk.Ticket("enquiry", t0), t0, p).status == "closed"
    assert tk.close(tk.Ticket("complaint_simple", t0), t0,
                    policy(close_needs_followup=[])).status == "closed"


def test_moves_name_what_is_allowed() -> None:
    t0 = at(FRIDAY, 10)
    ticket = tk.Ticket("enquiry", t0)
    with pytest.raises(tk.TicketError, match="allowed: in_progress, awaiting_test, resolved"):
        tk.move(ticket, "closed", t0)
    with pytest.raises(tk.TicketError, match="allowed: none"):
        tk.move(tk.close(ticket, t0, policy()), "in_progress", t0)


@pytest.mark.std("STD-127")
def test_customer_test_counts_as_solved_after_24h() -> None:
    p = policy()
    t0 = at(FRIDAY, 10)
    testing = tk.move(tk.Ticket("fault", t0), "awaiting_test", t0)
    assert not tk.test_lapsed(testing, t0 + timedelta(hours=23, minutes=59), p)
    assert tk.test_lapsed(testing, t0 + timedelta(hours=24), p)
    assert not tk.test_lapsed(testing, t0 + timedelta(hours=2), policy(customer_test_h=3))


@pytest.mark.std("STD-129")
def test_ticket_number_is_date_owner_serial() -> None:
    late = datetime(2027, 1, 1, 17, 30, tzinfo=ZoneInfo("UTC"))  # already the 2nd in Shanghai
    assert tk.ticket_number(late, "1001", 42, policy()) == "20270102-1001-00042"
    assert tk.ticket_number(late, "<x>", 1, policy()) == "20270102-x-00001"


# --- KPIs -----------------------------------------------------------------------------------


@pytest.mark.std("STD-133")
def test_ticket_kpis_from_facts() -> None:
    from callflow.engine.kpi import ticket_kpis

    p = policy()
    t0 = at(date(2027, 1, 5), 9)
    on_time = tk.replied(tk.Ticket("enquiry", t0), t0 + timedelta(hours=1))
    late = tk.Ticket("complaint_simple", t0)  # answer due 11:00, never replied
    followed = tk.followed_up(tk.replied(tk.Ticket("complaint_complex", t0),
                                         t0 + timedelta(hours=2)), t0 + timedelta(hours=3))
    k = ticket_kpis([on_time, late, followed], answered_calls=20,
                    as_of=t0 + timedelta(hours=30), policy=p)
    # clocks due by as_of: late answer+followup (2, missed), followed answer+followup (met)
    assert k.as_dict() == {"logged": 3, "complaints": 2, "timeliness_pct": 50.0,
                           "reply_rate_pct": 66.67, "reply_rate_met": False,
                           "complaint_rate_pct": 10.0, "followup_coverage_pct": 50.0}
    assert ticket_kpis([on_time], 0, t0, policy()).reply_rate_met is True
    lenient = Policy.model_validate({"kpi": {"reply_rate_target_pct": 60}})
    assert ticket_kpis([on_time, late, followed], 0, t0, lenient).reply_rate_met is True
    assert ticket_kpis([], 0, t0, p).timeliness is None


@pytest.mark.std("STD-130")
def test_a_text_longer_than_the_policy_takes_is_refused_whole_never_cut() -> None:
    p = policy(text_max_chars=100)
    assert tk.text_fits("投诉" * 50, p)
    assert not tk.text_fits("投诉" * 50 + "!", p)
