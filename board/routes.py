"""The board over HTTP: the page, its API and ``/metrics``; each route calls into a part.

Roles (STD-148): supervisors, QA and admins see the board; only supervisors and
admins act on agents and alarms; QA may listen (STD-146) but not whisper or barge;
agents get 403, no session 401. Callers' numbers are masked for roles that may not see
them (STD-078, ``api/privacy.py``).

Routes:

* ``/board`` (the page; it shows its own login form until a session exists) and its
  assets ``/board/{name}``;
* ``/api/v1/board/whoami``, ``/api/v1/board/state`` (the websocket snapshot's figures);
* ``/api/v1/board/agents/{id}/{state,logout,monitor}`` and the answers to agents'
  requests ``/{approve_absence,refuse_absence,grant_acw,refuse_acw}`` (``actions.py``);
* ``/api/v1/alarms`` (+ ``/ack`` by key, ``/{id}/ack``) (``alarms.py``);
* ``/api/v1/kpi``, ``/api/v1/reports/{daily,weekly}``, ``/api/v1/reports/files``
  (+ ``/{name}``) (``reporting.py``);
* ``/metrics`` for Prometheus (``metrics.py``): aggregates only, yet not open to
  anyone who can reach the port: a supervisor's or admin's session, or the deployment
  token (Prometheus reads it from a file: ``bearer_token_file``, README.md).

The parts refuse with ``StateError`` (its reason picks the status: ``REFUSAL_STATUS``),
``AlarmKeyError`` and ``ReportError`` (400); the request's own syntax is checked here.
Every refusal is the API's one error body (``callflow.api.errors``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from callflow.api.auth import Principal
from callflow.api.credentials import require
from callflow.api.errors import api_error
from callflow.api.pages import page_router
from callflow.api.privacy import masked, may_see_numbers
from callflow.board import reports
from callflow.board.alarms import AlarmKeyError
from callflow.board.metrics import MetricsSnapshot, gather, render
from callflow.engine import compliance as compliance_dims
from callflow.errors import StateError

if TYPE_CHECKING:
    from callflow.board.feature import BoardFeature

#: STD-145, STD-148: the shift lead and the department manager follow the board too; the
#: shift lead redeploys seats (acts); listening stays with supervisors and QA (STD-146).
VIEW_ROLES = ("supervisor", "qa", "admin", "shift_lead", "department_manager")
ACT_ROLES = ("supervisor", "admin", "shift_lead")
LISTEN_ROLES = ("supervisor", "qa", "admin")  # STD-146
BARGE_ROLES = ("supervisor", "admin")  # whisper and barge
STATIC_DIR = Path(__file__).resolve().parent / "static"
PHONE = re.compile(r"(PJSIP/)?[A-Za-z0-9_.\-]{1,64}")
#: The HTTP status of a refusal (StateError) by its reason; any other reason is a conflict.
REFUSAL_STATUS = {"unknown_agent": 404, "not_found": 404, "originate_failed": 502}
#: The longest period one compliance query may cover (days).
MAX_COMPLIANCE_DAYS = 92
#: Ids are 64-bit in the database: a larger one is refused (422), never looked up.
MAX_ID = 2**63 - 1


class StateRequest(BaseModel):
    state: Literal["ready", "busy", "not_ready"]
    reason: str = Field(default="", max_length=64)


class WorkflowAction(StrEnum):
    """Supervisor answers to agents' requests (board/actions.py methods of these names)."""

    approve_absence = "approve_absence"
    refuse_absence = "refuse_absence"
    grant_acw = "grant_acw"
    refuse_acw = "refuse_acw"


class MonitorRequest(BaseModel):
    mode: Literal["listen", "whisper", "barge"]
    phone: str = Field(min_length=1, max_length=70,
                       description="the supervisor's PJSIP endpoint, e.g. sup1 or PJSIP/sup1")


class AckRequest(BaseModel):
    key: str = Field(min_length=3, max_length=120)


class ReportFilesRequest(BaseModel):
    kind: Literal["daily", "weekly"] = "daily"
    date: str | None = None


def board_routers(board: BoardFeature) -> list[APIRouter]:
    """The page, the API and /metrics; the parts are reached at request time (the feature
    builds them when it starts)."""
    return [page_router("/board", STATIC_DIR, "board"), _api_router(board),
            _metrics_router(board)]


