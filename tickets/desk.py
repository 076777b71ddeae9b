"""Tickets on the agent desktop (issue 19): the repeat-caller view and the follow-up close.

* ``GET /api/v1/tickets/caller/{call_id}`` — the repeat-caller view (STD-073) of a call:
  the caller's open tickets and recent calls, chosen and bounded by the core
  (``engine/repeat_caller.py select_view``). The desktop fetches it with its session
  token when a call rings. An agent may ask only about a call offered to, or taken by,
  them; supervisors, QA and admins about any. Numbers are masked per the existing rules
  (``api/privacy.py``, STD-078); a recording id comes only to the roles that may play
  recordings, and playing goes through the recordings API, which audits every access.
* ``GET /api/v1/tickets/form`` — what the desktop's ticket form offers: the types,
  priorities, owner kinds and statuses, the agent's team, the centre's time zone (the
  deadlines are shown in it), the longest text, and whether this role may play recordings.
* The follow-up close (STD-134): when an agent hands in the wrap-up form of a call that
  was a ticket's follow-up task, the core (``engine/ticket_followup.py``) says whether the
  disposition confirms the ticket (closed) or keeps it waiting (a history row).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from callflow.api.auth import Principal
from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.api.privacy import RECORDING_ROLES, redaction_for
from callflow.engine import repeat_caller as rc
from callflow.engine import ticket_followup
from callflow.engine import tickets as core
from callflow.engine.policy import TICKET_TYPES, Policy
from callflow.errors import CallflowError
from callflow.store import repo
from callflow.store import tickets as store_tickets
from callflow.store.db import Store
from callflow.store.models import Agent, Call, Recording
from callflow.store.models import Ticket as TicketRow
from callflow.tickets.routes import ALL_ROLES, SEE_ALL

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from callflow.feature import FeatureServices
    from callflow.tickets.feature import TicketsFeature

log = logging.getLogger(__name__)
MAX_CALL_ID = 100
READ_LIMIT = 200  # rows read before the core's selection (the Policy bounds what is shown)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def agent_of(principal: Principal) -> str | None:
    for topic in principal.topics or ():
        if topic.startswith("agent:"):
            return topic.split(":", 1)[1]
    return None


def read_view_facts(s: Session, number: str, since: datetime, policy: Policy,
                    now: datetime) -> tuple[list[rc.TicketLine], list[rc.CallLine]]:
    """The rows of a caller's view, as the core's plain facts (one read transaction)."""
    tickets = []
    for row in store_tickets.of_caller(s, number, limit=READ_LIMIT):
        facts = store_tickets.facts(row)
        rec_id = row.recording_id
        if rec_id is None and row.call_uniqueid:
            rec = repo.recording_for_call(s, row.call_uniqueid)
            rec_id = rec.id if rec is not None else None
        tickets.append(rc.TicketLine(
            id=row.id, number=row.number, type=row.type, status=row.status,
            priority=row.priority, opened_at=_utc(row.opened_at), owner_id=row.owner_id,
            agent_id=row.agent_id, created_by=row.created_by, team=row.team,
            due_at=core.next_due(facts, policy),
            overdue=bool(core.overdue(facts, now, policy)), recording_id=rec_id))
    calls = repo.calls_from_number(s, number, since=since, limit=READ_LIMIT)
    recs = {r.call_uniqueid: r.id for r in s.scalars(
        select(Recording).where(Recording.call_uniqueid.in_([c.uniqueid for c in calls])))}
    lines = [rc.CallLine(call_id=c.uniqueid, entered_at=_utc(c.entered_at),
                         agent_id=c.agent_id, outcome=c.outcome, disposition=c.disposition,
                         recording_id=recs.get(c.uniqueid))
             for c in calls if c.entered_at is not None]
    return tickets, lines


def view_json(view: rc.View, number: str, call_id: str) -> dict[str, Any]:
    return {
        "call_id": call_id, "caller_number": number,
        "tickets": [{"id": t.id, "number": t.number, "type": t.type, "status": t.status,
                     "priority": t.priority, "opened_at": _iso(t.opened_at),
                     "due_at": _iso(t.due_at), "overdue": t.overdue,
                     "recording_id": t.recording_id} for t in view.tickets],
        "calls": [{"call_id": c.call_id, "entered_at": _iso(c.entered_at),
                   "agent_id": c.agent_id, "outcome": c.outcome,
                   "disposition": c.disposition, "recording_id": c.recording_id}
                  for c in view.calls],
        "more_tickets": view.more_tickets, "more_calls": view.more_calls,
    }


def desk_router(feature: TicketsFeature) -> APIRouter:
    router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

    def service() -> FeatureServices:
        try:
            return feature.service
        except CallflowError:
            raise api_error(503, "not_ready", "the service is starting") from None

    @router.get("/form", summary="What the desktop's ticket form offers (types, owners)")
    def form(request: Request) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        svc = service()
        me = agent_of(principal)
        return {"types": list(TICKET_TYPES), "priorities": list(core.PRIORITIES),
                "owner_kinds": list(core.OWNER_KINDS), "statuses": list(core.STATUSES),
                "agent_id": me, "team": _team(svc.store, me),
                "timezone": svc.policy.calendar.timezone,
                "text_max_chars": svc.policy.tickets.text_max_chars,
                "may_play_recordings": principal.role in RECORDING_ROLES}

    @router.get("/caller/{call_id}",
                summary="The repeat-caller view of a call: open tickets, recent calls")
    def repeat_caller_view(request: Request, call_id: str) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        if not call_id or len(call_id) > MAX_CALL_ID or not all(
                ch.isalnum() or ch in ".-_" for ch in call_id):
            raise api_error(422, "bad_call_id", "a call id is Asterisk's uniqueid")
        svc = service()
        me = agent_of(principal)
        live = svc.runtime.calls.get(call_id)
        stored: Call | None = svc.store.read(repo.get_call, call_id)
        if live is None and stored is None:
            raise api_error(404, "no_call", f"no call {call_id!r}")
        if principal.role not in SEE_ALL:
            theirs: set[str | None] = set()
            if live is not None:
                theirs.update(o.agent_id for o in live.offers)
                theirs.add(live.agent_id)
            if stored is not None:
                theirs.add(stored.agent_id)
            if not may_view(svc.store, principal, me, theirs):
                # nobody learns anything about calls outside their reach
                raise api_error(404, "no_call", f"no call {call_id!r}")
        number = live.caller if live is not None else (stored.caller_number or "") \
            if stored is not None else ""
        policy = svc.policy
        now = svc.clock.wall().astimezone(UTC)
        team = principal.team if principal.role == "shift_lead" else _team(svc.store, me)
        viewer = rc.Viewer(role=principal.role, agent_id=me, team=team,
                           sees_all=principal.role in SEE_ALL,
                           may_play=principal.role in RECORDING_ROLES)
        if not number:  # a withheld number has no history to show
            return view_json(rc.View((), ()), "", call_id)
        since = now - timedelta(days=policy.routing.repeat_caller_lookback_days)
        tickets, calls = svc.store.read(read_view_facts, number, since, policy, now)
        view = rc.select_view(tickets, calls, now=now, current_call=call_id,
                              viewer=viewer, policy=policy)
        out = view_json(view, number, call_id)
        # a caller's history is personal data: who read it, for which call, is kept
        svc.store.run(repo.audit, principal.name, "caller_history.read", now,
                      target=call_id, detail={"role": principal.role,
                                              "tickets": len(view.tickets),
                                              "calls": len(view.calls)})
        redact = redaction_for(principal)
        return redact(out) if redact is not None else out

    return router


def may_view(store: Store, principal: Principal, me: str | None,
             theirs: set[str | None]) -> bool:
    """An agent sees the calls offered to them; a shift lead the calls of their team's
    agents (STD-148). Roles in ``SEE_ALL`` are not asked."""
    if principal.role == "shift_lead":
        return principal.team is not None and any(
            _team(store, agent_id) == principal.team for agent_id in theirs if agent_id)
    return me is not None and me in theirs


def _team(store: Store, agent_id: str | None) -> str | None:
    if agent_id is None:
        return None
    agent: Agent | None = store.read(lambda s: s.get(Agent, agent_id))
    return agent.team if agent is not None else None


def close_by_followup(store: Store, call_id: str, agent_id: str, disposition: str,
                      now: datetime, policy: Policy) -> list[TicketRow]:
    """STD-134: the wrap-up of a ticket's follow-up call confirms and closes the ticket,
    or keeps it waiting with a history row. Runs in a worker thread; returns the tickets
    it changed (empty when the call was no ticket's follow-up)."""
    changed = []
    for task_id in store.read(store_tickets.tasks_of_call, call_id):
        for row in store.read(store_tickets.awaiting_followup, task_id):
            answer = ticket_followup.answer_of_followup(store_tickets.facts(row), disposition,
                                                        now, policy)
            if answer is None:
                continue
            fields = {"closed_at": now} if answer.closed else {}
            try:
                changed.append(store.run(
                    store_tickets.change, row.id, row.version, now, agent_id, answer.action,
                    answer.ticket, note=answer.note,
                    detail={"call_id": call_id, "disposition": disposition,
                            "task_id": task_id}, **fields))
            except store_tickets.TicketConflict:
                log.warning("ticket %s changed while its follow-up was wrapped up; the "
                            "disposition %s was not applied", row.id, disposition)
    return changed
