"""The board's KPIs and reports over the store: on demand, and written on a schedule.

A supervisor asks for the KPIs of whole local days (``/api/v1/kpi``: per queue, per
agent, in total, and per interval for one day) and for daily and weekly reports (JSON,
CSV, printable HTML); the day-shift lead gets report files without asking: after each
local midnight (plus ``reports.SCHEDULE_DELAY``, once the day's last calls are in) the
day's reports, and on Mondays the past week's, are written to ``<state dir>/reports``.

The figures are ``engine/kpi.py``'s over facts read by ``store/kpi_facts.py``, in a
worker thread so the loop never waits for the database; a report's layout is
``reports.py``'s. A bad date or range is a ``ReportError`` (the routes answer 400).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from callflow.board import reports
from callflow.engine import kpi
from callflow.engine.team_kpi import TeamMap, team_kpis, team_view
from callflow.store import repo
from callflow.store import tickets as store_tickets
from callflow.store.db import Store
from callflow.store.kpi_facts import load_facts, load_survey_facts

if TYPE_CHECKING:
    from callflow.feature import FeatureServices

log = logging.getLogger(__name__)

#: The longest span of days one KPI query covers.
MAX_KPI_DAYS = 31


class Reporting:
    """KPI queries and reports for the routes; the report schedule for the board's tick."""

    def __init__(self, service: FeatureServices, report_dir: Path | None, schedule: bool) -> None:
        self._service = service
        self.zone = ZoneInfo(service.policy.calendar.timezone)
        self.report_dir = report_dir or service.settings.state_dir / "reports"
        #: When the schedule next writes reports (None: no schedule); may be brought forward.
        self.next_run_at: datetime | None = \
            reports.next_run(self._now(), self.zone) if schedule else None

    def _now(self) -> datetime:
        return self._service.clock.wall()

    def _store(self) -> Store:
        store = self._service.store
        assert store is not None
        return store

    def _agents(self) -> list[str]:
        return [a.agent_id for a in self._service.roster.agents]

    def _teams(self) -> TeamMap:
        """The roster's teams (the reports' per-team rows, STD-145)."""
        return TeamMap.from_roster((a.agent_id, a.team, a.queues)
                                   for a in self._service.roster.agents)

    def day(self, raw: str | None) -> date:
        """A ``YYYY-MM-DD`` of the API, today (centre time) when not given."""
        return reports.parse_day(raw, kpi.local_day(self._now(), self.zone))

    # --- on demand -------------------------------------------------------------------------

    async def report(self, kind: reports.Kind, by: reports.By, day: date) -> reports.Report:
        return await asyncio.to_thread(reports.load_and_build, self._store(),
                                       self._service.policy, kind, by, day, self._now(),
                                       self._agents(), self._teams())

    async def write_files(self, kind: reports.Kind, day: date) -> list[Path]:
        """A day's (or week's) report files, per queue and per agent, as the schedule would."""
        written: list[Path] = []
        for by in ("queue", "agent"):
            report = await self.report(kind, by, day)
            written += await asyncio.to_thread(reports.write_report_files, report,
                                               self.report_dir)
        return written

    def file_names(self) -> list[str]:
        """The report files written so far (never one still being written)."""
        out_dir = self.report_dir
        names = sorted(p.name for p in out_dir.glob("*.*")) if out_dir.is_dir() else []
        return [n for n in names if not n.endswith(".tmp")]

    def file(self, name: str) -> Path | None:
        """A report file by its name; None for anything else (no path outside the folder)."""
        if not reports.FILE_NAME.fullmatch(name):
            return None
        path = self.report_dir / name
        return path if path.is_file() else None

    async def kpis(self, date_from: str | None, date_to: str | None, queue: str | None,
                   agent: str | None, intervals: bool) -> dict[str, Any]:
        """KPIs of whole local days ``date_from``..``date_to`` (default today), per queue,
        per agent and in total; ``intervals`` adds the per-interval series (one day)."""
        first = self.day(date_from)
        last = self.day(date_to) if date_to else first
        if last < first or (last - first).days >= MAX_KPI_DAYS:
            raise reports.ReportError(f"date_to must be on or after date_from, at most "
                                      f"{MAX_KPI_DAYS} days")
        zone = self.zone
        period = kpi.Period(kpi.day_period(first, zone).start, kpi.day_period(last, zone).end)
        service = self._service
        facts, spans = await asyncio.to_thread(load_facts, self._store(), period)
        now = self._now()
        as_of = min(now, period.end)
        calls = kpi.in_period(facts, period)
        if queue is not None:
            calls = [c for c in calls if c.queue == queue]
        rules_for = kpi.rules_by_queue(service.policy)
        per_queue = kpi.queue_kpis(calls, rules_for, as_of, spans)
        per_agent = kpi.agent_kpis(calls, spans, rules_for, period, as_of,
                                   [agent] if agent else self._agents())
        if agent is not None:
            per_agent = {agent: per_agent.get(agent, kpi.Kpis())}
        body: dict[str, Any] = {
            "period": {"start": period.start.isoformat(), "end": period.end.isoformat(),
                       "zone": str(zone), "as_of": as_of.isoformat()},
            "total": kpi.total(per_queue.values()).as_dict(),
            "queues": {q: k.as_dict() for q, k in sorted(per_queue.items())},
            "agents": {a: k.as_dict() for a, k in sorted(per_agent.items())},
            # STD-145: each call in one team (docs/kpi.md "Teams")
            "teams": {t: team_view(t, k, kpi.KpiRules.from_policy(service.policy))
                      for t, k in sorted(team_kpis(calls, rules_for, self._teams(), as_of,
                                                   spans).items())},
        }
        # issue 19: the tickets logged in the period (timeliness, replies, complaints)
        logged = await asyncio.to_thread(self._store().read, store_tickets.logged_between,
                                         period.start, period.end)
        answered = sum(1 for c in calls if c.answered_at is not None)
        body["tickets"] = kpi.ticket_kpis([store_tickets.facts(t) for t in logged], answered,
                                          as_of, service.policy).as_dict()
        answers = await asyncio.to_thread(load_survey_facts, self._store(), period)
        if queue is not None:
            answers = [a for a in answers if a.queue == queue]
        if agent is not None:
            answers = [a for a in answers if a.agent_id == agent]
        body["survey"] = kpi.survey_kpis(answers)  # STD-120, issue 18
        if intervals:
            if first != last:
                raise reports.ReportError("intervals are given for one day at a time")
            rules = rules_for(queue or "main")
            body["intervals"] = [{"start": start.isoformat(), "kpi": k.as_dict()}
                                 for start, k in kpi.interval_kpis(calls, rules, period, as_of)]
        return body

    async def aftercare(self, uniqueid: str) -> dict[str, Any]:
        """One call's wrap-up forms, missing-form flag and survey answers (issue 18)."""
        return await asyncio.to_thread(self._store().read, repo.call_aftercare, uniqueid)

    # --- on a schedule -----------------------------------------------------------------------

    def due(self, now: datetime) -> date | None:
        """The finished day whose reports are due now (the next run moves on), or None."""
        if self.next_run_at is None or now < self.next_run_at:
            return None
        day_done = (self.next_run_at - reports.SCHEDULE_DELAY).astimezone(self.zone).date()
        self.next_run_at = reports.next_run(now, self.zone)
        return day_done - timedelta(days=1)

    async def write_scheduled(self, day_done: date) -> list[Path]:
        """Every report due once ``day_done`` is over; a failure is logged, never raised."""
        service = self._service
        try:
            return await asyncio.to_thread(reports.run_schedule, self._store(), service.policy,
                                           self.report_dir, day_done, self._now(),
                                           self._agents(), self._teams())
        except Exception:
            log.exception("board: scheduled reports for %s failed", day_done)
            return []