def _api_router(board: BoardFeature) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["board"])

    def viewer(request: Request, roles: tuple[str, ...] = VIEW_ROLES) -> Principal:
        return require(request, *roles)

    def day(raw: str | None) -> date:
        try:
            return board.reporting.day(raw)
        except reports.ReportError as exc:
            raise api_error(400, "bad_date", str(exc)) from None

    @router.get("/board/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """Who the board is logged in as (401 without a session, 403 for agents)."""
        principal = viewer(request)
        return {"name": principal.name, "role": principal.role, "team": principal.team,
                "may_act": principal.role in ACT_ROLES,
                "sees_numbers": may_see_numbers(principal)}

    @router.get("/board/state")
    async def state(request: Request) -> dict[str, Any]:
        """The board's figures as the websocket snapshot carries them."""
        principal = viewer(request)
        runtime = board.service.runtime
        assert runtime is not None
        body = runtime.snapshot(principal.may_see)
        return body if may_see_numbers(principal) else masked(body)

    @router.post("/board/agents/{agent_id}/state")
    async def force_state(agent_id: str, body: StateRequest,
                          request: Request) -> dict[str, Any]:
        """Force an agent's state as a supervisor (STD-097, STD-099); audited."""
        principal = viewer(request, ACT_ROLES)
        try:
            return await board.actions.force_state(principal.name, agent_id, body.state,
                                                   body.reason)
        except StateError as exc:
            raise _refused(exc) from None

    @router.post("/board/agents/{agent_id}/logout")
    async def logout(agent_id: str, request: Request) -> dict[str, Any]:
        """Log an agent out (end of shift forgotten, STD-103); audited."""
        principal = viewer(request, ACT_ROLES)
        try:
            return await board.actions.log_out(principal.name, agent_id)
        except StateError as exc:
            raise _refused(exc) from None

    @router.post("/board/agents/{agent_id}/monitor")
    async def monitor(agent_id: str, body: MonitorRequest,
                      request: Request) -> dict[str, Any]:
        """Listen, whisper or barge on the agent's call (STD-146); audited."""
        roles = LISTEN_ROLES if body.mode == "listen" else BARGE_ROLES
        principal = viewer(request, roles)
        if not PHONE.fullmatch(body.phone):
            raise api_error(400, "bad_phone",
                            "phone: a PJSIP endpoint name (letters, digits, . _ -)")
        try:
            return await board.actions.monitor(principal.name, agent_id, body.mode,
                                               body.phone)
        except StateError as exc:
            raise _refused(exc) from None

    # after /state, /logout and /monitor: a path parameter would shadow them
    @router.post("/board/agents/{agent_id}/{action}")
    async def workflow(agent_id: str, action: WorkflowAction,
                       request: Request) -> dict[str, Any]:
        """Answer an agent's request (STD-106 absence, STD-100 more ACW): approve_absence,
        refuse_absence, grant_acw, refuse_acw; audited; the desktop and the board are
        told by the agent's new state."""
        principal = viewer(request, ACT_ROLES)
        act = getattr(board.actions, action.value)
        try:
            result: dict[str, Any] = await act(principal.name, agent_id)
        except StateError as exc:
            raise _refused(exc) from None
        return result

    @router.get("/alarms")
    async def alarms(request: Request, open: bool = True, limit: int = 200,
                     since: str | None = None) -> dict[str, Any]:
        """Alarms newest first from the store (open only by default)."""
        principal = viewer(request)
        if not 1 <= limit <= 1000:
            raise api_error(400, "bad_limit", "limit must be 1..1000")
        since_at = _parse_instant(since) if since else None
        items = await board.alarms.recent(since_at, open, limit)
        return {"alarms": items if may_see_numbers(principal) else masked(items)}

    @router.post("/alarms/ack")
    async def ack_by_key(body: AckRequest, request: Request) -> dict[str, Any]:
        """Acknowledge an alarm by the key the board shows (audited)."""
        principal = viewer(request, ACT_ROLES)
        try:
            return await board.alarms.acknowledge(principal.name, key=body.key)
        except AlarmKeyError as exc:
            raise api_error(400, "bad_alarm_key", str(exc)) from None
        except StateError as exc:
            raise _refused(exc) from None

    @router.post("/alarms/{alarm_id}/ack")
    async def ack_by_id(request: Request,
                        alarm_id: int = PathParam(ge=1, le=MAX_ID)) -> dict[str, Any]:
        principal = viewer(request, ACT_ROLES)
        try:
            return await board.alarms.acknowledge(principal.name, alarm_id=alarm_id)
        except StateError as exc:
            raise _refused(exc) from None

    @router.get("/kpi")
    async def kpis(request: Request, date_from: str | None = None,
                   date_to: str | None = None, queue: str | None = None,
                   agent: str | None = None, intervals: bool = False) -> dict[str, Any]:
        """KPIs of whole local days ``date_from``..``date_to`` (default today), per queue,
        per agent and in total; ``intervals`` adds the per-interval series (one day)."""
        viewer(request)
        try:
            return await board.reporting.kpis(date_from, date_to, queue, agent, intervals)
        except reports.ReportError as exc:
            raise api_error(400, "bad_period", str(exc)) from None

    @router.get("/compliance")
    async def compliance(request: Request, date_from: str | None = None,
                         date_to: str | None = None, by: str = "rule") -> dict[str, Any]:
        """% pass per rule of whole local days ``date_from``..``date_to`` (default today),
        per ``by``: rule, agent, queue, hour or day (engine/compliance.py); ``live`` is the
        board's panel of today."""
        viewer(request)
        if by not in compliance_dims.DIMENSIONS:
            raise api_error(400, "bad_dimension", "by: " + "|".join(compliance_dims.DIMENSIONS))
        first, last = day(date_from), day(date_to or date_from)
        if last < first or (last - first).days > MAX_COMPLIANCE_DAYS:
            raise api_error(400, "bad_period",
                            f"date_to on or after date_from, at most {MAX_COMPLIANCE_DAYS} days")
        rows = await board.compliance.history(first, last, by)
        return {"from": first.isoformat(), "to": last.isoformat(), "by": by, "rows": rows,
                "live": board.compliance.view}

    @router.get("/calls/{uniqueid}/verdicts")
    async def call_verdicts(request: Request, uniqueid: str = PathParam(
            max_length=64, pattern=r"^[A-Za-z0-9._-]+$")) -> dict[str, Any]:
        """Every rule judged on one call (engine/verdicts.py): outcome, measured, limit."""
        viewer(request)
        return {"uniqueid": uniqueid, "verdicts": await board.compliance.of_call(uniqueid)}

    @router.get("/calls/{uniqueid}/aftercare")
    async def call_aftercare(request: Request, uniqueid: str = PathParam(
            max_length=64, pattern=r"^[A-Za-z0-9._-]+$")) -> dict[str, Any]:
        """What came after one call (issue 18): wrap-up forms, the ``wrapup_missing`` flag
        (ACW ended without a form) and the post-call survey's answers (STD-120)."""
        viewer(request)
        return await board.reporting.aftercare(uniqueid)

    @router.get("/reports/files")
    async def report_files(request: Request) -> dict[str, Any]:
        viewer(request)
        return {"files": board.reporting.file_names()}

    @router.post("/reports/files")
    async def write_reports(body: ReportFilesRequest, request: Request) -> dict[str, Any]:
        """Write a day's (or week's) report files now, as the schedule would."""
        viewer(request, ACT_ROLES)
        written = await board.reporting.write_files(body.kind, day(body.date))
        return {"files": [p.name for p in written]}

    @router.get("/reports/files/{name}")
    async def report_file(request: Request, name: str = PathParam(
            max_length=reports.MAX_FILE_NAME)) -> FileResponse:
        viewer(request)
        path = board.reporting.file(name)
        if path is None:
            raise api_error(404, "not_found", "no such report file")
        return FileResponse(path)

    @router.get("/reports/{kind}")
    async def report(kind: str, request: Request, date: str | None = None,
                     by: str = "queue", format: str = "json") -> Any:
        """A daily or weekly report per queue or agent: json, csv or printable html."""
        viewer(request)
        if kind not in ("daily", "weekly") or by not in ("queue", "agent") \
                or format not in ("json", "csv", "html"):
            raise api_error(400, "bad_report", "kind daily|weekly, by queue|agent, "
                                               "format json|csv|html")
        built = await board.reporting.report(kind, by, day(date))  # type: ignore[arg-type]
        if format == "json":
            return JSONResponse(reports.summary(built))
        text = reports.render(built, format)
        if format == "html":
            return HTMLResponse(text)
        return PlainTextResponse(text, media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{reports.file_name(built, "csv")}"'})

    return router


def _metrics_router(board: BoardFeature) -> APIRouter:
    router = APIRouter(tags=["operations"])

    def scrape() -> MetricsSnapshot:
        return gather(board.service, board.live_view, len(board.alarms.book))

    @router.get("/metrics", include_in_schema=True, response_class=Response,
                responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                                 "description": "Prometheus text format"}})
    async def metrics(request: Request) -> Response:
        """Prometheus text format (a supervisor's or admin's session, or the deployment
        token); gathered on the loop (the runtime lives there)."""
        require(request, *ACT_ROLES)
        return Response(render(scrape), media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    return router


def _refused(exc: StateError) -> HTTPException:
    return api_error(REFUSAL_STATUS.get(exc.reason, 409), exc.reason, exc.detail or exc.reason)


def _parse_instant(raw: str) -> datetime:
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise api_error(400, "bad_since", "since: an ISO 8601 time with its zone") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
