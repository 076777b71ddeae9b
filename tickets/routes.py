"""Tickets over HTTP (issue 19). Every body is untrusted: checked, bounded, one clear error.

Routes under ``/api/v1/tickets`` (a session of any role; agents see and change only their
own tickets, those taken on their calls, and their team's; a shift lead their team's and
those escalated to them; supervisors, QA, admins and department managers all):

* ``GET ""`` ``?status&limit<=500`` — newest first
* ``POST ""`` ``{"type", "description", "priority"?, "call_id"?, "caller_number"?,
  "customer_name"?, "owner_kind"?, "owner_id"?, "promised_at"?, "customer_class"?}`` —
  from a call
  (``call_id``: links the call, its caller's number, its agent and, once written, its
  recording) or free. 422 ``unknown_type`` lists the types; ``promised_at`` in the past,
  texts over ``tickets.text_max_chars`` and unknown fields are 422 too; the customer
  class (its deadlines, STD-123) is the body's, else the caller's customer record's,
  else ``tickets.default_customer_class``; a class not in the table is 422
* ``GET /daily-check?day=`` — the stored daily check (STD-125, STD-136)
* ``GET /backlog`` — the open tickets by type, priority and overdue (supervisors)
* ``GET /kpis?day=YYYY-MM-DD`` — timeliness, reply rate, complaint rate, follow-up
  coverage of the tickets logged that day (supervisors)
* ``GET /{id}`` — the ticket, its clocks, its next escalation and its history
* ``PATCH /{id}`` ``{"version", "status"?, "note"?, "replied"?, "followed_up"?,
  "priority"?}`` — 409 ``conflict`` when ``version`` is not the stored one
* ``POST /{id}/close`` ``{"version", "note"?}`` — a complaint waits for the customer's
  confirmation and gets a follow-up call (an outbound ``follow_up`` task, STD-134)
* ``POST /{id}/confirm`` ``{"version", "satisfied", "note"?}`` — the customer's answer

Descriptions and notes are kept as the text they are (HTML included) and returned as
JSON strings; every page shows them with ``textContent``, never as markup.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Request

from callflow.api.auth import Principal
from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.engine import kpi
from callflow.engine import outbound as outbound_rules
from callflow.engine import tickets as core
from callflow.engine.policy import TICKET_TYPES, Policy
from callflow.errors import CallflowError
from callflow.store import repo
from callflow.store import tickets as store_tickets
from callflow.store.models import Agent, Call
from callflow.store.models import Ticket as TicketRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from callflow.feature import FeatureServices
    from callflow.tickets.feature import TicketsFeature

ALL_ROLES = ("agent", "supervisor", "qa", "admin", "shift_lead", "department_manager")
#: STD-148: the department manager coordinates every department's tickets (STD-125)
SEE_ALL = ("supervisor", "qa", "admin", "department_manager")
#: the board's ticket views: who sees all, and the shift lead (their team on the board)
BOARD_ROLES = (*SEE_ALL, "shift_lead")
MAX_LIMIT = 500
MAX_INT = 2**31 - 1  # ids and versions are SQL integers
SHORT_MAX = 100  # names, numbers, ids
CREATE_FIELDS = frozenset({"type", "description", "priority", "call_id", "caller_number",
                           "customer_name", "owner_kind", "owner_id", "promised_at",
                           "customer_class"})
#: Any JSON (None when absent): the routes check its shape themselves, with one clear error.
JSON_BODY = Body(default=None)
PATCH_FIELDS = frozenset({"version", "status", "note", "replied", "followed_up", "priority"})


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def agent_of(principal: Principal) -> str | None:
    """The work number of an agent's session (their one topic ``agent:<id>``)."""
    for topic in principal.topics or ():
        if topic.startswith("agent:"):
            return topic.split(":", 1)[1]
    return None


