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

Each step is an ``Alarm`` (the board's alarms pipeline, STD-147: overdue tickets reach
the board at once), a ``Notice`` to the owning agent's websocket topic when an agent owns
the ticket, and a history row (STD-125: chasing leaves a trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
WATCHER = "escalation-watcher"
SUMMARY_CHARS = 80  # the backlog shows the start of the description (text, never markup)


@dataclass
class Sweep:
    """What one pass of the watcher recorded (announced afterwards on the loop)."""

    events: list[DomainEvent] = field(default_factory=list)
    backlog: dict[str, Any] = field(default_factory=dict)


def backlog_of(rows: list[tuple[TicketRow, core.Ticket]], now: datetime,
               policy: Policy) -> dict[str, Any]:
    """The board's ticket backlog (STD-145): open tickets by type and priority, the
    overdue ones to chase, due next first."""
    by_type: Counter[str] = Counter()
    by_priority: Counter[str] = Counter()
    items = []
    for row, facts in rows:
        by_type[facts.type] += 1
        by_priority[facts.priority] += 1
        late = core.overdue(facts, now, policy)
        due = core.next_due(facts, policy)
        items.append({"id": row.id, "number": row.number, "type": facts.type,
                      "priority": facts.priority, "status": facts.status,
                      "owner": row.owner_id, "escalation_level": facts.escalation_level,
                      "summary": row.description[:SUMMARY_CHARS],
                      "due_at": due.astimezone(UTC).isoformat() if due else None,
                      "overdue": [c.name for c in late]})
    items.sort(key=lambda i: (not i["overdue"], i["due_at"] or "9999"))
    return {"open": len(rows), "by_type": dict(by_type), "by_priority": dict(by_priority),
            "overdue": sum(1 for i in items if i["overdue"]),
            "items": items[:50], "as_of": now.astimezone(UTC).isoformat()}


def sweep(store: Store, now: datetime, policy: Policy) -> Sweep:
    """One pass: record every due step and lapsed test; return what to announce."""
    out = Sweep()
    rows = store.read(store_tickets.not_closed)
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
            detail = {"ticket_id": row.id, "number": row.number, "ticket_type": facts.type,
                      "level": step.level, "role": step.role, "reason": step.reason,
                      "owner": row.owner_id, "due_at": step.at.astimezone(UTC).isoformat()}
            try:
                row = store.run(store_tickets.change, row.id, row.version, now, WATCHER,
                                "escalated", core.escalated(facts, step),
                                note=f"escalated to {step.role}", detail=detail)
            except store_tickets.TicketConflict:
                break
            facts = store_tickets.facts(row)
            out.events.append(Alarm(ESCALATION_ALARM, detail, std="STD-125"))
            if row.owner_kind == "agent":
                out.events.append(Notice(ESCALATION_ALARM, row.owner_id, detail,
                                         std="STD-125"))
    still = [(r, store_tickets.facts(r)) for r in store.read(store_tickets.not_closed)]
    out.backlog = backlog_of(still, now, policy)
    return out


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
        from callflow.tickets.desk import desk_router
        from callflow.tickets.routes import tickets_router
        return [desk_router(self), tickets_router(self)]

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

    async def _watch(self) -> None:
        while True:
            try:
                await self.check_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be down: try again at the next pass
                log.exception("tickets: the escalation check failed")
            await asyncio.sleep(self.service.policy.tickets.check_interval_s)
