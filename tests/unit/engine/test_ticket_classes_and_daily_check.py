"""Deadlines by customer class, escalation owners and the daily check (issue 19).

Times are the centre's (Asia/Shanghai by default); 2027-01-01 is a Friday and Monday
2027-01-04 a holiday in these Policies. The daily check runs on a fake clock across a
weekend, a holiday and a restart: its only memory is the set of days stored as checked.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from callflow.engine import tickets as tk
from callflow.engine.clock import FakeClock
from callflow.engine.policy import Policy, parse_policy
from callflow.errors import PolicyError

SH = ZoneInfo("Asia/Shanghai")
FRIDAY = date(2027, 1, 1)
SATURDAY = date(2027, 1, 2)
MONDAY_HOLIDAY = date(2027, 1, 4)
TUESDAY = date(2027, 1, 5)
VIP = {"complaint_simple_answer_h": 1, "complaint_complex_answer_h": 4,
       "complaint_result_workdays": 3, "enquiry_reply_workdays": 1}


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=SH)


def policy(**tickets: object) -> Policy:
    base: dict[str, object] = {"deadlines_by_class": {"standard": {}, "vip": VIP}}
    return Policy.model_validate({"calendar": {"holidays": [MONDAY_HOLIDAY]},
                                  "tickets": {**base, **tickets}})


# --- deadlines by customer class (STD-123) ----------------------------------------------


@pytest.mark.std("STD-123")
def test_a_vip_complaint_runs_the_vip_row_of_the_table() -> None:
    p = policy()
    opened = at(FRIDAY, 17, 50)
    standard = {c.name: c.due_at for c in tk.clocks(tk.Ticket("complaint_complex", opened), p)}
    vip = {c.name: c.due_at for c in tk.clocks(
        tk.Ticket("complaint_complex", opened, customer_class="vip"), p)}
    assert standard["answer"] == at(SATURDAY, 17, 50)      # 24 h
    assert vip["answer"] == at(FRIDAY, 21, 50)             # 4 h
    # 3 working days: Tue 5, Wed 6, Thu 7 at 17:50 (weekend and Monday's holiday skipped)
    assert vip["result"] == at(date(2027, 1, 7), 17, 50)
    assert standard["result"] == at(date(2027, 1, 11), 17, 50)
    # a key the row does not give keeps the section's number
    assert vip["followup"] == standard["followup"] == at(SATURDAY, 17, 50)
    enquiry = tk.Ticket("enquiry", opened, customer_class="vip")
    assert tk.clocks(enquiry, p)[0].due_at == at(TUESDAY, 17, 50)  # 1 working day


@pytest.mark.std("STD-123")
def test_the_default_table_keeps_the_current_numbers() -> None:
    p = Policy()
    opened = at(FRIDAY, 10)
    for klass in ("standard", "vip"):
        got = tk.clocks(tk.Ticket("complaint_simple", opened, customer_class=klass), p)
        assert got == tk.clocks(tk.Ticket("complaint_simple", opened), p)
    assert tk.check_class("vip", p) == "vip"
    with pytest.raises(tk.TicketError, match="known classes: standard, vip"):
        tk.check_class("gold", p)


@pytest.mark.std("STD-123")
def test_a_class_no_longer_in_the_table_runs_the_default_row() -> None:
    p = policy(default_customer_class="vip")
    ticket = tk.Ticket("complaint_simple", at(FRIDAY, 10), customer_class="removed")
    assert tk.clocks(ticket, p)[0].due_at == at(FRIDAY, 11)  # the vip row: 1 h


def test_the_table_refuses_unknown_keys_classes_and_a_missing_default() -> None:
    def table(value: object) -> None:
        parse_policy({"tickets": {"deadlines_by_class": value}})

    with pytest.raises(PolicyError, match="unknown clock keys"):
        table({"standard": {}, "vip": {"answer_h": 1}})
    with pytest.raises(PolicyError, match="1-16 of a-z"):
        table({"VIP!": {}, "standard": {}})
    with pytest.raises(PolicyError, match="is not in deadlines_by_class"):
        table({"vip": {}})
    with pytest.raises(PolicyError, match=r"0\.\.720"):
        table({"standard": {}, "vip": {"complaint_simple_answer_h": -1}})


# --- escalation owners (STD-137) --------------------------------------------------------


@pytest.mark.std("STD-137")
def test_a_step_goes_to_the_shift_lead_of_the_tickets_team_then_the_manager() -> None:
    people = [tk.Person("lead_b", "shift_lead", "B"), tk.Person("lead_a", "shift_lead", "A"),
              tk.Person("boss", "department_manager"), tk.Person("sup", "supervisor")]
    steps = tk.escalation_steps(tk.Ticket("complaint_simple", at(FRIDAY, 10)), Policy())
    assert [s.role for s in steps] == ["shift_lead", "department_manager"]
    assert tk.assignee(steps[0], "A", people) == "lead_a"
    assert tk.assignee(steps[0], "B", people) == "lead_b"
    assert tk.assignee(steps[0], "C", people) == "lead_a"  # no lead of C: the first lead
    assert tk.assignee(steps[0], None, people) == "lead_a"
    assert tk.assignee(steps[1], "A", people) == "boss"
    assert tk.assignee(steps[1], "A", people[:2]) is None  # nobody holds that role


# --- the daily check (STD-125, STD-136) -------------------------------------------------


@pytest.mark.std("STD-125")
def test_the_daily_check_fires_once_per_working_day_across_a_restart_and_a_weekend() -> None:
    p = policy(daily_check_at="09:30")
    clock = FakeClock(start=at(FRIDAY, 9))
    done: set[date] = set()  # the stored days: the only memory

    def wall() -> datetime:
        return clock.wall().astimezone(SH)

    assert tk.daily_check_due(wall(), done, p) is None  # 09:00: not yet
    clock.advance(30 * 60)
    assert tk.daily_check_due(wall(), done, p) == FRIDAY  # 09:30 sharp
    done.add(FRIDAY)
    clock.advance(60)
    assert tk.daily_check_due(wall(), done, p) is None  # made: not again
    # the engine restarts at 15:00 and rebuilds from the stored days: nothing to do
    restarted = set(done)
    clock.advance(5.5 * 3600)
    assert tk.daily_check_due(wall(), restarted, p) is None
    # Saturday, Sunday and the Monday holiday: no check (Friday's is the latest)
    for hours in range(1, 3 * 24 + 18):  # to Tuesday 09:00
        t = at(FRIDAY, 15) + timedelta(hours=hours)
        assert tk.daily_check_due(t, restarted, p) is None, t
    # Tuesday: before 09:30 nothing, at 09:30 Tuesday's check
    assert tk.daily_check_due(at(TUESDAY, 9, 29), restarted, p) is None
    assert tk.daily_check_due(at(TUESDAY, 9, 30), restarted, p) == TUESDAY
    # an engine down at 09:30 makes it when it comes back that day, once
    assert tk.daily_check_due(at(TUESDAY, 16), restarted, p) == TUESDAY
    assert tk.daily_check_due(at(TUESDAY, 16), restarted | {TUESDAY}, p) is None


@pytest.mark.std("STD-125")
def test_a_make_up_saturday_gets_its_check_and_the_time_is_the_policys() -> None:
    p = Policy.model_validate({"calendar": {"extra_workdays": [SATURDAY]},
                               "tickets": {"daily_check_at": "08:15"}})
    assert tk.daily_check_due(at(SATURDAY, 8, 14), {FRIDAY}, p) is None
    assert tk.daily_check_due(at(SATURDAY, 8, 15), {FRIDAY}, p) == SATURDAY
    assert tk.daily_check_time(date(2027, 1, 3), p) is None  # Sunday


@pytest.mark.std("STD-136")
def test_the_daily_check_lists_overdue_due_today_unassigned_and_open_long() -> None:
    p = policy()
    now = at(TUESDAY, 9, 30)
    late = tk.Ticket("complaint_simple", at(TUESDAY, 7))          # answer due 09:00
    today = tk.Ticket("complaint_simple", at(TUESDAY, 9))          # answer due 11:00
    team_owned = tk.Ticket("enquiry", at(TUESDAY, 9, 10))          # due Thursday
    old = tk.Ticket("enquiry", at(FRIDAY, 10), replied_at=at(FRIDAY, 11))  # open > 24 h
    quiet = tk.Ticket("enquiry", at(TUESDAY, 9, 20))               # nothing to say
    done = tk.Ticket("complaint_simple", at(TUESDAY, 7), status="resolved",
                     resolved_at=at(TUESDAY, 8))
    rows = [(1, "n1", "A", True, late), (2, "n2", "B", True, today),
            (3, "n3", "A", False, team_owned), (4, "n4", None, True, old),
            (5, "n5", "A", True, quiet), (6, "n6", "A", True, done)]
    got = {i.ticket_id: i.reasons for i in tk.daily_check_list(rows, now, p)}
    assert got == {1: ("overdue",), 2: ("due_today",), 3: ("unassigned",),
                   4: ("open_long",)}
    assert next(i.ticket_id for i in tk.daily_check_list(rows, now, p)) == 1  # overdue first
    shorter = policy(daily_check_open_h=1)
    assert "open_long" in {r for i in tk.daily_check_list(rows, now, shorter)
                           for r in i.reasons if i.ticket_id == 1}
