"""The board's compliance panel: today's % pass per rule, per agent and per queue, live.

Every ``CallJudged`` the core emits (engine/verdicts.py) is added to today's verdicts at
once; the panel is pushed ``flush_delay_s`` later (the board's coalescing window: a busy
centre judges several calls in it, and the panel is rebuilt and sent once for them) as one
``compliance`` message on topic ``board``
{day, rules: [row], agents: [row], queues: [row], trend: [row]} (rows from
``engine/compliance.py``, the same aggregation the reports and the API use); a
(re)connecting board gets it in its snapshot (``state.compliance``). Today's verdicts
are read back from the store at start, so a restart does not reset the figures.

The trend alarm (``compliance_below_target``, ``engine/compliance.check_trend``) is
checked with each push and on the board's tick (a failure leaving the window
re-arms it); it is raised through the runtime, so it is stored and shown like every
alarm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from callflow.engine import compliance
from callflow.engine.effects import DomainEvent
from callflow.engine.verdicts import CallJudged
from callflow.store import verdicts as verdict_rows

if TYPE_CHECKING:
    from callflow.feature import FeatureServices


class ComplianceView:
    """Today's verdicts (and the trend window's), their compliance, the trend alarm."""

    def __init__(self, service: FeatureServices, *, flush_delay_s: float = 0.0) -> None:
        self._service = service
        self._flush_delay_s = flush_delay_s
        self._flush_handle: asyncio.TimerHandle | None = None
        self.zone = ZoneInfo(service.policy.calendar.timezone)
        self.rules = compliance.TrendRules.from_policy(service.policy)
        self.running = compliance.RunningCompliance(self.zone, self.rules.window_s)
        self.low: frozenset[str] = frozenset()
        self.view: dict[str, Any] = {}

    def _now(self) -> datetime:
        return self._service.clock.wall()

    def _since(self, now: datetime) -> datetime:
        midnight = now.astimezone(self.zone).replace(hour=0, minute=0, second=0,
                                                     microsecond=0)
        return min(midnight, now - timedelta(seconds=self.rules.window_s))

    async def load(self) -> None:
        store = self._service.store
        assert store is not None
        now = self._now()
        since = self._since(now)
        found = await asyncio.to_thread(
            store.read, lambda s: verdict_rows.verdicts_between(s, since, now + timedelta(1)))
        self.running.restart(found, now.timestamp())
        self._recompute(publish=False)

    def observe(self, event: DomainEvent) -> None:
        if isinstance(event, CallJudged):
            self.running.add(event.verdicts, self._now().timestamp())
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(
                    self._flush_delay_s, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._recompute()

    def stop(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def tick(self) -> None:
        """Verdicts leave the window, a new day is counted afresh; the trend re-checked."""
        now = self._now()
        if self.running.advance(now.timestamp()):
            self._recompute()
        else:
            self._check_trend()

    def _recompute(self, publish: bool = True) -> None:
        today = self.running.today
        self.view = {
            "day": self.running.day,
            "rules": compliance.rows_of(today["rule"], "rule"),
            "agents": compliance.rows_of(today["agent"], "agent"),
            "queues": compliance.rows_of(today["queue"], "queue"),
            "trend": [{**row, "target_pct": self.rules.target(row["rule"]),
                       "window_min": round(self.rules.window_s / 60, 1)}
                      for row in compliance.rows_of(self.running.window, "rule")],
        }
        if publish:
            self._service.hub.publish("board", {"type": "compliance", **self.view})
        self._check_trend()

    def _check_trend(self) -> None:
        alarms, self.low = compliance.trend_alarms(self.running.window, self.rules, self.low)
        runtime = self._service.runtime
        if alarms and runtime is not None:
            runtime.execute(alarms)

    async def history(self, first: date, last: date, by: compliance.Dimension,
                      ) -> list[dict[str, Any]]:
        """Compliance of whole local days ``first``..``last`` from the store (the API)."""
        store = self._service.store
        assert store is not None
        since = datetime.combine(first, time(), self.zone)
        until = datetime.combine(last + timedelta(days=1), time(), self.zone)
        found = await asyncio.to_thread(
            store.read, lambda s: verdict_rows.verdicts_between(s, since, until))
        return compliance.compliance_rows(found, by, self.zone)

    async def of_call(self, uniqueid: str) -> list[dict[str, Any]]:
        """The verdicts of one call, as stored."""
        store = self._service.store
        assert store is not None
        found = await asyncio.to_thread(
            store.read, lambda s: verdict_rows.verdicts_of_call(s, uniqueid))
        return [v.as_record() for v in found]

    def snapshot_part(self, may_see: Callable[[str], bool]) -> dict[str, Any]:
        """``state.compliance`` of every snapshot, for those who may see the board."""
        return self.view if may_see("board") else {}
