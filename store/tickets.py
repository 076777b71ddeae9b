"""Tickets in the store: rows <-> the core's facts, optimistic updates, history, queries.

The rules are the core's (``engine/tickets.py``); this module only keeps the facts.
Every change goes through ``change``: it bumps ``version`` with a conditional UPDATE
(``WHERE version = <the one the writer read>``), so of two writers holding the same
version exactly one wins and the other gets ``TicketConflict`` with nothing written;
the same statement serialises the escalation watcher with people editing the ticket.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from callflow.engine import tickets as core
from callflow.errors import CallflowError
from callflow.store.models import (
    Customer,
    CustomerNumber,
    TaskAttempt,
    Ticket,
    TicketDailyCheck,
    TicketHistory,
    User,
)
from callflow.store.repo import audit

#: The facts the core reads and may change (the rest of a row is text and links).
FACTS = ("type", "status", "priority", "opened_at", "replied_at", "handled_at",
         "followed_up_at", "resolved_at", "test_since", "promised_at", "escalation_level",
         "customer_class")


class TicketConflict(CallflowError):
    """The ticket changed since the writer read it (their version is stale)."""

    def __init__(self, ticket_id: int, expected: int, current: int) -> None:
        super().__init__(f"ticket {ticket_id} is at version {current}, not {expected}: "
                         "read it again and repeat the change")
        self.current = current


def facts(row: Ticket) -> core.Ticket:
    """The core's view of a stored ticket."""
    return core.Ticket(**{name: getattr(row, name) for name in FACTS})


def create(s: Session, /, ticket: core.Ticket, *, actor: str, owner_kind: str, owner_id: str,
           number_of: Callable[[int], str], note: str = "", **links: Any) -> Ticket:
    """Insert a ticket (its number needs its id, STD-129) and its first history row."""
    row = Ticket(number=f"pending-{uuid.uuid4().hex}",
                 owner_kind=owner_kind, owner_id=owner_id, created_by=actor, version=1,
                 **{name: getattr(ticket, name) for name in FACTS},
                 **links)
    s.add(row)
    s.flush()
    row.number = number_of(row.id)
    s.add(TicketHistory(ticket_id=row.id, at=ticket.opened_at, actor=actor, action="created",
                        from_status=None, to_status=ticket.status, note=note,
                        detail={"type": ticket.type, "priority": ticket.priority}))
    s.flush()
    return row


def get(s: Session, ticket_id: int) -> Ticket | None:
    return s.get(Ticket, ticket_id)


def change(s: Session, /, ticket_id: int, expected_version: int, at: datetime, actor: str,
           action: str, new: core.Ticket | None = None, *, note: str = "",
           detail: dict[str, Any] | None = None, **fields: Any) -> Ticket:
    """Apply the core's new facts (and plain ``fields``) if the ticket is still at
    ``expected_version``; one history row says who did what. ``TicketConflict`` else."""
    bumped = s.execute(update(Ticket)
                       .where(Ticket.id == ticket_id, Ticket.version == expected_version)
                       .values(version=expected_version + 1)
                       .execution_options(synchronize_session=False))
    if getattr(bumped, "rowcount", 0) != 1:
        current = s.execute(select(Ticket.version).where(Ticket.id == ticket_id)).scalar()
        if current is None:
            raise CallflowError(f"no ticket {ticket_id}")
        raise TicketConflict(ticket_id, expected_version, current)
    row = s.get(Ticket, ticket_id, populate_existing=True)
    assert row is not None
    before = row.status
    if new is not None:
        for name in FACTS:
            setattr(row, name, getattr(new, name))
    for name, value in fields.items():
        setattr(row, name, value)
    s.add(TicketHistory(ticket_id=ticket_id, at=at, actor=actor, action=action,
                        from_status=before, to_status=row.status, note=note,
                        detail=detail or {}))
    s.flush()
    return row


def history(s: Session, ticket_id: int) -> list[TicketHistory]:
    return list(s.scalars(select(TicketHistory).where(TicketHistory.ticket_id == ticket_id)
                          .order_by(TicketHistory.at, TicketHistory.id)))


def visible(s: Session, *, agent_id: str | None, team: str | None, status: str | None = None,
            limit: int = 200, lead: str | None = None) -> list[Ticket]:
    """Tickets newest first; ``agent_id`` set: only the agent's own (owned, taken on their
    call or created by them) and their team's; ``lead`` set (a shift lead's login): their
    team's and those escalated to them; neither: all (supervisors, managers)."""
    query = select(Ticket)
    if lead is not None:
        theirs = [Ticket.escalated_to == lead]
        if team:
            theirs.append(Ticket.team == team)
        query = query.where(or_(*theirs))
    elif agent_id is not None:
        mine = [Ticket.owner_id == agent_id, Ticket.agent_id == agent_id,
                Ticket.created_by == agent_id]
        if team:
            mine.append(Ticket.team == team)
        query = query.where(or_(*mine))
    if status is not None:
        query = query.where(Ticket.status == status)
    return list(s.scalars(query.order_by(Ticket.opened_at.desc(), Ticket.id.desc())
                          .limit(limit)))


def not_closed(s: Session) -> list[Ticket]:
    """Every ticket still in hand (the watcher's and the backlog's set)."""
    return list(s.scalars(select(Ticket).where(Ticket.status != "closed")))


