"""Callback and follow-up tasks over REST: list, create, edit, cancel, dial, history.

Everything the dialer does is visible and editable here (issue 7). Who may do what
(STD-148 roles): supervisors and admins see and act on every task, QA reads them;
an agent sees and acts on their own tasks only, creates tasks only for themselves,
and dials with their own softphone. Errors say what is wrong in words a client can
show: ``{"detail": {"error": <code>, "message": <text>}}`` (422 bad input such as an
invalid number, 409 a conflict such as a duplicate task or a task being dialled,
404 unknown, 403 not yours).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from callflow.api.auth import Principal
from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.engine import outbound
from callflow.errors import StateError, StoreError
from callflow.outbound import store_access
from callflow.outbound.dialer import attempt_payload, create_callback, task_payload
from callflow.outbound.store_access import service_of
from callflow.store import repo
from callflow.store.models import OPEN_TASK_STATUSES, CallbackTask

if TYPE_CHECKING:
    from callflow.outbound.feature import OutboundFeature

ACTING_ROLES = ("agent", "supervisor", "admin")
READING_ROLES = ("agent", "supervisor", "admin", "qa")
#: StateError reasons -> HTTP status.
_STATUS = {"not_found": 404, "invalid_number": 422, "invalid_kind": 422, "invalid_task": 422,
           "owner_required": 422, "unknown_agent": 422, "forbidden": 403}
StatusFilter = Literal["open", "all", "pending", "dialing", "done", "unreachable", "cancelled"]
#: Task ids are 64-bit in the database: a larger one is refused (422), never looked up.
TaskId = Path(ge=1, le=2**63 - 1)


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(max_length=64, description="Digits the PBX dials (spaces, dashes ok)")
    kind: Literal["manual", "callback", "follow_up", "named_agent", "dropped_call"] = "manual"
    owner_agent_id: str | None = Field(
        None, description="Agent work number; null = the pool (agents: always themselves)")
    due_at: AwareDatetime | None = Field(
        None, description="When to call (moved into the calling window, STD-085); "
                          "default: the kind's rule (follow-ups: next working day)")
    follow_up: Literal["general", "fault"] = Field(
        "general", description="follow_up kind: fault = done the next day (STD-089)")
    note: str = Field("", max_length=2000)
    max_attempts: int | None = Field(None, ge=1, le=20)
    created_from_call_id: str | None = Field(None, max_length=64,
                                             description="Asterisk uniqueid of the call")


class TaskEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_at: AwareDatetime | None = None
    owner_agent_id: str | None = Field(None, description='Agent work number; "" = the pool')
    note: str | None = Field(None, max_length=2000)
    max_attempts: int | None = Field(None, ge=1, le=20)
    number: str | None = Field(None, max_length=64)


class DialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = Field(None, description="Supervisors: whose softphone dials")


def _state_error(exc: StateError) -> HTTPException:
    return store_access.state_error(exc, _STATUS)


def _agent_of(principal: Principal) -> str | None:
    """An agent's work number (their only topic is ``agent:<id>``); None for supervisors."""
    if principal.topics is None:
        return None
    return next((t.split(":", 1)[1] for t in sorted(principal.topics)
                 if t.startswith("agent:")), "")


