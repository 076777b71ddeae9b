"""Tickets: what the agent could not solve on the call, its clocks and its escalation.

A ticket is a set of facts (when it was logged, first replied to, taken by its handler,
followed up, resolved; which escalation levels it has reached). Everything else is
derived from those facts and the Policy by the pure functions here:

* the **clocks** each ticket type runs (STD-122..STD-127, STD-134), in clock hours,
  working hours or working days on the one business calendar (``engine/workcalendar``);
* the **status machine** (``move``): which status may follow which, and what a move
  records (reply, resolution, the start of a customer test);
* **escalation** (STD-125, STD-137): a ticket past a deadline, or unresolved past
  ``tickets.escalation_after_h``, goes one level up the chain (shift lead, then
  department manager), at the daily checks: the first check after the trigger, then
  the next check if still unresolved (``escalation_interval_h`` apart when the daily
  check is off). Each step's time is a function of the stored facts, never of a timer's
  memory, and a step fires only above the level already recorded, so an engine that
  restarts computes the same steps and fires none twice (``escalations_due``).

The adapters (``tickets/`` feature) store the facts and carry out what these functions
decide; no rule lives there.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Literal

from callflow.engine.policy import TICKET_TYPES, Policy, TicketsPolicy
from callflow.engine.rules import enforces
from callflow.engine.workcalendar import add_working_days, add_working_hours, zone
from callflow.errors import CallflowError

PRIORITIES = ("low", "normal", "high", "urgent")
OWNER_KINDS = ("agent", "team", "back_office")
#: open -> in_progress (the handler has it) -> resolved -> closed; ``awaiting_test``: the
#: customer tests and reports back (STD-127); ``awaiting_confirmation``: the follow-up call
#: asks the customer whether they are satisfied (STD-134).
STATUSES = ("open", "in_progress", "awaiting_test", "resolved", "awaiting_confirmation",
            "closed")
UNRESOLVED = frozenset({"open", "in_progress", "awaiting_test"})
MOVES: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "awaiting_test", "resolved"),
    "in_progress": ("awaiting_test", "resolved"),
    "awaiting_test": ("in_progress", "resolved"),
    "resolved": ("in_progress",),
    "awaiting_confirmation": ("in_progress",),
    "closed": (),
}
#: What meets a clock: the first reply to the customer, the handler taking the form, the
#: follow-up contact, the resolution.
Meets = Literal["reply", "handler", "followup", "resolve"]


class TicketError(CallflowError):
    """A request the ticket rules refuse; the message says what is allowed."""


@dataclass(frozen=True)
class Ticket:
    """The facts of one ticket the rules need (the store keeps more: text, links)."""

    type: str
    opened_at: datetime
    status: str = "open"
    priority: str = "normal"
    replied_at: datetime | None = None
    handled_at: datetime | None = None
    followed_up_at: datetime | None = None
    resolved_at: datetime | None = None
    test_since: datetime | None = None
    promised_at: datetime | None = None  # a time promised to the customer on the call
    escalation_level: int = 0
    customer_class: str = "standard"  # whose row of tickets.deadlines_by_class it runs


@dataclass(frozen=True)
class Clock:
    """One deadline of a ticket: its name (for people), when it falls due, what meets it."""

    name: str
    due_at: datetime
    meets: Meets
    std: str


@dataclass(frozen=True)
class Step:
    """One escalation step: the ``level`` (1 = first in the chain) reached at ``at``."""

    level: int
    role: str
    at: datetime
    reason: str  # "overdue:<clock>" or "unresolved_age"


def check_type(ticket_type: str) -> str:
    """The type, or a TicketError listing the known ones (STD-128: tickets carry a type)."""
    if ticket_type not in TICKET_TYPES:
        raise TicketError(f"unknown ticket type {ticket_type!r}; known types: "
                          f"{', '.join(TICKET_TYPES)}")
    return ticket_type


def _hours(t: datetime, h: float) -> datetime:
    return t + timedelta(hours=h)


def check_class(customer_class: str, policy: Policy) -> str:
    """The class, or a TicketError listing those the deadline table knows."""
    known = policy.tickets.deadlines_by_class
    if customer_class not in known:
        raise TicketError(f"unknown customer class {customer_class!r}; known classes: "
                          f"{', '.join(known)}")
    return customer_class


@enforces("STD-123", policy=("tickets.deadlines_by_class",))
def reclassed(current: str, wanted: object, policy: Policy) -> str:
    """The class a customer is moved to (STD-123: their next tickets run that row of the
    deadline table). Only a class the table lists, else a TicketError naming them; the
    tickets already logged keep the class they were logged with (``Ticket.customer_class``),
    so a re-classing never moves a running clock. ``current`` may be a class since removed
    from the Policy: moving away from it is allowed, moving to the same class is a no-op."""
    if not isinstance(wanted, str):
        raise TicketError("customer_class must be a string naming a class: "
                          f"{', '.join(policy.tickets.deadlines_by_class)}")
    return current if wanted == current else check_class(wanted, policy)


@enforces("STD-123", policy=("tickets.deadlines_by_class", "tickets.default_customer_class"))
def class_deadlines(customer_class: str | None, policy: Policy) -> TicketsPolicy:
    """The ticket numbers for a customer class: the section's, with that class's row of
    ``deadlines_by_class`` over them (STD-123: the promised time follows the complaint
    class and the customer class). An unknown or missing class runs the default class's
    row (a class removed from the Policy must not stop a stored ticket's clocks)."""
    tp = policy.tickets
    table = tp.deadlines_by_class
    row = table.get(customer_class or "", table.get(tp.default_customer_class, {}))
    return tp.model_copy(update=row) if row else tp


@enforces("STD-122", policy=("tickets.backoffice_response_workdays",))
@enforces("STD-123", policy=("tickets.complaint_simple_answer_h",
                             "tickets.complaint_complex_answer_h"))
@enforces("STD-124", policy=("tickets.enquiry_reply_workdays",))
@enforces("STD-126", policy=("tickets.form_to_handler_work_h",
                             "tickets.handler_result_workdays"))
@enforces("STD-134", policy=("tickets.complaint_followup_h",
                             "tickets.complaint_result_workdays"))
def clocks(ticket: Ticket, policy: Policy) -> list[Clock]:
    """Every deadline the ticket's type runs, from its logging time (STD-134's
    ASSUMPTION: complaint clocks start when the complaint is logged), with the numbers
    of the ticket's customer class (STD-123, ``class_deadlines``)."""
    tp = class_deadlines(ticket.customer_class, policy)
    t0 = ticket.opened_at
    out: list[Clock] = []
    kind = ticket.type
    if kind in ("enquiry", "suggestion"):
        out.append(Clock("reply", add_working_days(t0, tp.enquiry_reply_workdays, policy),
                         "reply", "STD-124"))
    elif kind in ("back_office", "fault"):
        out.append(Clock("to_handler", add_working_hours(t0, tp.form_to_handler_work_h,
                                                         policy), "handler", "STD-126"))
        if kind == "back_office":
            out.append(Clock("response", add_working_days(
                t0, tp.backoffice_response_workdays, policy), "reply", "STD-122"))
        out.append(Clock("result", add_working_days(t0, tp.handler_result_workdays, policy),
                         "resolve", "STD-126"))
    elif kind in ("complaint_simple", "complaint_complex"):
        answer_h = (tp.complaint_simple_answer_h if kind == "complaint_simple"
                    else tp.complaint_complex_answer_h)
        out.append(Clock("answer", _hours(t0, answer_h), "reply", "STD-123"))
        out.append(Clock("followup", _hours(t0, tp.complaint_followup_h), "followup",
                         "STD-134"))
        out.append(Clock("result", add_working_days(t0, tp.complaint_result_workdays,
                                                    policy), "resolve", "STD-134"))
    if ticket.promised_at is not None:
        out.append(Clock("promised", ticket.promised_at, "resolve", "STD-123"))
    return sorted(out, key=lambda c: c.due_at)


def met_at(ticket: Ticket, clock: Clock) -> datetime | None:
    """When the fact that meets ``clock`` happened (None: not yet)."""
    return {"reply": ticket.replied_at, "handler": ticket.handled_at,
            "followup": ticket.followed_up_at, "resolve": ticket.resolved_at}[clock.meets]


def open_clocks(ticket: Ticket, policy: Policy) -> list[Clock]:
    """The clocks not met yet, earliest first (a resolved ticket's reply clock is met)."""
    out = []
    for clock in clocks(ticket, policy):
        met = met_at(ticket, clock)
        if met is None and clock.meets == "reply" and ticket.resolved_at is not None:
            continue  # the resolution told the customer
        if met is None:
            out.append(clock)
    return out


def next_due(ticket: Ticket, policy: Policy) -> datetime | None:
    """The earliest deadline still open (the board's "due" column), or None."""
    pending = open_clocks(ticket, policy)
    return pending[0].due_at if pending else None


def overdue(ticket: Ticket, now: datetime, policy: Policy) -> list[Clock]:
    """The open clocks already past due at ``now``."""
    return [c for c in open_clocks(ticket, policy) if c.due_at <= now]


def _first_miss(ticket: Ticket, policy: Policy) -> tuple[datetime, str] | None:
    """When the ticket first missed a deadline (met late or not at all), and which."""
    for clock in clocks(ticket, policy):
        met = met_at(ticket, clock)
        if clock.meets == "reply" and met is None:
            met = ticket.resolved_at
        if met is None or met > clock.due_at:
            return clock.due_at, f"overdue:{clock.name}"
    return None


#: How far ahead the next daily check is looked for (a calendar with no working day in a
#: year has none: the steps then fall back to ``escalation_interval_h``).
CHECK_HORIZON_DAYS = 366


def checks_from(t: datetime, policy: Policy) -> Iterator[datetime]:
    """The daily checks at or after ``t``, in order (none when the check is off)."""
    if policy.tickets.daily_check_at is None:
        return
    day = t.astimezone(zone(policy)).date()
    for ahead in range(CHECK_HORIZON_DAYS):
        at = daily_check_time(day + timedelta(days=ahead), policy)
        if at is not None and at >= t:
            yield at


@enforces("STD-125", policy=("tickets.escalation_after_h", "tickets.escalation_interval_h",
                             "tickets.daily_check_at"))
@enforces("STD-137", policy=("tickets.escalation_chain",))
def escalation_steps(ticket: Ticket, policy: Policy) -> list[Step]:
    """Every step the chain would take for this ticket if it stayed unresolved, level by
    level (STD-137: no level skipped). The trigger is the ticket missing a deadline or
    being open ``escalation_after_h``, whichever is first. With a daily check
    (``daily_check_at``) the steps follow it (STD-125, standards scenario 14: "still open
    at the next daily check after 24 h -> the shift lead; still open at the next check ->
    the department manager"): the first step at the first check at or after the trigger,
    each next one at the next check. With the check off, the first step is at the trigger
    and each next one ``escalation_interval_h`` later."""
    tp = policy.tickets
    start = _hours(ticket.opened_at, tp.escalation_after_h)
    reason = "unresolved_age"
    miss = _first_miss(ticket, policy)
    if miss is not None and miss[0] < start:
        start, reason = miss
    chain = list(enumerate(tp.escalation_chain, start=1))
    checks = list(itertools.islice(checks_from(start, policy), len(chain)))
    if len(checks) == len(chain):
        return [Step(level, role, checks[level - 1], reason) for level, role in chain]
    return [Step(level, role, _hours(start, (level - 1) * tp.escalation_interval_h), reason)
            for level, role in chain]


def escalations_due(ticket: Ticket, now: datetime, policy: Policy) -> list[Step]:
    """The steps to fire now, in order: due by ``now``, above the level already recorded,
    and reached while the ticket was still unresolved. Pure in the stored facts, so a
    restarted engine fires exactly the steps not yet recorded."""
    return [s for s in escalation_steps(ticket, policy)
            if s.level > ticket.escalation_level and s.at <= now
            and (ticket.resolved_at is None or ticket.resolved_at > s.at)]


def next_escalation(ticket: Ticket, policy: Policy) -> datetime | None:
    """When the next step not yet recorded falls due (None: none left, or resolved)."""
    if ticket.resolved_at is not None:
        return None
    later = [s.at for s in escalation_steps(ticket, policy) if s.level > ticket.escalation_level]
    return later[0] if later else None


def escalated(ticket: Ticket, step: Step) -> Ticket:
    """The ticket with ``step`` recorded (the store keeps the level: restart-safe)."""
    if step.level != ticket.escalation_level + 1:
        raise TicketError(f"escalation must go level by level: at {ticket.escalation_level},"
                          f" asked for {step.level}")
    return replace(ticket, escalation_level=step.level)


# --- the status machine ---------------------------------------------------------------------


def needs_followup(ticket: Ticket, policy: Policy) -> bool:
    """STD-134: does closing this ticket need a follow-up call and the customer's word?"""
    return ticket.type in policy.tickets.close_needs_followup


def move(ticket: Ticket, to: str, now: datetime) -> Ticket:
    """The ticket after moving to status ``to`` at ``now``; a TicketError names the
    statuses allowed from here. Closing is ``close``, not a move."""
    allowed = MOVES.get(ticket.status, ())
    if to not in allowed:
        raise TicketError(f"a ticket {ticket.status} cannot become {to!r}; allowed: "
                          f"{', '.join(allowed) or 'none'}" +
                          ("; close it with the close request" if to == "closed" else ""))
    moved = replace(ticket, status=to, test_since=now if to == "awaiting_test" else None)
    if to in ("in_progress", "awaiting_test", "resolved") and moved.handled_at is None:
        moved = replace(moved, handled_at=now)
    if to == "resolved":
        moved = replace(moved, resolved_at=now)
    if to == "in_progress" and ticket.status in ("resolved", "awaiting_confirmation"):
        moved = replace(moved, resolved_at=None)  # re-opened: its clocks run again
    return moved


def replied(ticket: Ticket, now: datetime) -> Ticket:
    """The first reply to the customer (STD-133: every issue gets one) meets the reply
    clocks; later replies change nothing."""
    return ticket if ticket.replied_at is not None else replace(ticket, replied_at=now)


def followed_up(ticket: Ticket, now: datetime) -> Ticket:
    """The follow-up contact (STD-134) was made."""
    return ticket if ticket.followed_up_at is not None else replace(ticket, followed_up_at=now)


@enforces("STD-134", policy=("tickets.close_needs_followup",))
def close(ticket: Ticket, now: datetime, policy: Policy) -> Ticket:
    """Close a ticket. A type that needs the follow-up (STD-134) waits for the customer's
    confirmation instead (``awaiting_confirmation``; the caller makes the follow-up
    task); others close at once. Unresolved tickets are resolved by closing."""
    if ticket.status in ("closed", "awaiting_confirmation"):
        raise TicketError(f"the ticket is already {ticket.status}")
    done = ticket if ticket.resolved_at is not None else replace(
        ticket, resolved_at=now, handled_at=ticket.handled_at or now)
    status = "awaiting_confirmation" if needs_followup(ticket, policy) else "closed"
    return replace(done, status=status, test_since=None)


def confirmed(ticket: Ticket, satisfied: bool, now: datetime) -> Ticket:
    """The customer's answer to the follow-up call: satisfied closes the ticket;
    dissatisfied re-opens it (STD-134: handling repeats until they are satisfied)."""
    if ticket.status != "awaiting_confirmation":
        raise TicketError(f"the ticket is {ticket.status}, not awaiting the customer's "
                          "confirmation")
    contact = followed_up(ticket, now)
    if satisfied:
        return replace(contact, status="closed")
    return replace(contact, status="in_progress", resolved_at=None)


@enforces("STD-127", policy=("tickets.customer_test_h",))
def test_lapsed(ticket: Ticket, now: datetime, policy: Policy) -> bool:
    """STD-127: with no test result ``customer_test_h`` after asking, the problem counts
    as solved (the caller resolves the ticket)."""
    return (ticket.status == "awaiting_test" and ticket.test_since is not None
            and now >= _hours(ticket.test_since, policy.tickets.customer_test_h))


def check_promise(promised_at: datetime, now: datetime) -> datetime:
    """A time promised to the customer must lie ahead."""
    if promised_at <= now:
        raise TicketError(f"the promised deadline {promised_at.isoformat()} is in the past")
    return promised_at


@enforces("STD-130", policy=("tickets.text_max_chars",))
def text_fits(text: str, policy: Policy) -> bool:
    """A ticket keeps the description and notes as the complainant gave them (STD-130): a
    text longer than the store takes is refused whole, never cut."""
    return len(text) <= policy.tickets.text_max_chars


@enforces("STD-129")
def ticket_number(opened_at: datetime, owner: str, serial: int, policy: Policy) -> str:
    """STD-129: the form number is date + the owner's number + a serial
    (``YYYYMMDD-<owner>-<serial>``), the date in the centre's zone."""
    day = opened_at.astimezone(zone(policy)).strftime("%Y%m%d")
    clean = "".join(ch for ch in owner if ch.isalnum())[:16] or "hotline"
    return f"{day}-{clean}-{serial:05d}"


# --- escalation owners ------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A login who may receive escalation steps: their role and (a shift lead) team."""

    username: str
    role: str
    team: str | None = None


@enforces("STD-137", policy=("tickets.escalation_chain",))
def assignee(step: Step, team: str | None, people: list[Person]) -> str | None:
    """Who an escalation step goes to: the login whose role is the step's level, the one
    leading the ticket's team first (a shift lead chases their own team's tickets), else
    the first such login by name; None when nobody holds that role (the board alarm
    still reaches every supervisor)."""
    holders = sorted((p for p in people if p.role == step.role), key=lambda p: p.username)
    for person in holders:
        if team is not None and person.team == team:
            return person.username
    return holders[0].username if holders else None


# --- the daily check (STD-125, STD-136) -------------------------------------------------


def daily_check_time(day: date, policy: Policy) -> datetime | None:
    """When the daily check of ``day`` (a local date) falls, or None on a day off (or with
    the check switched off, ``daily_check_at = "off"``)."""
    check_at = policy.tickets.daily_check_at
    if check_at is None or not policy.calendar.is_workday(day):
        return None
    return datetime.combine(day, check_at, zone(policy))


@enforces("STD-125", policy=("tickets.daily_check_at",))
def daily_check_due(now: datetime, done: set[date], policy: Policy) -> date | None:
    """The working day whose daily check is to be made now, or None: the latest working
    day (today, else back over a weekend or holiday) whose check time has passed, if not
    already in ``done`` (the days stored as checked). Pure in the stored days, so an
    engine that restarts makes each day's check once, and one that was down at the
    check time makes it when it comes back, the same day; an earlier day missed while
    down is superseded by the next working day's check, never made late."""
    today = now.astimezone(zone(policy)).date()
    for back in range(0, 15):
        day = today - timedelta(days=back)
        at = daily_check_time(day, policy)
        if at is None:
            continue
        if at > now:
            return None  # today's check is still to come; yesterday's was yesterday's
        return None if day in done else day
    return None


@dataclass(frozen=True)
class CheckItem:
    """A ticket the daily check lists, with why (``overdue``, ``due_today``,
    ``unassigned``, ``open_long``)."""

    ticket_id: int
    number: str
    team: str | None
    reasons: tuple[str, ...]
    due_at: datetime | None


@enforces("STD-136", policy=("tickets.daily_check_open_h",))
def daily_check_list(tickets: list[tuple[int, str, str | None, bool, Ticket]], now: datetime,
                     policy: Policy) -> list[CheckItem]:
    """The daily check's list (STD-125: tickets open more than ``daily_check_open_h`` go
    to the shift lead; STD-136: the previous day's open items handed to today's staff):
    every unresolved ticket that is overdue, falls due before the end of today, has no
    one handling it (``assigned`` false: owned by a team or the back office and not
    taken), or is open too long. ``tickets``: (id, number, team, assigned, facts)."""
    tz = zone(policy)
    end_of_day = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), time(0), tz)
    long_ago = _hours(now, -policy.tickets.daily_check_open_h)
    out = []
    for ticket_id, number, team, assigned, facts in tickets:
        if facts.status not in UNRESOLVED:
            continue
        due = next_due(facts, policy)
        reasons = []
        if overdue(facts, now, policy):
            reasons.append("overdue")
        elif due is not None and due < end_of_day:
            reasons.append("due_today")
        if not assigned and facts.handled_at is None:
            reasons.append("unassigned")
        if facts.opened_at <= long_ago:
            reasons.append("open_long")
        if reasons:
            out.append(CheckItem(ticket_id, number, team, tuple(reasons), due))
    return sorted(out, key=lambda i: (i.reasons[0] != "overdue",
                                      i.due_at or end_of_day + timedelta(days=3650)))