def view(row: TicketRow, policy: Policy, now: datetime,
         recording_id: int | None = None) -> dict[str, Any]:
    facts = store_tickets.facts(row)
    nxt = core.next_escalation(facts, policy)
    return {
        "id": row.id, "number": row.number, "type": row.type, "priority": row.priority,
        "status": row.status, "owner_kind": row.owner_kind, "owner_id": row.owner_id,
        "team": row.team, "created_by": row.created_by, "version": row.version,
        "call_id": row.call_uniqueid, "caller_number": row.caller_number,
        "agent_id": row.agent_id, "recording_id": row.recording_id or recording_id,
        "customer_name": row.customer_name, "description": row.description,
        "opened_at": _iso(row.opened_at), "replied_at": _iso(row.replied_at),
        "followed_up_at": _iso(row.followed_up_at), "resolved_at": _iso(row.resolved_at),
        "closed_at": _iso(row.closed_at), "promised_at": _iso(row.promised_at),
        "escalation_level": row.escalation_level, "followup_task_id": row.followup_task_id,
        "escalated_to": row.escalated_to, "customer_class": row.customer_class,
        "clocks": [{"name": c.name, "due_at": _iso(c.due_at), "std": c.std,
                    "met_at": _iso(core.met_at(facts, c))} for c in core.clocks(facts, policy)],
        "next_due": _iso(core.next_due(facts, policy)),
        "overdue": [c.name for c in core.overdue(facts, now, policy)],
        "next_escalation": _iso(nxt),
    }