def tasks_router(feature: OutboundFeature) -> APIRouter:
    router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

    service = partial(service_of, feature)
    store_call = partial(store_access.store_call, feature, _STATUS)

    async def own_task(request: Request, task_id: int, *roles: str
                       ) -> tuple[Principal, CallbackTask]:
        principal = require(request, *roles)
        task = await store_call(repo.get_task, task_id)
        if task is None:
            raise api_error(404, "not_found", f"no task {task_id}")
        agent = _agent_of(principal)
        if agent is not None and task.owner_agent_id != agent:
            raise api_error(403, "forbidden", f"task {task_id} is not yours")
        return principal, task

    def check_agent(agent_id: str) -> None:
        if service().roster.by_id(agent_id) is None:
            raise api_error(422, "unknown_agent", f"no agent {agent_id!r} in the roster")

    def told(task: CallbackTask, previous_owner: str | None = None) -> None:
        if feature.dialer is not None:
            feature.dialer.tell(task, also=previous_owner)

    @router.get("", summary="List tasks")
    async def list_tasks(request: Request, status: StatusFilter = "open",
                         owner: str | None = None, pool: bool = False,
                         number: str | None = None,
                         limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        """Soonest due first. Agents get their own tasks whatever ``owner`` says."""
        principal = require(request, *READING_ROLES)
        agent = _agent_of(principal)
        statuses = (OPEN_TASK_STATUSES if status == "open" else None if status == "all"
                    else (status,))
        tasks = await store_call(repo.list_tasks, statuses=statuses,
                                 owner_agent_id=agent if agent is not None else owner,
                                 pool_only=pool and agent is None, number=number, limit=limit)
        return {"tasks": [task_payload(t) for t in tasks]}

    @router.post("", status_code=201, summary="Create a task",
                 responses={409: {"description": "an open task for this number and kind"},
                            422: {"description": "invalid number or request"}})
    async def create(request: Request, body: TaskCreate) -> dict[str, Any]:
        """A manual task, a follow-up (due the next working day unless ``due_at``), or a
        callback. One open task per number and kind: a second one is refused with 409
        and the existing task."""
        principal = require(request, *ACTING_ROLES)
        agent = _agent_of(principal)
        owner = agent if agent is not None else body.owner_agent_id
        if owner is not None:
            check_agent(owner)
        svc = service()
        try:
            digits = outbound.normalize_number(body.number, feature.route.country)
            existing = await store_call(repo.list_open_tasks, number=digits)
            duplicate = next((t for t in existing if t.kind == body.kind), None)
            if duplicate is not None:
                raise api_error(409, "duplicate_task",
                            f"{digits} already has an open {body.kind} task #{duplicate.id}",
                            task=task_payload(duplicate))
            task, created = await asyncio.to_thread(
                create_callback, svc.store, body.kind, digits, owner, body.due_at,
                body.created_from_call_id, policy=svc.policy, now=svc.clock.wall(),
                note=body.note, follow_up=body.follow_up, max_attempts=body.max_attempts)
        except StateError as exc:
            raise _state_error(exc) from None
        except StoreError as exc:
            raise api_error(503, "store_error", str(exc)) from None
        if not created:  # created by someone else between the check and the insert
            raise api_error(409, "duplicate_task", f"{digits} already has an open {body.kind} "
                        f"task #{task.id}", task=task_payload(task))
        told(task)
        return {"task": task_payload(task)}

    @router.get("/{task_id}", summary="One task with its attempt history")
    async def get_one(request: Request, task_id: int = TaskId) -> dict[str, Any]:
        _, task = await own_task(request, task_id, *READING_ROLES)
        attempts = await store_call(repo.task_attempts, task_id)
        return {"task": task_payload(task), "attempts": [attempt_payload(a) for a in attempts]}

    @router.get("/{task_id}/attempts", summary="Attempt history of a task")
    async def attempts(request: Request, task_id: int = TaskId) -> dict[str, Any]:
        await own_task(request, task_id, *READING_ROLES)
        rows = await store_call(repo.task_attempts, task_id)
        return {"attempts": [attempt_payload(a) for a in rows]}

    @router.patch("/{task_id}", summary="Edit a pending task")
    async def edit(request: Request, body: TaskEdit, task_id: int = TaskId) -> dict[str, Any]:
        """Due time (moved into the calling window), owner (supervisors; "" = the pool),
        note, attempts allowed, number. A task being dialled cannot be edited (409)."""
        principal, task = await own_task(request, task_id, *ACTING_ROLES)
        fields: dict[str, Any] = body.model_dump(exclude_unset=True)
        if "owner_agent_id" in fields:
            if _agent_of(principal) is not None:
                raise api_error(403, "forbidden", "only a supervisor reassigns a task")
            fields["owner_agent_id"] = fields["owner_agent_id"] or None
            if fields["owner_agent_id"] is not None:
                check_agent(fields["owner_agent_id"])
            elif task.kind == "named_agent":
                raise api_error(422, "owner_required",
                            "a named-agent callback needs its agent (STD-072)")
        try:
            if fields.get("number") is not None:
                fields["number"] = outbound.normalize_number(fields["number"],
                                                             feature.route.country)
            if fields.get("due_at") is not None:
                fields["due_at"] = outbound.next_calling_time(fields["due_at"],
                                                              service().policy)
        except StateError as exc:
            raise _state_error(exc) from None
        fields = {k: v for k, v in fields.items()
                  if v is not None or k == "owner_agent_id"}
        if not fields:
            raise api_error(422, "nothing_to_change", "give at least one field to change")
        updated = await store_call(repo.update_task, task_id, write=True, **fields)
        told(updated, previous_owner=task.owner_agent_id)
        return {"task": task_payload(updated)}

    @router.post("/{task_id}/cancel", summary="Cancel an open task")
    async def cancel(request: Request, task_id: int = TaskId) -> dict[str, Any]:
        _, task = await own_task(request, task_id, *ACTING_ROLES)
        if task.status == "dialing":
            raise api_error(409, "task_dialing", f"task {task_id} is being dialled; cancel it "
                        "after this attempt")
        cancelled = await store_call(repo.cancel_task, task_id, write=True)
        told(cancelled)
        return {"task": task_payload(cancelled)}

    @router.post("/{task_id}/dial", status_code=202, summary="Dial a task now (preview)")
    async def dial(request: Request, body: DialRequest | None = None,
                   task_id: int = TaskId) -> dict[str, Any]:
        """The agent's softphone rings first, then the customer (STD-082 preview). Agents
        dial their own tasks with their own phone; supervisors name the agent."""
        principal, task = await own_task(request, task_id, *ACTING_ROLES)
        agent = _agent_of(principal) or (body.agent_id if body is not None else None)
        if not agent:
            raise api_error(422, "agent_required", "name the agent whose softphone dials")
        check_agent(agent)
        if feature.dialer is None:
            raise api_error(503, "not_ready", "the dialer is not running")
        try:
            attempt_id = await feature.dialer.dial(task.id, agent)
        except StateError as exc:
            raise _state_error(exc) from None
        except StoreError as exc:
            raise api_error(503, "store_error", str(exc)) from None
        return {"attempt_id": attempt_id, "task_id": task.id, "agent_id": agent}

    return router

