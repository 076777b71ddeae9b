"""The tickets feature: the REST API, the escalation watcher and the board's backlog.

The watcher wakes every ``tickets.check_interval_s``, reads the tickets still in hand
from the store (in a worker thread: the loop never waits on the database), asks the core
which escalation steps are due (``engine/tickets.py escalations_due``) and which customer
tests have lapsed (STD-127), and records each step in the store *before* telling anyone:
the level is bumped with the optimistic lock, so a step is announced only by the engine
that recorded it, and an engine that restarts reads the level back and announces no step
twice. (A crash between the record and the announcement loses that one announcement; the
ticket's history and the backlog's escalation column still show it: at most once, never
twice, on purpose.)

Each step is assigned to a person of the step's role (``engine/tickets.py assignee``:
the shift lead of the ticket's team, then the department manager; ``tickets.escalated_to``)
and is an ``Alarm`` (the board's alarms pipeline, STD-147: overdue tickets reach the
board at once), a ``ticket_escalated`` frame on that person's topic ``user:<login>``, a
``Notice`` to the owning agent's websocket topic when an agent owns the ticket, and a
history row (STD-125: chasing leaves a trace).

The daily check (STD-125, STD-136) is made the same way: on each working day at
``tickets.daily_check_at`` the watcher lists the open tickets overdue, due today,
unassigned or open too long (``daily_check_list``), stores the list under the day
(``ticket_daily_checks``: at most one per day, so a restart repeats nothing) and only
then raises it as the board alarm ``ticket_daily_check``; ``GET
/api/v1/tickets/daily-check`` serves the stored list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from callflow.agents.changes import WrapupSubmitted
from callflow.engine import tickets as core
from callflow.engine.effects import Alarm, DomainEvent, Notice
from callflow.feature import AgiRoute, FeatureBase, FeatureServices
from callflow.store import tickets as store_tickets
from callflow.store.db import Store
from callflow.store.models import Ticket as TicketRow

if TYPE_CHECKING:
    from fastapi import APIRouter

    from callflow.engine.policy import Policy

log = logging.getLogger(__name__)
ESCALATION_ALARM = "ticket_escalated"
DAILY_CHECK_ALARM = "ticket_daily_check"
WATCHER = "escalation-watcher"
SUMMARY_CHARS = 80  # the backlog shows the start of the description (text, never markup)


@dataclass
class Sweep:
    """What one pass of the watcher recorded (announced afterwards on the loop)."""

    events: list[DomainEvent] = field(default_factory=list)
    backlog: dict[str, Any] = field(default_factory=dict)
    #: frames for one person's topic (``user:<login>``), published after the events
    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def user_topic(username: str) -> str:
    """The topic of one login (a shift lead, a manager): their escalations."""
    return f"user:{username}"


def backlog_of(rows: list[tuple[TicketRow, core.Ticket]], now: datetime,
               policy: Policy) -> dict[str, Any]:
    """The board's ticket backlog (STD-145): open tickets by type and priority, the
    overdue ones to chase, due next first."""
    by_type: Counter[str] = Counter()
    by_priority: Counter[str] = Counter()
    by_team: dict[str, dict[str, int]] = {}
    items = []
    for row, facts in rows:
        by_type[facts.type] += 1
        by_priority[facts.priority] += 1
        late = core.overdue(facts, now, policy)
        due = core.next_due(facts, policy)
        team = by_team.setdefault(row.team or "", {"open": 0, "overdue": 0})
        team["open"] += 1
        team["overdue"] += 1 if late else 0
        items.append({"id": row.id, "number": row.number, "type": facts.type,
                      "priority": facts.priority, "status": facts.status,
                      "owner": row.owner_id, "escalation_level": facts.escalation_level,
                      "team": row.team, "escalated_to": row.escalated_to,
                      "customer_class": facts.customer_class,
                      "summary": row.description[:SUMMARY_CHARS],
                      "due_at": due.astimezone(UTC).isoformat() if due else None,
                      "overdue": [c.name for c in late]})
    items.sort(key=lambda i: (not i["overdue"], i["due_at"] or "9999"))
    return {"open": len(rows), "by_type": dict(by_type), "by_priority": dict(by_priority),
            "by_team": by_team,
            "overdue": sum(1 for i in items if i["overdue"]),
            "items": items[:50], "as_of": now.astimezone(UTC).isoformat()}


def sweep(store: Store, now: datetime, policy: Policy) -> Sweep:
    """One pass: record every due step and lapsed test; return what to announce."""
    out = Sweep()
    rows = store.read(store_tickets.not_closed)
    people = store.read(store_tickets.escalation_people)
    for row in rows:
        facts = store_tickets.facts(row)
        if core.test_lapsed(facts, now, policy):
            try:
                row = store.run(store_tickets.change, row.id, row.version, now, WATCHER,
                                "test_lapsed", core.move(facts, "resolved", now),
                                note="no test result in time: counts as solved (STD-127)")
            except store_tickets.TicketConflict:
                continue  # someone changed it: the next pass sees their version
            facts = store_tickets.facts(row)
        for step in core.escalations_due(facts, now, policy):
            to = core.assignee(step, row.team, people)
            detail = {"ticket_id": row.id, "number": row.number, "ticket_type": facts.type,
                      "level": step.level, "role": step.role, "reason": step.reason,
                      "owner": row.owner_id, "team": row.team, "to": to,
                      "due_at": step.at.astimezone(UTC).isoformat()}
            try:
                row = store.run(store_tickets.change, row.id, row.version, now, WATCHER,
                                "escalated", core.escalated(facts, step),
                                note=f"escalated to {step.role}" + (f" {to}" if to else ""),
                                detail=detail, escalated_to=to)
            except store_tickets.TicketConflict:
                break
            facts = store_tickets.facts(row)
            out.events.append(Alarm(ESCALATION_ALARM, detail, std="STD-125"))
            if to is not None:
                out.frames.append((user_topic(to), {"type": ESCALATION_ALARM,
                                                    "std": "STD-125", **detail}))
            if row.owner_kind == "agent":
                out.events.append(Notice(ESCALATION_ALARM, row.owner_id, detail,
                                         std="STD-125"))
    still = [(r, store_tickets.facts(r)) for r in store.read(store_tickets.not_closed)]
    out.backlog = backlog_of(still, now, policy)
    daily_check(store, still, now, policy, out)
    return out


def daily_check(store: Store, rows: list[tuple[TicketRow, core.Ticket]], now: datetime,
                policy: Policy, out: Sweep) -> None:
    """Make today's daily check if it is due and not yet recorded (STD-125, STD-136)."""
    done = store.read(store_tickets.checked_days, (now - timedelta(days=15)).date())
    day = core.daily_check_due(now, done, policy)
    if day is None:
        return
    items = core.daily_check_list(
        [(r.id, r.number, r.team, r.owner_kind == "agent" or r.escalated_to is not None, f)
         for r, f in rows], now, policy)
    detail = {"day": day.isoformat(), "count": len(items),
              "overdue": sum(1 for i in items if "overdue" in i.reasons),
              "due_today": sum(1 for i in items if "due_today" in i.reasons),
              "unassigned": sum(1 for i in items if "unassigned" in i.reasons),
              "open_long": sum(1 for i in items if "open_long" in i.reasons),
              "items": [{"ticket_id": i.ticket_id, "number": i.number, "team": i.team,
                         "reasons": list(i.reasons),
                         "due_at": i.due_at.astimezone(UTC).isoformat() if i.due_at else None}
                        for i in items]}
    # an empty list is recorded (the day is checked) but raises no alarm: nothing to chase
    if store.run(store_tickets.record_daily_check, day, now, detail) and items:
        summary = {k: v for k, v in detail.items() if k != "items"}
        out.events.append(Alarm(DAILY_CHECK_ALARM, summary, std="STD-125"))


