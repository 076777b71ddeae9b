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

from callflow.agents.events import AgentState
from callflow.api.accounts import require
from callflow.api.auth import Principal
from callflow.api.privacy import masked, may_see_numbers
from callflow.board import reports
from callflow.board.actions import SupervisorActions
from callflow.board.alarms import AlarmKeyError, BoardAlarms
from callflow.board.live import LiveDay
from callflow.board.metrics import MetricsSnapshot, metrics_router
from callflow.board.queue_log import QueueLog, QueueLogFile
from callflow.board.reporting import Reporting
from callflow.dialplan.agi import AgiSession
from callflow.engine import kpi
from callflow.errors import CallflowError, StateError
from callflow.feature import FeatureBase
from callflow.store import repo
from callflow.store.kpi_facts import load_facts

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
        self.live: LiveDay | None = None
        self._alarms: BoardAlarms | None = None
        self.queue_log: QueueLog | None = None
        self.queue_log_file: QueueLogFile | None = None
        self.queue_views: dict[str, dict[str, Any]] = {}
        self.agent_views: dict[str, dict[str, Any]] = {}
        self.callbacks: dict[str, int] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._callbacks_due = 0.0
        self._reporting: Reporting | None = None
        self._actions: SupervisorActions | None = None

    # --- life cycle ----------------------------------------------------------------------

    @property
    def reporting(self) -> Reporting:
        if self._reporting is None:
            raise CallflowError("the board feature is not started")
        return self._reporting

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
        now = self.now()
        self.live = await asyncio.to_thread(self._load_day, now)
        await alarms.load_open()
        self.callbacks = await asyncio.to_thread(service.store.read, repo.open_callbacks_by_queue)
        self._callbacks_due = loop.time() + self.options.callbacks_refresh_s
        self._actions = SupervisorActions(service)
        self._reporting = Reporting(service, self.options.report_dir,
                                    self.options.schedule_reports)
        service.runtime.on_publish(self._observe)
        service.runtime.extend_snapshot("board", self._snapshot_part)
        self._ticker = asyncio.create_task(self._tick_forever(), name="board-tick")
        log.info("board: %d calls and %d open alarms today so far", len(self.live.calls),
                 len(alarms.book))

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        if self.queue_log_file is not None:
            self.queue_log_file.close()

    def routers(self) -> list[APIRouter]:
        return [self._board_router(), self._api_router(), metrics_router(self.metrics)]

    def agi_routes(self) -> dict[str, Callable[[AgiSession], Any]]:
        return {}

    def _queue_names(self) -> list[str]:
        service = self.service
        names = {"main", *service.policy.queues}
        for agent in service.roster.agents:
            names.update(agent.queues)
        if self.live is not None:
            names.update(self.live.queues)
        return sorted(names)

    def _load_day(self, now: datetime) -> LiveDay:
        """Today so far from the store, and the views of every queue and agent (a thread)."""
        service = self.service
        period = kpi.day_period(kpi.local_day(now, self.zone), self.zone)
        facts, spans = load_facts(service.store, period)
        live = LiveDay(kpi.rules_by_queue(service.policy), period, self._queue_names())
        live.load(facts, spans, now)
        live.take_dirty()
        self.queue_views = {q: live.queue_view(q, now) for q in sorted(live.queues)}
        self.agent_views = {a.agent_id: live.agent_view(a.agent_id, now)
                            for a in service.roster.agents}
        return live

    # --- what the core publishes ------------------------------------------------------------

    def _observe(self, topic: str, payload: dict[str, Any]) -> None:
        """Every publish of the core (Runtime.on_publish), on the loop, in order."""
        if self.queue_log is not None and self.queue_log_file is not None:
            self.queue_log_file.write(self.queue_log.observe(topic, payload))
        live = self.live
        if live is None:
            return
        kind = payload.get("type")
        if topic == "alarms" and kind == "alarm":
            if payload.get("kind") == "agent_hung_up_first":
                live.on_release_violation(payload, self.now())
                self._schedule_flush()
            self.alarms.observe(topic, payload)
            return
        if topic != "board":
            return
        if kind == "call" and isinstance(payload.get("call"), dict):
            live.on_call(payload["call"], self.now())
            self._schedule_flush()
        elif kind == "agent_state":
            live.on_agent(payload)
            self._schedule_flush()
        elif kind == "hold_ended":
            live.on_hold(payload, self.now())
            self._schedule_flush()
        elif kind == "task":
            self._callbacks_due = 0.0  # refresh the pending callbacks at the next tick

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.options.flush_delay_s, self._flush)

    def _flush(self) -> None:
        """Recompute what changed and push it: one message for queues, one for agents."""
        self._flush_handle = None
        live = self.live
        if live is None:
            return
        try:
            queues, agents = live.take_dirty()
            now = self.now()
            if queues:
                views = [live.queue_view(q, now) for q in sorted(queues)]
                for view in views:
                    self.queue_views[view["queue"]] = view
                self.service.hub.publish("board", {"type": "queue_kpis", "queues": views})
                self.alarms.check_queues(views)
            if agents:
                agent_views = [live.agent_view(a, now) for a in sorted(agents)]
                for view in agent_views:
                    self.agent_views[view["agent_id"]] = view
                self.service.hub.publish("board", {"type": "agent_kpis", "agents": agent_views})
        except Exception:
            log.exception("board: KPI update failed")

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
        live = self.live
        if live is not None and now >= live.period.end:
            self._new_day(now)
        if loop.time() >= self._callbacks_due:
            self._callbacks_due = loop.time() + self.options.callbacks_refresh_s
            self._spawn(self._refresh_callbacks())
        day_done = self.reporting.due(now)
        if day_done is not None:
            self._spawn(self.reporting.write_scheduled(day_done))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _new_day(self, now: datetime) -> None:
        """Midnight (centre time): today's figures start from zero; states carry over."""
        old = self.live
        assert old is not None
        period = kpi.day_period(kpi.local_day(now, self.zone), self.zone)
        live = LiveDay(old.rules_for, period, self._queue_names())
        for agent_id, spans in old.spans.items():
            if spans and spans[-1].ended_at is None:
                last = spans[-1]
                live.spans[agent_id].append(kpi.StateSpan(agent_id, last.state, period.start,
                                                          None, last.reason,
                                                          last.call_uniqueid))
        self.live = live
        self.alarms.new_day()
        self.queue_views = {q: live.queue_view(q, now) for q in sorted(live.queues)}
        self.agent_views = {a.agent_id: live.agent_view(a.agent_id, now)
                            for a in self.service.roster.agents}
        hub = self.service.hub
        hub.publish("board", {"type": "queue_kpis", "queues": list(self.queue_views.values()),
                              "day": period.start.astimezone(self.zone).date().isoformat()})
        hub.publish("board", {"type": "agent_kpis", "agents": list(self.agent_views.values())})
        log.info("board: a new day, %s", period.start.astimezone(self.zone).date())

    async def _refresh_callbacks(self) -> None:
        store = self.service.store
        assert store is not None
        counts = await asyncio.to_thread(store.read, repo.open_callbacks_by_queue)
        if counts != self.callbacks:
            self.callbacks = counts
            self.service.hub.publish("board", {"type": "callbacks", "pending": counts})

    # --- views ---------------------------------------------------------------------------------

    def _snapshot_part(self, may_see: Callable[[str], bool]) -> dict[str, Any]:
        """``state.board`` of every snapshot (Runtime.extend_snapshot), from cached views."""
        out: dict[str, Any] = {}
        if may_see("board"):
            out.update(self.board_state())
        if may_see("alarms"):
            out["alarms"] = [e.payload() for e in self.alarms.book.open()]
        return out

    def board_state(self) -> dict[str, Any]:
        service = self.service
        policy = service.policy
        live = self.live
        day = live.period.start.astimezone(self.zone).date().isoformat() if live else None
        return {
            "day": day, "zone": policy.calendar.timezone, "now": self.now().timestamp(),
            "queues": [self.queue_views[q] for q in sorted(self.queue_views)],
            "agent_kpis": list(self.agent_views.values()),
            "roster": [{"agent_id": a.agent_id, "name": a.name, "queues": list(a.queues)}
                       for a in service.roster.agents],
            "callbacks": self.callbacks,
            "ami_up": bool(service.ami is not None and service.ami.up),
            "limits": {"max_wait_s": policy.hold.max_wait_s, "hold_limit_s": policy.hold.limit_s,
                       "acw_limit_s": policy.agents.acw_limit_s,
                       "ring_limit_s": policy.rings_to_seconds(
                           policy.answering.ring_limit_rings),
                       "interval_min": policy.kpi.report_interval_min},
            "busy_reasons": [{"code": r.code, "en": r.label_en, "zh": r.label_zh}
                             for r in policy.agents.busy_reasons],
            "not_ready_reasons": [{"code": r.code, "en": r.label_en, "zh": r.label_zh}
                                  for r in policy.agents.not_ready_reasons if not r.system],
        }

    def metrics(self) -> MetricsSnapshot:
        """Gathered on the loop at scrape time (board/metrics.py)."""
        service = self.service
        runtime = service.runtime
        snap = MetricsSnapshot()
        now = self.now().timestamp()
        queues = self._queue_names()
        for q in queues:
            snap.waiting[q] = 0
            snap.connected[q] = 0
            snap.longest_wait_s[q] = 0.0
        if runtime is not None:
            for call in runtime.live_calls():
                q = call.queue
                if call.answered_at is None:
                    snap.waiting[q] = snap.waiting.get(q, 0) + 1
                    snap.longest_wait_s[q] = max(snap.longest_wait_s.get(q, 0.0),
                                                 round(now - call.entered_at, 3))
                else:
                    snap.connected[q] = snap.connected.get(q, 0) + 1
            for state in AgentState:
                snap.agents_by_state[state.value] = 0
            for agent in runtime.agents.values():
                snap.agents_by_state[agent.state.value] += 1
            snap.runtime_errors = runtime.stats.errors
        rules_for = kpi.rules_by_queue(service.policy)
        for q, view in self.queue_views.items():
            k = view["kpi"]
            snap.service_level[q] = k.get("service_level")
            snap.service_level_target[q] = rules_for(q).service_level_target_pct / 100
            snap.asa_s[q] = k.get("asa_s")
            for name in ("offered", "answered", "abandoned", "short_abandons", "callbacks"):
                snap.calls_today[(q, name)] = int(k.get(name) or 0)
        ami = service.ami
        if ami is not None:
            stats = ami.stats
            snap.ami_up = ami.up
            snap.ami_last_lag_s = float(stats.get("last_lag", 0.0))
            snap.ami_max_lag_s = float(stats.get("max_lag", 0.0))
            snap.ami_reconnects = float(stats.get("reconnects", 0.0))
        snap.alarms_open = len(self.alarms.book)
        writer = service.writer
        if writer is not None:
            snap.pending_writes = writer.stats.pending
            snap.write_failures = writer.stats.failures
        hub = service.hub.stats()
        snap.ws_subscribers = hub["subscribers"]
        snap.published = hub["published"]
        return snap

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
