"""The supervisor board: live queues, agents and alarms, KPIs, reports, queue_log, /metrics.

One ``Feature`` (callflow/service.py) with everything a supervisor needs (STD-145..148):

* **Live, pushed, no polling.** The board page follows ``/ws/events`` (topics
  ``board`` and ``alarms``). Agent states and call records reach it straight from the
  core; this feature adds what the core does not compute: today's KPIs per queue and
  per agent (``engine/kpi.py`` over ``LiveDay``), sent as one ``queue_kpis`` and one
  ``agent_kpis`` message a fraction of a second after a change (coalesced, so a burst
  of events costs one computation), and alarms with the key they are acknowledged by.
  A (re)connecting board gets everything in the snapshot (``state.board``).
* **Alarms the core cannot see** are raised here, through the runtime (so they are
  stored and published like the core's own): the AMI link down, a caller waiting past
  the maximum (STD-043), service level below target, an interval's average answer ring
  above target (STD-006); the rules are pure, in ``engine/supervision.py``. RONA, ACW
  overrun and softphone unreachable come from the agent machine, hold breaches from
  engine/hold.py, the agent hanging up first (STD-110) from the release judge
  (engine/special_calls.py): the board shows them all.
* **Supervisor actions** (force a state, log out, listen / whisper / barge through
  ChanSpy, acknowledge an alarm) are audited in ``audit_log`` with who did what.
* **Reports** on demand (JSON, CSV, printable HTML) and on a schedule (files in
  ``<state dir>/reports`` after each local midnight), ``queue_log`` written live
  (``<state dir>/queue_log``), ``/metrics`` for Prometheus.

Roles (STD-148): supervisors, QA and admins see the board; only supervisors and
admins act on agents and alarms; QA may listen (STD-146) but not whisper or barge;
agents get 403. Callers' numbers are masked for roles that may not see them (STD-078,
``api/privacy.py``).

What the board receives (websocket protocol v1, docs/websocket-protocol.md):

* snapshot ``state``: ``agents`` and ``calls`` (the runtime's), and ``board``: ``day``,
  ``zone``, ``now``, ``queues`` (queue views), ``agent_kpis`` (agent views), ``roster``,
  ``callbacks`` ({queue: open callback tasks}), ``ami_up``, ``limits``, the busy and
  not-ready reasons, and ``alarms`` (open, when the client may see ``alarms``);
* topic ``board``: the core's ``agent_state``, ``call``, ``task``, ``hold_*``; this
  feature's ``queue_kpis`` {queues: [view]}, ``agent_kpis`` {agents: [view]},
  ``callbacks`` {pending}, ``ami_link`` {up};
* topic ``alarms``: the core's ``alarm``; ``alarm_open`` {alarm: {key, id, kind, std,
  detail, raised_at}} and ``alarm_ack`` {key, id, by, at}.

A queue view is {queue, kpi (``Kpis.as_dict``), waiting, longest_wait_s, series: [{t,
offered, answered, sl, ring, waiting}] per interval, targets}; an agent view is
{agent_id, calls, avg_talk_s, avg_acw_s, rona, answered, occupancy, last_queue}.
REST: ``/board`` (page), ``/api/v1/board/{whoami,state}``,
``/api/v1/board/agents/{id}/{state,logout,monitor}``, ``/api/v1/alarms`` (+ ``/ack``,
``/{id}/ack``), ``/api/v1/kpi``, ``/api/v1/reports/{daily,weekly}`` and
``/api/v1/reports/files``, ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from callflow.api.accounts import require
from callflow.api.auth import Principal
from callflow.api.privacy import masked, may_see_numbers
from callflow.board import metrics, reports
from callflow.board.actions import SupervisorActions
from callflow.board.alarms import AlarmKeyError, BoardAlarms
from callflow.board.live_view import LiveView
from callflow.board.metrics import metrics_router
from callflow.board.queue_log import QueueLog, QueueLogFile
from callflow.board.reporting import Reporting
from callflow.dialplan.agi import AgiSession
from callflow.errors import CallflowError, StateError
from callflow.feature import FeatureBase

if TYPE_CHECKING:
    from callflow.service import Service

log = logging.getLogger(__name__)

VIEW_ROLES = ("supervisor", "qa", "admin")
ACT_ROLES = ("supervisor", "admin")
LISTEN_ROLES = VIEW_ROLES  # STD-146: supervisors and QA listen; whisper and barge: supervisors
STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSET_NAME = re.compile(r"[a-z0-9_\-]+\.(js|css|svg|png|ico)")
PHONE = re.compile(r"(PJSIP/)?[A-Za-z0-9_.\-]{1,64}")
#: The HTTP status of a refusal (StateError) by its reason; any other reason is a conflict.
REFUSAL_STATUS = {"unknown_agent": 404, "not_found": 404, "originate_failed": 502}


class StateRequest(BaseModel):
    state: Literal["ready", "busy", "not_ready"]
    reason: str = Field(default="", max_length=64)


class MonitorRequest(BaseModel):
    mode: Literal["listen", "whisper", "barge"]
    phone: str = Field(min_length=1, max_length=70,
                       description="the supervisor's PJSIP endpoint, e.g. sup1 or PJSIP/sup1")


class AckRequest(BaseModel):
    key: str = Field(min_length=3, max_length=120)


class ReportFilesRequest(BaseModel):
    kind: Literal["daily", "weekly"] = "daily"
    date: str | None = None


@dataclass
class BoardOptions:
    """Knobs of the feature (defaults are the product's; tests shorten the delays)."""

    flush_delay_s: float = 0.2  # coalescing window of KPI updates after a change
    tick_s: float = 1.0  # housekeeping: AMI link, long waits, midnight, schedule
    callbacks_refresh_s: float = 30.0
    queue_log_path: Path | None = None  # default <state dir>/queue_log
    report_dir: Path | None = None  # default <state dir>/reports
    schedule_reports: bool = True
    ami_grace_s: float = 15.0  # after start, before a link that never came up is an alarm


class BoardFeature(FeatureBase):
    name = "board"

    def __init__(self, options: BoardOptions | None = None) -> None:
        self.options = options or BoardOptions()
        self._service: Service | None = None
        self._live_view: LiveView | None = None
        self._alarms: BoardAlarms | None = None
        self.queue_log: QueueLog | None = None
        self.queue_log_file: QueueLogFile | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._reporting: Reporting | None = None
        self._actions: SupervisorActions | None = None

    # --- life cycle ----------------------------------------------------------------------

    @property
    def reporting(self) -> Reporting:
        if self._reporting is None:
            raise CallflowError("the board feature is not started")
        return self._reporting

    @property
    def live_view(self) -> LiveView:
        if self._live_view is None:
            raise CallflowError("the board feature is not started")
        return self._live_view

    @property
    def alarms(self) -> BoardAlarms:
        if self._alarms is None:
            raise CallflowError("the board feature is not started")
        return self._alarms

    @property
    def actions(self) -> SupervisorActions:
        if self._actions is None:
            raise CallflowError("the board feature is not started")
        return self._actions

    @property
    def next_reports_at(self) -> datetime | None:
        """When the schedule next writes reports (None: no schedule); may be brought forward."""
        return self.reporting.next_run_at

    @next_reports_at.setter
    def next_reports_at(self, at: datetime | None) -> None:
        self.reporting.next_run_at = at

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.service.policy.calendar.timezone)

    def now(self) -> datetime:
        return self.service.clock.wall()

    async def start(self, service: Service) -> None:
        self._service = service
        assert service.runtime is not None and service.store is not None
        loop = asyncio.get_running_loop()
        alarms = self._alarms = BoardAlarms(service, self.options.ami_grace_s,
                                            started_at=loop.time())
        state_dir = service.settings.state_dir
        roster = {a.agent_id: a for a in service.roster.agents}
        self.queue_log = QueueLog(
            lambda agent_id: roster[agent_id].queues if agent_id in roster else ("main",))
        self.queue_log_file = QueueLogFile(self.options.queue_log_path or state_dir / "queue_log")
        live_view = self._live_view = LiveView(
            service, alarms.book, flush_delay_s=self.options.flush_delay_s,
            callbacks_refresh_s=self.options.callbacks_refresh_s,
            on_queue_views=alarms.check_queues)
        await live_view.load()
        await alarms.load_open()
        self._actions = SupervisorActions(service)
        self._reporting = Reporting(service, self.options.report_dir,
                                    self.options.schedule_reports)
        service.runtime.on_publish(self._observe)
        service.runtime.extend_snapshot("board", live_view.snapshot_part)
        self._ticker = asyncio.create_task(self._tick_forever(), name="board-tick")
        assert live_view.day is not None
        log.info("board: %d calls and %d open alarms today so far", len(live_view.day.calls),
                 len(alarms.book))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._live_view is not None:
            self._live_view.stop()
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        if self.queue_log_file is not None:
            self.queue_log_file.close()

    def routers(self) -> list[APIRouter]:
        return [self._board_router(), self._api_router(), metrics_router(
            lambda: metrics.gather(self.service, self.live_view, len(self.alarms.book)))]

    def agi_routes(self) -> dict[str, Callable[[AgiSession], Any]]:
        return {}

    # --- what the core publishes ------------------------------------------------------------

    def _observe(self, topic: str, payload: dict[str, Any]) -> None:
        """Every publish of the core (Runtime.on_publish), on the loop, in order."""
        if self.queue_log is not None and self.queue_log_file is not None:
            self.queue_log_file.write(self.queue_log.observe(topic, payload))
        self.live_view.observe(topic, payload)
        self.alarms.observe(topic, payload)

    # --- housekeeping ----------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_s)
            try:
                self._tick()
            except Exception:
                log.exception("board: housekeeping failed")

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = self.now()
        self.alarms.check_ami_link(loop.time())
        self.alarms.check_long_waits(now.timestamp())
        if self.live_view.roll_over(now):
            self.alarms.new_day()
        if self.live_view.callbacks_due(loop.time()):
            self._spawn(self.live_view.refresh_callbacks())
        day_done = self.reporting.due(now)
        if day_done is not None:
            self._spawn(self.reporting.write_scheduled(day_done))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- HTTP: the page ---------------------------------------------------------------------

    def _board_router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)

        @router.get("/board")
        async def page() -> FileResponse:
            """The board page; it shows its own login form until a session exists."""
            return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                                headers={"Cache-Control": "no-cache"})

        @router.get("/board/{name}")
        async def asset(name: str) -> FileResponse:
            path = STATIC_DIR / name
            if not ASSET_NAME.fullmatch(name) or not path.is_file():
                raise HTTPException(404, "no such board asset")
            return FileResponse(path, headers={"Cache-Control": "no-cache"})

        return router

    # --- HTTP: data and actions ---------------------------------------------------------------

    def _day(self, raw: str | None) -> date:
        try:
            return self.reporting.day(raw)
        except reports.ReportError as exc:
            raise HTTPException(400, str(exc)) from None

    def _viewer(self, request: Request, roles: tuple[str, ...] = VIEW_ROLES) -> Principal:
        return require(self.service.auth, request, *roles)

    def _api_router(self) -> APIRouter:
        router = APIRouter(prefix="/api/v1", tags=["board"])

        @router.get("/board/whoami")
        async def whoami(request: Request) -> dict[str, Any]:
            """Who the board is logged in as (401 without a session, 403 for agents)."""
            principal = self._viewer(request)
            return {"name": principal.name, "role": principal.role,
                    "may_act": principal.role in ACT_ROLES,
                    "sees_numbers": may_see_numbers(principal)}

        @router.get("/board/state")
        async def state(request: Request) -> dict[str, Any]:
            """The board's figures as the websocket snapshot carries them."""
            principal = self._viewer(request)
            runtime = self.service.runtime
            assert runtime is not None
            body = runtime.snapshot(principal.may_see)
            return body if may_see_numbers(principal) else masked(body)

        @router.post("/board/agents/{agent_id}/state")
        async def force_state(agent_id: str, body: StateRequest,
                              request: Request) -> dict[str, Any]:
            """Force an agent's state as a supervisor (STD-097, STD-099); audited."""
            principal = self._viewer(request, ACT_ROLES)
            try:
                return await self.actions.force_state(principal.name, agent_id, body.state,
                                                      body.reason)
            except StateError as exc:
                raise _refused(exc) from None

        @router.post("/board/agents/{agent_id}/logout")
        async def logout(agent_id: str, request: Request) -> dict[str, Any]:
            """Log an agent out (end of shift forgotten, STD-103); audited."""
            principal = self._viewer(request, ACT_ROLES)
            try:
                return await self.actions.log_out(principal.name, agent_id)
            except StateError as exc:
                raise _refused(exc) from None

        @router.post("/board/agents/{agent_id}/monitor")
        async def monitor(agent_id: str, body: MonitorRequest,
                          request: Request) -> dict[str, Any]:
            """Listen, whisper or barge on the agent's call (STD-146); audited."""
            roles = LISTEN_ROLES if body.mode == "listen" else ACT_ROLES
            principal = self._viewer(request, roles)
            if not PHONE.fullmatch(body.phone):
                raise HTTPException(400, "phone: a PJSIP endpoint name (letters, digits, . _ -)")
            try:
                return await self.actions.monitor(principal.name, agent_id, body.mode,
                                                  body.phone)
            except StateError as exc:
                raise _refused(exc) from None

        @router.get("/alarms")
        async def alarms(request: Request, open: bool = True, limit: int = 200,
                         since: str | None = None) -> dict[str, Any]:
            """Alarms newest first from the store (open only by default)."""
            principal = self._viewer(request)
            if not 1 <= limit <= 1000:
                raise HTTPException(400, "limit must be 1..1000")
            since_at = _parse_instant(since) if since else None
            items = await self.alarms.recent(since_at, open, limit)
            return {"alarms": items if may_see_numbers(principal) else masked(items)}

        @router.post("/alarms/ack")
        async def ack_by_key(body: AckRequest, request: Request) -> dict[str, Any]:
            """Acknowledge an alarm by the key the board shows (audited)."""
            principal = self._viewer(request, ACT_ROLES)
            try:
                return await self.alarms.acknowledge(principal.name, key=body.key)
            except AlarmKeyError as exc:
                raise HTTPException(400, str(exc)) from None
            except StateError as exc:
                raise _refused(exc) from None

        @router.post("/alarms/{alarm_id}/ack")
        async def ack_by_id(alarm_id: int, request: Request) -> dict[str, Any]:
            principal = self._viewer(request, ACT_ROLES)
            try:
                return await self.alarms.acknowledge(principal.name, alarm_id=alarm_id)
            except StateError as exc:
                raise _refused(exc) from None

        @router.get("/kpi")
        async def kpis(request: Request, date_from: str | None = None,
                       date_to: str | None = None, queue: str | None = None,
                       agent: str | None = None, intervals: bool = False) -> dict[str, Any]:
            """KPIs of whole local days ``date_from``..``date_to`` (default today), per queue,
            per agent and in total; ``intervals`` adds the per-interval series (one day)."""
            self._viewer(request)
            try:
                return await self.reporting.kpis(date_from, date_to, queue, agent, intervals)
            except reports.ReportError as exc:
                raise HTTPException(400, str(exc)) from None

        @router.get("/reports/files")
        async def report_files(request: Request) -> dict[str, Any]:
            self._viewer(request)
            return {"files": self.reporting.file_names()}

        @router.post("/reports/files")
        async def write_reports(body: ReportFilesRequest, request: Request) -> dict[str, Any]:
            """Write a day's (or week's) report files now, as the schedule would."""
            self._viewer(request, ACT_ROLES)
            written = await self.reporting.write_files(body.kind, self._day(body.date))
            return {"files": [p.name for p in written]}

        @router.get("/reports/files/{name}")
        async def report_file(name: str, request: Request) -> FileResponse:
            self._viewer(request)
            path = self.reporting.file(name)
            if path is None:
                raise HTTPException(404, "no such report file")
            return FileResponse(path)

        @router.get("/reports/{kind}")
        async def report(kind: str, request: Request, date: str | None = None,
                         by: str = "queue", format: str = "json") -> Any:
            """A daily or weekly report per queue or agent: json, csv or printable html."""
            self._viewer(request)
            if kind not in ("daily", "weekly") or by not in ("queue", "agent") \
                    or format not in ("json", "csv", "html"):
                raise HTTPException(400, "kind daily|weekly, by queue|agent, "
                                         "format json|csv|html")
            built = await self.reporting.report(kind, by, self._day(date))  # type: ignore[arg-type]
            if format == "json":
                return JSONResponse(reports.summary(built))
            text = reports.render(built, format)
            if format == "html":
                return HTMLResponse(text)
            return PlainTextResponse(text, media_type="text/csv", headers={
                "Content-Disposition": f'attachment; filename="{reports.file_name(built, "csv")}"'})

        return router


def _refused(exc: StateError) -> HTTPException:
    return HTTPException(REFUSAL_STATUS.get(exc.reason, 409),
                         {"reason": exc.reason, "detail": exc.detail})


def _parse_instant(raw: str) -> datetime:
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise HTTPException(400, "since: an ISO 8601 time with its zone") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