def tickets_router(feature: TicketsFeature) -> APIRouter:
    router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

    def service() -> FeatureServices:
        try:
            return feature.service
        except CallflowError:
            raise api_error(503, "not_ready", "the service is starting") from None

    def now() -> datetime:
        return service().clock.wall().astimezone(UTC)

    def policy() -> Policy:
        return service().policy

    def body_of(raw: Any, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise api_error(422, "bad_body", "the body must be a JSON object")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise api_error(422, "unknown_field", f"unknown fields {unknown}; allowed: "
                            f"{', '.join(sorted(allowed))}")
        return raw

    def text(raw: Any, name: str, limit: int, *, required: bool = False) -> str:
        if raw is None and not required:
            return ""
        if not isinstance(raw, str) or (required and not raw.strip()):
            raise api_error(422, f"bad_{name}", f"{name} must be a non-empty string"
                            if required else f"{name} must be a string")
        if not core.text_fits(raw, policy()):
            raise api_error(422, f"{name}_too_long",
                            f"{name} has {len(raw)} characters; at most {limit}")
        if "\x00" in raw:
            raise api_error(422, f"bad_{name}", f"{name} holds a NUL character")
        return raw

    def choice(raw: Any, name: str, values: tuple[str, ...], default: str) -> str:
        if raw is None:
            return default
        if raw not in values:
            raise api_error(422, f"unknown_{name}", f"{name} {raw!r} is not one of: "
                            f"{', '.join(values)}")
        return str(raw)

    def version_of(body: dict[str, Any]) -> int:
        value = body.get("version")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_INT:
            raise api_error(422, "bad_version", "version (the one you read) is required")
        return value

    def parse_id(raw: str) -> int:
        if not raw.isdigit() or len(raw) > 10 or int(raw) > MAX_INT:
            raise api_error(422, "bad_id", f"a ticket id is a positive number, got {raw[:20]!r}")
        return int(raw)

    def team_of(agent_id: str | None) -> str | None:
        if agent_id is None:
            return None
        agent: Agent | None = service().store.read(lambda s: s.get(Agent, agent_id))
        return agent.team if agent is not None else None

    def may_touch(principal: Principal, row: TicketRow) -> bool:
        if principal.role in SEE_ALL:
            return True
        if principal.role == "shift_lead":  # their team's, and those escalated to them
            return row.escalated_to == principal.name or (
                principal.team is not None and row.team == principal.team)
        me = agent_of(principal)
        if me is None:
            return False
        team = team_of(me)
        return me in (row.owner_id, row.agent_id, row.created_by) or (
            team is not None and row.team == team)

    def load(principal: Principal, ticket_id: int) -> TicketRow:
        row: TicketRow | None = service().store.read(store_tickets.get, ticket_id)
        if row is None or not may_touch(principal, row):
            # an agent learns nothing of others' tickets, not even that they exist
            raise api_error(404, "not_found", f"no ticket {ticket_id}")
        return row

    def recording_for(row: TicketRow) -> int | None:
        if row.recording_id is not None or not row.call_uniqueid:
            return row.recording_id
        rec = service().store.read(repo.recording_for_call, row.call_uniqueid)
        return rec.id if rec is not None else None

    def changed(ticket_id: int, version: int, actor: str, action: str, new: core.Ticket,
                note: str = "", **fields: Any) -> TicketRow:
        try:
            return service().store.run(store_tickets.change, ticket_id, version, now(), actor,
                                       action, new, note=note, **fields)
        except store_tickets.TicketConflict as exc:
            raise api_error(409, "conflict", str(exc)) from None

    def answer(row: TicketRow) -> dict[str, Any]:
        return view(row, policy(), now(), recording_for(row))

    @router.get("", summary="Tickets I may see (agents: own and team; supervisors: all)")
    def list_tickets(request: Request, status: str | None = None,
                     limit: str = "200") -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        if status is not None and status not in core.STATUSES:
            raise api_error(422, "unknown_status", f"status is one of {', '.join(core.STATUSES)}")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise api_error(422, "bad_limit", f"limit must be 1..{MAX_LIMIT}")
        if principal.role == "shift_lead":
            rows = service().store.read(store_tickets.visible, agent_id=None,
                                        team=principal.team, lead=principal.name,
                                        status=status, limit=int(limit))
            return {"tickets": [view(r, policy(), now()) for r in rows]}
        me = None if principal.role in SEE_ALL else agent_of(principal)
        if me is None and principal.role not in SEE_ALL:
            return {"tickets": []}  # a login with no work number owns no tickets
        rows = service().store.read(store_tickets.visible, agent_id=me, team=team_of(me),
                                    status=status, limit=int(limit))
        return {"tickets": [view(r, policy(), now()) for r in rows]}

    @router.post("", status_code=201, summary="Create a ticket, from a call or freely")
    def create(request: Request, raw: Any = JSON_BODY) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        body = body_of(raw, CREATE_FIELDS)
        limit = policy().tickets.text_max_chars
        ticket_type = body.get("type")
        if ticket_type not in TICKET_TYPES:
            raise api_error(422, "unknown_type", f"unknown ticket type {ticket_type!r}; known "
                            f"types: {', '.join(TICKET_TYPES)}")
        description = text(body.get("description"), "description", limit, required=True)
        priority = choice(body.get("priority"), "priority", core.PRIORITIES, "normal")
        owner_kind = choice(body.get("owner_kind"), "owner_kind", core.OWNER_KINDS, "agent")
        customer = text(body.get("customer_name"), "customer_name", SHORT_MAX)
        number = text(body.get("caller_number"), "caller_number", SHORT_MAX)
        call_id = text(body.get("call_id"), "call_id", SHORT_MAX) or None
        me = agent_of(principal)
        at = now()
        promised = None
        if body.get("promised_at") is not None:
            try:
                promised = datetime.fromisoformat(str(body["promised_at"])[:64])
            except ValueError:
                raise api_error(422, "bad_promised_at", "promised_at is an ISO date-time") \
                    from None
            if promised.tzinfo is None:
                promised = promised.replace(tzinfo=ZoneInfo(policy().calendar.timezone))
            try:
                core.check_promise(promised, at)
            except core.TicketError as exc:
                raise api_error(422, "deadline_in_past", str(exc)) from None
        agent_id = me
        recording_id: int | None = None
        if call_id is not None:
            live = service().runtime.calls.get(call_id)
            stored: Call | None = service().store.read(repo.get_call, call_id)
            if live is None and stored is None:
                raise api_error(404, "no_call", f"no call {call_id!r}")
            call_agent = live.agent_id if live is not None else stored.agent_id if stored \
                else None
            if principal.role not in SEE_ALL and call_agent != me:
                raise api_error(403, "forbidden", "agents create tickets from their own calls")
            number = number or (live.caller if live is not None else
                                (stored.caller_number or "") if stored else "")
            agent_id = call_agent or me
            # the call's recording, when already written (else linked when it is:
            # store/records.py write_recording)
            rec = service().store.read(repo.recording_for_call, call_id)
            recording_id = rec.id if rec is not None else None
        owner_id = text(body.get("owner_id"), "owner_id", SHORT_MAX) or agent_id or \
            principal.name
        if principal.role not in SEE_ALL and owner_kind == "agent" and owner_id != me:
            raise api_error(403, "forbidden", "agents open tickets in their own name; a "
                            "supervisor assigns others")
        klass = body.get("customer_class")
        if klass is None:  # the caller's customer record says, else the default class
            klass = service().store.read(store_tickets.customer_class_of, number) or \
                policy().tickets.default_customer_class
        try:
            if not isinstance(klass, str):
                raise core.TicketError("customer_class must be a string")
            klass = core.check_class(klass[:SHORT_MAX], policy())
        except core.TicketError as exc:
            raise api_error(422, "unknown_customer_class", str(exc)) from None
        facts = core.Ticket(type=ticket_type, opened_at=at, priority=priority,
                            promised_at=promised, customer_class=klass)
        actor = me or principal.name
        p = policy()
        row = service().store.run(
            store_tickets.create, facts, actor=actor, owner_kind=owner_kind,
            owner_id=owner_id,
            number_of=lambda serial: core.ticket_number(at, owner_id, serial, p),
            call_uniqueid=call_id, caller_number=number, agent_id=agent_id,
            # a ticket owned by a team is that team's (its lead's board, STD-145)
            team=owner_id if owner_kind == "team" else team_of(agent_id),
            customer_name=customer, description=description, recording_id=recording_id)
        return {"ticket": answer(row)}

    @router.get("/backlog", summary="Open tickets by type, priority and overdue (STD-145)")
    def backlog(request: Request) -> dict[str, Any]:
        require(request, *BOARD_ROLES)
        return feature.backlog

    @router.get("/daily-check", summary="The daily check of open tickets (STD-125, STD-136)")
    def daily_check(request: Request, day: str | None = None) -> dict[str, Any]:
        """The stored list of a working day's check (default: the latest made): overdue,
        due today, unassigned, open too long. A shift lead gets their team's items."""
        principal = require(request, *BOARD_ROLES)
        try:
            the_day = date.fromisoformat(day) if day else None
        except ValueError:
            raise api_error(422, "bad_day", "day is YYYY-MM-DD") from None
        found = service().store.read(store_tickets.daily_check, the_day)
        if found is None:
            raise api_error(404, "no_check", "no daily check made" +
                            (f" on {the_day.isoformat()}" if the_day else " yet"))
        detail = dict(found.detail)
        if principal.role == "shift_lead":
            detail["items"] = [i for i in detail.get("items", [])
                               if i.get("team") == principal.team]
            detail["count"] = len(detail["items"])
        return {**detail, "day": found.day.isoformat(), "made_at": _iso(found.at)}

    @router.get("/kpis", summary="Ticket KPIs of a day: timeliness, replies, complaints")
    def kpis(request: Request, day: str | None = None) -> dict[str, Any]:
        require(request, *BOARD_ROLES)
        tz = ZoneInfo(policy().calendar.timezone)
        try:
            the_day = date.fromisoformat(day) if day else now().astimezone(tz).date()
        except ValueError:
            raise api_error(422, "bad_day", "day is YYYY-MM-DD") from None
        start = datetime.combine(the_day, time(0), tz)
        end = start + timedelta(days=1)
        rows = service().store.read(store_tickets.logged_between, start, end)
        calls = service().store.read(repo.calls_entered_between, start, end)
        answered = sum(1 for c in calls if c.answered_at is not None)
        figures = kpi.ticket_kpis([store_tickets.facts(r) for r in rows], answered,
                                  min(now(), end), policy())
        return {"day": the_day.isoformat(), "answered_calls": answered, **figures.as_dict()}

    @router.get("/{ticket_id}", summary="A ticket, its clocks and its history")
    def get_ticket(request: Request, ticket_id: str) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        row = load(principal, parse_id(ticket_id))
        rows = service().store.read(store_tickets.history, row.id)
        return {"ticket": answer(row), "history": [
            {"at": _iso(h.at), "actor": h.actor, "action": h.action, "from": h.from_status,
             "to": h.to_status, "note": h.note, "detail": h.detail} for h in rows]}

    @router.patch("/{ticket_id}", summary="Move, note, mark replied (409 on a stale version)")
    def patch(request: Request, ticket_id: str, raw: Any = JSON_BODY
              ) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        body = body_of(raw, PATCH_FIELDS)
        version = version_of(body)
        row = load(principal, parse_id(ticket_id))
        note = text(body.get("note"), "note", policy().tickets.text_max_chars)
        facts = store_tickets.facts(row)
        at = now()
        action = "note"
        try:
            if body.get("status") is not None:
                to = choice(body["status"], "status", core.STATUSES, row.status)
                facts = core.move(facts, to, at)
                action = "status"
            for flag, step in (("replied", core.replied), ("followed_up", core.followed_up)):
                if body.get(flag) is not None:
                    if body[flag] is not True:
                        raise api_error(422, f"bad_{flag}", f"{flag} can only be true")
                    facts = step(facts, at)
                    action = flag
            if body.get("priority") is not None:
                facts = replace(facts, priority=choice(body["priority"], "priority",
                                                       core.PRIORITIES, row.priority))
                action = "priority" if action == "note" else action
        except core.TicketError as exc:
            raise api_error(422, "bad_move", str(exc)) from None
        actor = agent_of(principal) or principal.name
        return {"ticket": answer(changed(row.id, version, actor, action, facts, note))}

    @router.post("/{ticket_id}/close", summary="Close (complaints: follow-up call first)")
    def close(request: Request, ticket_id: str, raw: Any = JSON_BODY
              ) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        body = body_of(raw, frozenset({"version", "note"}))
        version = version_of(body)
        row = load(principal, parse_id(ticket_id))
        note = text(body.get("note"), "note", policy().tickets.text_max_chars)
        at = now()
        try:
            facts = core.close(store_tickets.facts(row), at, policy())
        except core.TicketError as exc:
            raise api_error(422, "bad_move", str(exc)) from None
        fields: dict[str, Any] = {}
        if facts.status == "closed":
            fields["closed_at"] = at
        elif row.caller_number:
            fields["followup_task_id"] = follow_up_task(row, at)
        actor = agent_of(principal) or principal.name
        return {"ticket": answer(changed(row.id, version, actor, "close", facts, note,
                                         **fields))}

    def follow_up_task(row: TicketRow, at: datetime) -> int:
        """STD-134: the follow-up call that asks the customer whether they are satisfied."""
        due = outbound_rules.plan_due("follow_up", at, policy(), requested_at=at)

        def add(s: Session) -> int:
            task, _ = repo.add_task(s, "follow_up", row.caller_number, due.due_at,
                                    deadline_at=due.deadline_at,
                                    note=f"ticket {row.number}: is the customer satisfied?",
                                    created_from_uniqueid=None)
            return task.id

        return int(service().store.run(add))

    @router.post("/{ticket_id}/confirm", summary="The customer's answer to the follow-up")
    def confirm(request: Request, ticket_id: str, raw: Any = JSON_BODY
                ) -> dict[str, Any]:
        principal = require(request, *ALL_ROLES)
        body = body_of(raw, frozenset({"version", "satisfied", "note"}))
        version = version_of(body)
        if not isinstance(body.get("satisfied"), bool):
            raise api_error(422, "bad_satisfied", "satisfied must be true or false")
        row = load(principal, parse_id(ticket_id))
        note = text(body.get("note"), "note", policy().tickets.text_max_chars)
        at = now()
        try:
            facts = core.confirmed(store_tickets.facts(row), body["satisfied"], at)
        except core.TicketError as exc:
            raise api_error(422, "bad_move", str(exc)) from None
        fields = {"closed_at": at} if facts.status == "closed" else {}
        actor = agent_of(principal) or principal.name
        return {"ticket": answer(changed(row.id, version, actor, "confirmed", facts, note,
                                         **fields))}

    return router