class TicketsFeature(FeatureBase):
    """Tickets over REST, their escalation and the board's backlog."""

    name = "tickets"

    def __init__(self) -> None:
        self._service: FeatureServices | None = None
        self._task: asyncio.Task[None] | None = None
        self.backlog: dict[str, Any] = {"open": 0, "by_type": {}, "by_priority": {},
                                        "overdue": 0, "items": []}
        self._pending: set[asyncio.Task[None]] = set()
        self.announced: list[DomainEvent] = []  # what this engine announced (diagnostics)

    async def start(self, services: FeatureServices) -> None:
        self._service = services
        services.runtime.extend_snapshot("tickets", self._snapshot_part)
        services.runtime.on_event(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def routers(self) -> list[APIRouter]:
        from callflow.tickets.customer_class import customer_class_router
        from callflow.tickets.desk import desk_router
        from callflow.tickets.routes import tickets_router
        return [desk_router(self), tickets_router(self), customer_class_router(self)]

    def agi_routes(self) -> dict[str, AgiRoute]:
        return {}

    def _on_event(self, event: DomainEvent) -> None:
        """STD-134: the wrap-up of a follow-up call may confirm its ticket (tickets/desk.py)."""
        if not isinstance(event, WrapupSubmitted):
            return
        task = asyncio.get_running_loop().create_task(self._followup_wrapped(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _followup_wrapped(self, event: WrapupSubmitted) -> None:
        from callflow.tickets.desk import close_by_followup
        service = self.service
        try:
            changed = await asyncio.to_thread(close_by_followup, service.store, event.call_id,
                                              event.agent_id, event.disposition, self.now(),
                                              service.policy)
        except Exception:  # the store may be down: the ticket stays awaiting confirmation
            log.exception("tickets: the follow-up wrap-up of %s was not applied",
                          event.call_id)
            return
        if changed:
            await self.check_now()

    def _snapshot_part(self, may_see: Any) -> dict[str, Any]:
        """``state.tickets``: the backlog, for those who may see the board (STD-145)."""
        return self.backlog if may_see("board") else {}

    def now(self) -> datetime:
        return self.service.clock.wall().astimezone(UTC)

    async def check_now(self) -> None:
        """One pass of the watcher (also after a change made over the API)."""
        service = self.service
        done = await asyncio.to_thread(sweep, service.store, self.now(), service.policy)
        self.backlog = done.backlog
        if done.events:
            self.announced.extend(done.events)
            service.runtime.execute(done.events)
        for topic, payload in done.frames:
            service.hub.publish(topic, payload)

    async def _watch(self) -> None:
        while True:
            try:
                await self.check_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be down: try again at the next pass
                log.exception("tickets: the escalation check failed")
            await asyncio.sleep(self.service.policy.tickets.check_interval_s)
