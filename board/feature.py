"""The supervisor board (STD-145..148): one ``Feature`` wiring the board's parts.

Everything a supervisor needs, each concern a module of this package:

* ``live_view.py``: today's KPIs per queue and per agent, pushed live and in every
  snapshot (over ``live.py``'s ``LiveDay``);
* ``alarms.py``: the open alarm book, the alarms only the board can see (their rules
  pure, in ``engine/supervision.py``), acknowledgements, audited;
* ``actions.py``: supervisor actions on agents (force a state, log out, listen /
  whisper / barge), audited;
* ``reporting.py``: KPI queries and reports on demand and on a schedule (their layout:
  ``reports.py``);
* ``queue_log.py``: app_queue's ``queue_log``, written live (``<state dir>/queue_log``);
  ``metrics.py``: ``/metrics`` for Prometheus;
* ``routes.py``: every HTTP route (the page, the API, ``/metrics``) and who may use it.

This module only wires them: it builds the parts at start, hands every publish of the
core to the parts that follow it, and runs the housekeeping tick (the AMI link, long
waits, midnight, pending callbacks, the report schedule) that calls into them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from callflow.board.actions import SupervisorActions
from callflow.board.alarms import BoardAlarms
from callflow.board.compliance_view import ComplianceView
from callflow.board.live_view import LiveView
from callflow.board.queue_log import QueueLog, QueueLogFile
from callflow.board.reporting import Reporting
from callflow.board.routes import board_routers
from callflow.dialplan.agi import AgiSession
from callflow.engine.effects import DomainEvent
from callflow.errors import CallflowError
from callflow.feature import FeatureBase

if TYPE_CHECKING:
    from callflow.feature import FeatureServices

log = logging.getLogger(__name__)

Part = TypeVar("Part")


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
    """The board's parts, built at start; the core's publishes and the tick handed to them."""

    name = "board"

    def __init__(self, options: BoardOptions | None = None) -> None:
        self.options = options or BoardOptions()
        self._service: FeatureServices | None = None
        self._live_view: LiveView | None = None
        self._alarms: BoardAlarms | None = None
        self._actions: SupervisorActions | None = None
        self._reporting: Reporting | None = None
        self._compliance: ComplianceView | None = None
        self.queue_log: QueueLog | None = None
        self.queue_log_file: QueueLogFile | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- the parts (the routes reach them here; before start they refuse, like .service) -----

    @property
    def live_view(self) -> LiveView:
        return _started(self._live_view)

    @property
    def alarms(self) -> BoardAlarms:
        return _started(self._alarms)

    @property
    def actions(self) -> SupervisorActions:
        return _started(self._actions)

    @property
    def compliance(self) -> ComplianceView:
        return _started(self._compliance)

    @property
    def reporting(self) -> Reporting:
        return _started(self._reporting)

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

    # --- life cycle ----------------------------------------------------------------------

    async def start(self, service: FeatureServices) -> None:
        self._service = service
        assert service.runtime is not None and service.store is not None
        options = self.options
        loop = asyncio.get_running_loop()
        alarms = self._alarms = BoardAlarms(service, options.ami_grace_s,
                                            started_at=loop.time())
        state_dir = service.settings.state_dir
        roster = {a.agent_id: a for a in service.roster.agents}
        self.queue_log = QueueLog(
            lambda agent_id: roster[agent_id].queues if agent_id in roster else ("main",))
        self.queue_log_file = QueueLogFile(options.queue_log_path or state_dir / "queue_log")
        live_view = self._live_view = LiveView(
            service, alarms.book, flush_delay_s=options.flush_delay_s,
            callbacks_refresh_s=options.callbacks_refresh_s, on_queue_views=alarms.check_queues)
        await live_view.load()
        await alarms.load_open()
        compliance = self._compliance = ComplianceView(service,
                                                         flush_delay_s=options.flush_delay_s)
        await compliance.load()
        self._actions = SupervisorActions(service)
        self._reporting = Reporting(service, options.report_dir, options.schedule_reports)
        service.runtime.on_event(self._observe)
        service.runtime.gate_alarms(alarms.admits)
        service.runtime.extend_snapshot("board", live_view.snapshot_part)
        service.runtime.extend_snapshot("compliance", compliance.snapshot_part)
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
        if self._compliance is not None:
            self._compliance.stop()
        for task in list(self._background):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        if self.queue_log_file is not None:
            self.queue_log_file.close()

    def routers(self) -> list[APIRouter]:
        return board_routers(self)

    def agi_routes(self) -> dict[str, Callable[[AgiSession], Any]]:
        return {}

    def _observe(self, event: DomainEvent) -> None:
        """Every fact of the core (Runtime.on_event), on the loop, in order."""
        if self.queue_log is not None and self.queue_log_file is not None:
            self.queue_log_file.write(self.queue_log.observe(event, self.runtime.epoch_of))
        self.live_view.observe(event)
        self.alarms.observe(event)
        self.compliance.observe(event)

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
        self.compliance.tick()
        if self.live_view.roll_over(now):
            self.alarms.new_day()
        if self.live_view.callbacks_due(loop.time()):
            self._spawn(self.live_view.refresh_callbacks())
        day_done = self.reporting.due(now)
        if day_done is not None:
            self._spawn(self.reporting.write_scheduled(day_done))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A background task of the tick; stop waits for it."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _started(part: Part | None) -> Part:
    if part is None:
        raise CallflowError("the board feature is not started")
    return part