def logged_between(s: Session, start: datetime, end: datetime) -> list[Ticket]:
    return list(s.scalars(select(Ticket).where(Ticket.opened_at >= start,
                                               Ticket.opened_at < end)))


def link_recording(s: Session, call_uniqueid: str, recording_id: int) -> int:
    """Fill ``recording_id`` of the tickets opened from this call that have none yet (the
    recording is written when the call ends, after the ticket). Idempotent: a second
    report of the same recording changes nothing. A link, not a fact the editors change,
    so the version stays (no one's open form turns stale)."""
    done = s.execute(update(Ticket)
                     .where(Ticket.call_uniqueid == call_uniqueid,
                            Ticket.recording_id.is_(None))
                     .values(recording_id=recording_id)
                     .execution_options(synchronize_session=False))
    return int(getattr(done, "rowcount", 0) or 0)


def of_caller(s: Session, number: str, *, limit: int = 200) -> list[Ticket]:
    """A caller's tickets still in hand, newest first (the repeat-caller view, STD-073)."""
    return list(s.scalars(select(Ticket).where(Ticket.caller_number == number,
                                               Ticket.status != "closed")
                          .order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(limit)))


_ATTEMPTS: Table = cast(Table, TaskAttempt.__table__)
_TASKS_OF_CALL = select(_ATTEMPTS.c.task_id).where(_ATTEMPTS.c.call_uniqueid == bindparam("call"))


def tasks_of_call(s: Session, call_id: str) -> list[int]:
    """The callback tasks a call was an attempt of: asked at every wrap-up (STD-134), most
    often of an inbound call, which has none; one prepared statement (issue 20)."""
    return list(s.connection().execute(_TASKS_OF_CALL, {"call": call_id}).scalars())


def awaiting_followup(s: Session, task_id: int) -> list[Ticket]:
    """The tickets whose follow-up call is this outbound task (STD-134)."""
    return list(s.scalars(select(Ticket).where(Ticket.followup_task_id == task_id,
                                               Ticket.status == "awaiting_confirmation")))
def customer_class_of(s: Session, number: str) -> str | None:
    """The class of the customer who calls from ``number`` (None: no such customer)."""
    if not number:
        return None
    found = s.execute(select(Customer.customer_class).join(
        CustomerNumber, CustomerNumber.customer_id == Customer.id)
        .where(CustomerNumber.number == number)).scalar()
    return None if found is None else str(found)


def customer_class_view(customer: Customer, numbers: list[str]) -> dict[str, Any]:
    """What the class form shows of a customer: the header (never personal fields,
    STD-078), their numbers and class."""
    return {"customer_id": customer.id, "surname": customer.surname, "title": customer.title,
            "numbers": numbers, "customer_class": customer.customer_class}


def _numbers_of(s: Session, customer_id: int) -> list[str]:
    return list(s.scalars(select(CustomerNumber.number)
                          .where(CustomerNumber.customer_id == customer_id)
                          .order_by(CustomerNumber.number)))


def customer_by_number(s: Session, number: str) -> dict[str, Any] | None:
    """The customer who calls from ``number``, as the class form shows them (or None)."""
    link = s.get(CustomerNumber, number)
    customer = None if link is None else s.get(Customer, link.customer_id)
    return None if customer is None else customer_class_view(
        customer, _numbers_of(s, customer.id))


def set_customer_class(s: Session, customer_id: int, actor: str, at: datetime,
                       decide: Callable[[str], str]) -> tuple[str, dict[str, Any]] | None:
    """Give a customer the class ``decide(old class)`` returns (the core's rule; it raises
    on a class the Policy does not list); None if no such customer. The row is locked for
    the change, and the change is audited as ``customer.class`` with who, old and new
    (STD-079). Tickets keep their own stored class: their clocks do not move."""
    customer = s.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        return None
    old = customer.customer_class
    new = decide(old)
    if new != old:
        customer.customer_class = new
        customer.updated_at, customer.updated_by = at, actor
        s.flush()
    audit(s, actor, "customer.class", at, target=f"customer:{customer.id}",
          detail={"old": old, "new": new})
    return old, customer_class_view(customer, _numbers_of(s, customer.id))


def escalation_people(s: Session) -> list[core.Person]:
    """The active logins whose role is one of the escalation chain's levels."""
    rows = s.scalars(select(User).where(User.active.is_(True),
                                        User.role.in_(("shift_lead", "department_manager"))))
    return [core.Person(u.username, u.role, u.team) for u in rows]


def checked_days(s: Session, since: date) -> set[date]:
    """The days from ``since`` whose daily check was made."""
    return set(s.scalars(select(TicketDailyCheck.day).where(TicketDailyCheck.day >= since)))


def record_daily_check(s: Session, day: date, at: datetime, detail: dict[str, Any]) -> bool:
    """Record ``day``'s check; False when it was already recorded (another engine, or
    this one before a restart): the caller then announces nothing. Two engines racing
    on PostgreSQL: the primary key refuses the second insert, its pass fails and the
    next pass finds the day recorded."""
    if s.get(TicketDailyCheck, day) is not None:
        return False
    s.add(TicketDailyCheck(day=day, at=at, detail=detail))
    s.flush()
    return True


def daily_check(s: Session, day: date | None = None) -> TicketDailyCheck | None:
    """The check of ``day``, or the latest one made."""
    if day is not None:
        return s.get(TicketDailyCheck, day)
    return s.scalars(select(TicketDailyCheck).order_by(TicketDailyCheck.day.desc())
                     .limit(1)).first()
