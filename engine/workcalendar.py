"""The business calendar's arithmetic: working hours and working days between instants.

One calendar serves the outbound dialer (``engine/outbound.py``: the next working day's
calling time, STD-085/STD-089) and the ticket clocks (``engine/tickets.py``,
STD-122..STD-134): the working weekdays, holidays, make-up days and working hours of
``[calendar]`` in the Policy. Kept apart from both so neither owns the other's rules.

Working time runs only between ``work_start`` and ``work_end`` of a working day, in the
centre's zone. ``add_working_hours`` walks day by day, so a weekend or a holiday simply
contributes nothing. A working day is ``work_end - work_start`` of working time: one
working day after Friday 17:50 (09:00-18:00) is the next working day at 17:50. That is
the reading of "reply within N working days" that gives a caller the same promise
whatever the hour they called.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import PolicyError

#: Far enough to cross any real run of holidays; a calendar with no working day in it is
#: a configuration error, said once.
MAX_DAYS_AHEAD = 370


def zone(policy: Policy) -> ZoneInfo:
    return ZoneInfo(policy.calendar.timezone)


def at_local(day: date, clock_time: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock_time, tzinfo=tz)


def next_working_day(t: datetime, policy: Policy) -> date:
    """The first working day of the business calendar after ``t``'s local date."""
    day = t.astimezone(zone(policy)).date()
    for _ in range(MAX_DAYS_AHEAD):
        day += timedelta(days=1)
        if policy.calendar.is_workday(day):
            return day
    raise PolicyError("no working day within a year: check calendar.workdays and holidays")


def working_day_hours(policy: Policy) -> float:
    """Working hours in one working day (work_end - work_start)."""
    cal = policy.calendar
    start = datetime.combine(date(2000, 1, 3), cal.work_start)
    end = datetime.combine(date(2000, 1, 3), cal.work_end)
    return (end - start).total_seconds() / 3600


@enforces("STD-122", policy=("calendar.work_start", "calendar.work_end", "calendar.workdays",
                             "calendar.holidays", "calendar.extra_workdays",
                             "calendar.timezone"))
def add_working_hours(t: datetime, hours: float, policy: Policy) -> datetime:
    """The instant ``hours`` of working time after ``t`` (same zone as ``t``).

    Time outside working hours, on weekends and on holidays does not count. A clock that
    starts out of hours starts at the next opening; 0 hours from out of hours is that
    opening (the first moment anybody can act on it)."""
    if hours < 0:
        raise ValueError("working hours cannot be negative")
    tz = zone(policy)
    cal = policy.calendar
    local = t.astimezone(tz)
    left = timedelta(hours=hours)
    day = local.date()
    for _ in range(MAX_DAYS_AHEAD * 2):
        if cal.is_workday(day):
            opens, closes = at_local(day, cal.work_start, tz), at_local(day, cal.work_end, tz)
            start = max(opens, local)
            if start < closes or (start == closes and not left):
                if start + left <= closes:
                    return (start + left).astimezone(t.tzinfo)
                left -= closes - start
        day += timedelta(days=1)
    raise PolicyError("no working hours within a year: check calendar.workdays and holidays")


def add_working_days(t: datetime, workdays: float, policy: Policy) -> datetime:
    """``workdays`` working days of working time after ``t`` (see the module docstring)."""
    return add_working_hours(t, workdays * working_day_hours(policy), policy)
