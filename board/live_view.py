"""The board's live view: today's KPIs per queue and per agent, pushed, no polling.

The board page follows ``/ws/events`` (topics ``board`` and ``alarms``). Agent states
and call records reach it straight from the core; this part adds what the core does not
compute: today's KPIs per queue and per agent (``engine/kpi.py`` over ``LiveDay``),
sent as one ``queue_kpis`` and one ``agent_kpis`` message a fraction of a second after
a change (coalesced, so a burst of events costs one computation), the pending callbacks
per queue, and the AMI link's state. A (re)connecting board gets everything in the
snapshot (``state.board``), built from the views cached here, so a snapshot costs no
computation.

What the board receives (websocket protocol v1, docs/websocket-protocol.md):

* snapshot ``state``: ``agents`` and ``calls`` (the runtime's), and ``board``: ``day``,
  ``zone``, ``now``, ``queues`` (queue views), ``agent_kpis`` (agent views),
  ``team_kpis`` (team views, STD-145), ``roster``,
  ``callbacks`` ({queue: open callback tasks}), ``ami_up``, ``limits``, the busy and
  not-ready reasons, and ``alarms`` (open, when the client may see ``alarms``);
* topic ``board``: the core's ``agent_state``, ``call``, ``task``, ``hold_*``; the
  board's ``queue_kpis`` {queues: [view]} (with ``day`` at midnight), ``agent_kpis``
  {agents: [view]}, ``team_kpis`` {teams: [view]}, ``callbacks`` {pending}, ``ami_link``
  {up} (``alarms.py``).

A queue view is {queue, kpi (``Kpis.as_dict``), waiting, longest_wait_s, series: [{t,
offered, answered, sl, ring, waiting}] per interval, targets}; an agent view is
{agent_id, calls, avg_talk_s, avg_acw_s, rona, answered, occupancy, last_queue}; a team
view is engine/team_kpi.py's ``team_view`` (a call counts for one team: docs/kpi.md).

At midnight (centre time) today's figures start from zero; agents' states carry over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from callflow.agents.changes import AgentChanged, WrapupSubmitted
from callflow.board.alarms import AlarmBook
from callflow.board.live import LiveDay
from callflow.engine import kpi
from callflow.engine.calls import CallChanged, TaskRequested
from callflow.engine.effects import Alarm, DomainEvent
from callflow.engine.hold import HoldChanged
from callflow.engine.outbound import TaskChanged
from callflow.engine.rules import enforces
from callflow.engine.team_kpi import TeamMap
from callflow.store import repo
from callflow.store.kpi_facts import load_facts

if TYPE_CHECKING:
    from callflow.feature import FeatureServices

log = logging.getLogger(__name__)

View = dict[str, Any]


class LiveView:
    """Today's LiveDay fed from the core's publishes; its views cached and pushed."""

    def __init__(self, service: FeatureServices, alarms: AlarmBook, *, flush_delay_s: float,
                 callbacks_refresh_s: float,
                 on_queue_views: Callable[[list[View]], None]) -> None:
        """``alarms``: the open alarms the snapshot shows; ``on_queue_views``: called with
        the queue views just recomputed (the alarm rules read them)."""
        self._service = service
        self._alarms = alarms
        self._flush_delay_s = flush_delay_s
        self._callbacks_refresh_s = callbacks_refresh_s
        self._on_queue_views = on_queue_views
        self.zone = ZoneInfo(service.policy.calendar.timezone)
        self.day: LiveDay | None = None
        self.queue_views: dict[str, View] = {}
        self.agent_views: dict[str, View] = {}
        self.team_views: dict[str, View] = {}
        self.teams = TeamMap.from_roster((a.agent_id, a.team, a.queues)
                                         for a in service.roster.agents)
        self.callbacks: dict[str, int] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._callbacks_due = 0.0

    def _now(self) -> datetime:
        return self._service.clock.wall()

    async def load(self) -> None:
        """Today so far and the pending callbacks, from the store (at start)."""
        store = self._service.store
        assert store is not None
        day, self.queue_views, self.agent_views = \
            await asyncio.to_thread(self._load_day, self._now())
        self.day = day
        self.team_views = self._team_views(day, self._now())
        self.callbacks = await asyncio.to_thread(store.read, repo.open_callbacks_by_queue)
        self._callbacks_due = asyncio.get_running_loop().time() + self._callbacks_refresh_s

    def _load_day(self, now: datetime) -> tuple[LiveDay, dict[str, View], dict[str, View]]:
        """Today so far, and the views of every queue and agent (a worker thread)."""
        service = self._service
        store = service.store
        assert store is not None
        period = kpi.day_period(kpi.local_day(now, self.zone), self.zone)
        facts, spans = load_facts(store, period)
        day = self._new_day(kpi.rules_by_queue(service.policy), period)
        day.load(facts, spans, now)
        day.take_dirty()
        day.take_dirty_teams()
        return day, {q: day.queue_view(q, now) for q in sorted(day.queues)}, \
            {a.agent_id: day.agent_view(a.agent_id, now) for a in service.roster.agents}

    def _new_day(self, rules_for: Callable[[str], kpi.KpiRules], period: kpi.Period
                 ) -> LiveDay:
        return LiveDay(rules_for, period, self.queue_names(), self.teams,
                       kpi.KpiRules.from_policy(self._service.policy))

    @staticmethod
    def _team_views(day: LiveDay, now: datetime) -> dict[str, View]:
        return {t: day.team_view(t, now) for t in sorted(day.teams)}

    def queue_names(self) -> list[str]:
        """Every queue the Policy, the roster or today's calls name."""
        service = self._service
        names = {"main", *service.policy.queues}
        for agent in service.roster.agents:
            names.update(agent.queues)
        if self.day is not None:
            names.update(self.day.queues)
        return sorted(names)

    # --- what the core publishes ------------------------------------------------------------

    def observe(self, event: DomainEvent) -> None:
        """A fact of the core: call records, agent states, holds, release violations, tasks.

        Calls are counted from their record (``call_record``), the same shape the batch
        KPIs read from the store, so the live figures and the reports agree."""
        day = self.day
        if day is None:
            return
        if isinstance(event, Alarm):
            if event.kind == "agent_hung_up_first":
                day.on_release_violation(str(event.detail.get("call_id")), self._now())
                self._schedule_flush()
        elif isinstance(event, CallChanged):
            day.on_call(event.record, self._now())
            self._schedule_flush()
        elif isinstance(event, AgentChanged):
            agent = event.agent
            day.on_agent(agent.agent_id, agent.state.value, self._at(agent.since),
                         agent.reason or None, agent.call_id or None)
            self._schedule_flush()
        elif isinstance(event, HoldChanged) and event.kind == "hold_ended":
            episode = event.holds.episodes[event.episode - 1]
            ended = episode.ended_wall
            if ended is not None:
                day.on_hold(event.holds.call_id, event.episode,
                            datetime.fromtimestamp(episode.started_wall, UTC),
                            datetime.fromtimestamp(ended, UTC), event.holds.agent_id,
                            self._now())
                self._schedule_flush()
        elif isinstance(event, WrapupSubmitted):
            day.on_disposition(event.call_id, event.disposition, self._now())
            self._schedule_flush()
        elif isinstance(event, TaskRequested | TaskChanged):
            self._callbacks_due = 0.0  # refresh the pending callbacks at the next tick

    def _at(self, monotonic: float) -> datetime:
        return datetime.fromtimestamp(self._service.runtime.epoch_of(monotonic), UTC)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._flush_delay_s, self._flush)

    def _flush(self) -> None:
        """Recompute what changed and push it: one message for queues, one for agents."""
        self._flush_handle = None
        day = self.day
        if day is None:
            return
        hub = self._service.hub
        try:
            queues, agents = day.take_dirty()
            now = self._now()
            if queues:
                views = [day.queue_view(q, now) for q in sorted(queues)]
                for view in views:
                    self.queue_views[view["queue"]] = view
                hub.publish("board", {"type": "queue_kpis", "queues": views})
                self._on_queue_views(views)
            if agents:
                agent_views = [day.agent_view(a, now) for a in sorted(agents)]
                for view in agent_views:
                    self.agent_views[view["agent_id"]] = view
                hub.publish("board", {"type": "agent_kpis", "agents": agent_views})
            teams = day.take_dirty_teams()
            if teams:  # STD-145: each team's service level, pushed like the queues'
                team_views = [day.team_view(t, now) for t in sorted(teams)]
                for view in team_views:
                    self.team_views[view["team"]] = view
                hub.publish("board", {"type": "team_kpis", "teams": team_views})
        except Exception:
            log.exception("board: KPI update failed")

    def stop(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()

    # --- housekeeping ----------------------------------------------------------------------

    def roll_over(self, now: datetime) -> bool:
        """Midnight (centre time): today's figures start from zero; states carry over.

        True when a new day began (the views were pushed with the new ``day``)."""
        old = self.day
        if old is None or now < old.period.end:
            return False
        period = kpi.day_period(kpi.local_day(now, self.zone), self.zone)
        day = self._new_day(old.rules_for, period)
        for agent_id, spans in old.spans.items():
            if spans and spans[-1].ended_at is None:
                last = spans[-1]
                day.spans[agent_id].append(kpi.StateSpan(agent_id, last.state, period.start,
                                                         None, last.reason,
                                                         last.call_uniqueid))
        self.day = day
        self.queue_views = {q: day.queue_view(q, now) for q in sorted(day.queues)}
        self.agent_views = {a.agent_id: day.agent_view(a.agent_id, now)
                            for a in self._service.roster.agents}
        self.team_views = self._team_views(day, now)
        hub = self._service.hub
        hub.publish("board", {"type": "queue_kpis", "queues": list(self.queue_views.values()),
                              "day": period.start.astimezone(self.zone).date().isoformat()})
        hub.publish("board", {"type": "agent_kpis", "agents": list(self.agent_views.values())})
        hub.publish("board", {"type": "team_kpis", "teams": list(self.team_views.values())})
        log.info("board: a new day, %s", period.start.astimezone(self.zone).date())
        return True

    def callbacks_due(self, loop_time: float) -> bool:
        """Time to refresh the pending callbacks (every ``callbacks_refresh_s``, or after a
        task changed); the next refresh is then scheduled."""
        if loop_time < self._callbacks_due:
            return False
        self._callbacks_due = loop_time + self._callbacks_refresh_s
        return True

    async def refresh_callbacks(self) -> None:
        """The open callback tasks per queue; pushed when they changed."""
        store = self._service.store
        assert store is not None
        counts = await asyncio.to_thread(store.read, repo.open_callbacks_by_queue)
        if counts != self.callbacks:
            self.callbacks = counts
            self._service.hub.publish("board", {"type": "callbacks", "pending": counts})

    # --- the snapshot ------------------------------------------------------------------------

    def snapshot_part(self, may_see: Callable[[str], bool]) -> dict[str, Any]:
        """``state.board`` of every snapshot (Runtime.extend_snapshot), from cached views."""
        out: dict[str, Any] = {}
        if may_see("board"):
            out.update(self.board_state())
        if may_see("alarms"):
            out["alarms"] = [e.payload() for e in self._alarms.open()]
        return out

    @enforces("STD-145")
    def board_state(self) -> dict[str, Any]:
        service = self._service
        policy = service.policy
        day = self.day
        today = day.period.start.astimezone(self.zone).date().isoformat() if day else None
        return {
            "day": today, "zone": policy.calendar.timezone, "now": self._now().timestamp(),
            "queues": [self.queue_views[q] for q in sorted(self.queue_views)],
            "agent_kpis": list(self.agent_views.values()),
            "team_kpis": [self.team_views[t] for t in sorted(self.team_views)],
            "roster": [{"agent_id": a.agent_id, "name": a.name, "queues": list(a.queues),
                        "team": a.team}
                       for a in service.roster.agents],
            "callbacks": self.callbacks,
            "ami_up": service.runtime.pbx_up,
            "limits": {"max_wait_s": policy.hold.max_wait_s, "hold_limit_s": policy.hold.limit_s,
                       "acw_limit_s": policy.agents.acw_limit_s,
                       "ring_limit_s": policy.rings_to_seconds(
                           policy.answering.ring_limit_rings),
                       "interval_min": policy.kpi.report_interval_min},
            "busy_reasons": [{"code": r.code, "en": r.label_en, "zh": r.label_zh}
                             for r in policy.agents.busy_reasons],
            "not_ready_reasons": [{"code": r.code, "en": r.label_en, "zh": r.label_zh}
                                  for r in policy.agents.not_ready_reasons if not r.system],
            # both languages of every label the board shows (C-3): the page picks its user's
            "state_labels": policy.agents.state_labels.model_dump(),
            "reason_labels": {r.code: {"en": r.label_en, "zh": r.label_zh}
                              for r in (*policy.agents.busy_reasons,
                                        *policy.agents.not_ready_reasons)},
        }
