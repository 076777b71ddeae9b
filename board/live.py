"""The board's live day: today's KPIs kept current from what the core publishes.

The board must show today's figures the moment a call ends (STD-145), for a day
that may hold tens of thousands of calls, on the loop the engine runs on. So the
day is kept in memory, fed by the core's own publishes (call records, agent
states), and the figures are computed with ``engine/kpi.py`` (the one definition
of every KPI) in pieces that add up: ``Kpis`` is additive, so a finished call's
figures are added once to its queue's total and to its interval, and only the
calls still in progress are recomputed when the board asks. ACW belongs to a
call but comes after it: each ACW span is added to its call's queue when it ends.

Nothing here does I/O; ``board/live_view.py`` loads the day from the store at start,
feeds it what the core publishes and pushes what this computes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from callflow.engine import kpi
from callflow.engine.kpi import CallFact, Kpis, OfferFact, Period, StateSpan
from callflow.engine.team_kpi import UNASSIGNED, TeamMap, call_team, team_view

log = logging.getLogger(__name__)

def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


def fact_from_record(record: dict[str, Any], holds: tuple[kpi.HoldFact, ...] = ()
                     ) -> CallFact | None:
    """A published call record (engine/calls.py ``call_record``) as a KPI fact."""
    entered = _time(record.get("entered_at"))
    if entered is None or record.get("direction", "inbound") != "inbound":
        return None
    offers = tuple(
        OfferFact(str(o["agent_id"]), _time(o["started_at"]) or entered,
                  _time(o.get("ended_at")), o.get("result"))
        for o in record.get("offers") or [])
    return CallFact(
        uniqueid=str(record["uniqueid"]), queue=str(record.get("queue") or "main"),
        entered_at=entered, answered_at=_time(record.get("answered_at")),
        ended_at=_time(record.get("ended_at")), agent_id=record.get("agent_id"),
        outcome=record.get("outcome"), ring_started_at=_time(record.get("ring_started_at")),
        offers=offers, holds=holds, transfer_count=int(record.get("transfer_count") or 0),
        released_by=record.get("released_by"),
        # an agent's release is a violation once the release judge (engine/special_calls.py)
        # says so with its agent_hung_up_first alarm (STD-110/111): until then it is not one
        release_compliant=record.get("release_compliant",
                                     True if record.get("released_by") == "agent" else None),
        release_procedure=record.get("release_procedure"),
        disposition=record.get("disposition"), caller=str(record.get("caller_number") or ""),
        routed_at=_time(record.get("routed_at")), menu=bool(record.get("menu")))


@dataclass
class _Queue:
    done: Kpis = field(default_factory=Kpis)  # finished calls (plus their ACW)
    intervals: dict[int, Kpis] = field(default_factory=dict)  # finished calls by interval
    waiting_peaks: dict[int, int] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)  # calls not finished yet


class LiveDay:
    """Today's calls and agent states, and the board's figures from them."""

    def __init__(self, rules_for: Callable[[str], kpi.KpiRules], period: Period,
                 queues: Iterable[str] = (), teams: TeamMap | None = None,
                 centre_rules: kpi.KpiRules | None = None) -> None:
        """``teams``: the roster's teams, for the per-team figures (engine/team_kpi.py);
        ``centre_rules``: the Policy's own rules (a team's service-level target)."""
        self.rules_for = rules_for
        self.period = period
        self.teams_map = teams or TeamMap({}, {})
        self.centre_rules = centre_rules
        # per team (STD-145): finished calls' figures, calls in progress, and each call's
        # team (a finished call keeps the team it ended in; a live one may move)
        # (the no-team row always, so a new day's views replace every row of the old day)
        self.teams: dict[str, _Queue] = {t: _Queue() for t in (*self.teams_map.names,
                                                                UNASSIGNED)}
        self.call_teams: dict[str, str] = {}
        self.dirty_teams: set[str] = set()
        self.calls: dict[str, CallFact] = {}
        self.spans: dict[str, list[StateSpan]] = defaultdict(list)
        self.agent_calls: dict[str, set[str]] = defaultdict(set)
        self.queues: dict[str, _Queue] = {q: _Queue() for q in queues}
        self.dirty_queues: set[str] = set()
        self.dirty_agents: set[str] = set()
        self.finished: set[str] = set()
        # per agent: the figures of their calls (recomputed only when one of them changes)
        # and the seconds of their closed state spans (the open one is added when asked)
        self._agent_call_figures: dict[str, Kpis] = {}
        self._closed_state_s: dict[str, dict[str, float]] = defaultdict(dict)

    # --- feeding ------------------------------------------------------------------------

    def load(self, calls: Iterable[CallFact], spans: Iterable[StateSpan], as_of: datetime
             ) -> None:
        """The day so far from the store (at start); later changes come live."""
        for span in spans:
            self.spans[span.agent_id].append(span)
        for call in calls:
            self._put(call, as_of)
        for queue, calls_of in self._by_queue(self.calls.values()).items():
            rules = self.rules_for(queue)
            profile = kpi.waiting_profile(calls_of, self.period, rules.interval_min, as_of)
            self._queue(queue).waiting_peaks = {i: n for i, n in enumerate(profile) if n}
        for spans_of in self.spans.values():
            for span in spans_of:
                if span.ended_at is not None:
                    self._close_span(span)

    def on_call(self, record: dict[str, Any], as_of: datetime) -> CallFact | None:
        """A published call record; returns the fact when it belongs to today."""
        old = self.calls.get(str(record.get("uniqueid")))
        fact = fact_from_record(record, old.holds if old is not None else ())
        if fact is None or not self.period.holds(fact.entered_at):
            return None
        if old is not None and fact.disposition is None and old.disposition is not None:
            fact = replace(fact, disposition=old.disposition)  # the form came before
        self._put(fact, as_of)
        self._note_waiting(fact.queue, as_of)
        return fact

    def on_agent(self, agent_id: str, state: str, at: datetime, reason: str | None,
                 call_id: str | None) -> StateSpan | None:
        """An agent's state since ``at``; returns the span it closed (if any)."""
        spans = self.spans[agent_id]
        last = spans[-1] if spans else None
        if last is not None and last.ended_at is None and last.state == state \
                and last.reason == reason and last.call_uniqueid == call_id:
            return None  # the same state again (softphone flag, approval, extension)
        closed = None
        if last is not None and last.ended_at is None:
            closed = replace(last, ended_at=max(at, last.started_at))
            spans[-1] = closed
            self._close_span(closed)
        if state != "logged_out":
            spans.append(StateSpan(agent_id, state, at, None, reason, call_id))
        self.dirty_agents.add(agent_id)
        return closed

    def on_hold(self, call_id: str, episode: int, started_at: datetime, ended_at: datetime,
                agent_id: str | None, as_of: datetime) -> None:
        """A finished hold episode (engine/hold.py): talk time excludes it and its length
        is judged (STD-040)."""
        call = self.calls.get(call_id)
        if call is None or episode <= len(call.holds):
            return  # not today's, or known already (loaded from the store, or a repeat)
        hold = kpi.HoldFact(started_at, ended_at, agent_id)
        self._replace(call, replace(call, holds=(*call.holds, hold)), as_of)

    def on_disposition(self, call_id: str, disposition: str, as_of: datetime) -> None:
        """The wrap-up form of a call (STD-092): its disposition feeds the resolution rate."""
        call = self.calls.get(call_id)
        if call is not None and call.disposition != disposition:
            self._replace(call, replace(call, disposition=disposition), as_of)

    def on_release_violation(self, call_id: str, as_of: datetime) -> None:
        """The ``agent_hung_up_first`` alarm (STD-110): count it against the call."""
        call = self.calls.get(call_id)
        if call is not None and call.release_compliant is not False:
            self._replace(call, replace(call, release_compliant=False), as_of)

    def _replace(self, old: CallFact, new: CallFact, as_of: datetime) -> None:
        """A counted call's facts changed: its figures are taken out and put in again."""
        if old.uniqueid in self.finished:
            rules = self.rules_for(old.queue)
            before, after = kpi.call_kpis(old, rules, as_of), kpi.call_kpis(new, rules, as_of)
            queue = self._queue(old.queue)
            queue.done -= before
            queue.done += after
            index = self._interval(old.entered_at, rules)
            queue.intervals[index] -= before
            queue.intervals[index] += after
            team = self._team(self.call_teams[old.uniqueid])
            team.done -= before
            team.done += after
        self.calls[new.uniqueid] = new
        self.dirty_queues.add(new.queue)
        team_name = self.call_teams.get(new.uniqueid)
        if team_name is not None:
            self.dirty_teams.add(team_name)
        for agent_id in {o.agent_id for o in new.offers} | ({new.agent_id} - {None}):
            assert agent_id is not None
            self.dirty_agents.add(agent_id)
            self._agent_call_figures.pop(agent_id, None)

    def _put(self, fact: CallFact, as_of: datetime) -> None:
        uid = fact.uniqueid
        self.calls[uid] = fact
        queue = self._queue(fact.queue)
        for agent_id in {o.agent_id for o in fact.offers} | ({fact.agent_id} - {None}):
            assert agent_id is not None
            self.agent_calls[agent_id].add(uid)
            self.dirty_agents.add(agent_id)
            self._agent_call_figures.pop(agent_id, None)
        self.dirty_queues.add(fact.queue)
        if uid in self.finished:
            return
        team = self._move_team(fact)
        if fact.ended_at is None:
            queue.live.add(uid)
            team.live.add(uid)
            return
        queue.live.discard(uid)
        team.live.discard(uid)
        self.finished.add(uid)
        rules = self.rules_for(fact.queue)
        figures = kpi.call_kpis(fact, rules, as_of)
        queue.done += figures
        team.done += figures
        index = self._interval(fact.entered_at, rules)
        queue.intervals.setdefault(index, Kpis())
        queue.intervals[index] += figures

    def _close_span(self, span: StateSpan) -> None:
        totals = self._closed_state_s[span.agent_id]
        for key, secs in kpi.state_time([span], self.period, span.ended_at or span.started_at
                                        ).items():
            totals[key] = totals.get(key, 0.0) + secs
        if span.state == "acw":
            self._agent_call_figures.pop(span.agent_id, None)
            self._add_acw(span)

    def _add_acw(self, span: StateSpan) -> None:
        """ACW after a call is that call's, in its queue's total (KPI definitions)."""
        call = self.calls.get(span.call_uniqueid or "")
        if call is None or span.ended_at is None:
            return
        secs = kpi.seconds(span.started_at, span.ended_at)
        self._queue(call.queue).done.acw_s += secs
        self.dirty_queues.add(call.queue)
        name = self.call_teams.get(call.uniqueid)
        if name is not None and call.uniqueid in self.finished:
            self._team(name).done.acw_s += secs
            self.dirty_teams.add(name)

    def _note_waiting(self, queue: str, as_of: datetime) -> None:
        index = self._interval(as_of, self.rules_for(queue))
        count = len(self.waiting(queue))
        peaks = self._queue(queue).waiting_peaks
        if count > peaks.get(index, 0):
            peaks[index] = count

    def _move_team(self, fact: CallFact) -> _Queue:
        """The call's team now (a waiting call moves from its queue's team to the team
        of the agent it rings, then of the one who answers), out of the one it was in."""
        name = call_team(fact, self.teams_map)
        old = self.call_teams.get(fact.uniqueid)
        if old is not None and old != name:
            self._team(old).live.discard(fact.uniqueid)
            self.dirty_teams.add(old)
        self.call_teams[fact.uniqueid] = name
        self.dirty_teams.add(name)
        return self._team(name)

    def _team(self, name: str) -> _Queue:
        if name not in self.teams:
            self.teams[name] = _Queue()
        return self.teams[name]

    def _queue(self, name: str) -> _Queue:
        if name not in self.queues:
            self.queues[name] = _Queue()
        return self.queues[name]

    def _interval(self, at: datetime, rules: kpi.KpiRules) -> int:
        return max(0, int((at - self.period.start).total_seconds() // (rules.interval_min * 60)))

    @staticmethod
    def _by_queue(calls: Iterable[CallFact]) -> dict[str, list[CallFact]]:
        out: dict[str, list[CallFact]] = defaultdict(list)
        for call in calls:
            out[call.queue].append(call)
        return out

    # --- figures -----------------------------------------------------------------------

    def waiting(self, queue: str) -> list[CallFact]:
        """Calls of the queue not answered yet (in routing or ringing an agent)."""
        q = self.queues.get(queue)
        if q is None:
            return []
        calls = [self.calls[uid] for uid in q.live]
        return [c for c in calls if c.answered_at is None and c.ended_at is None]

    def queue_kpis(self, queue: str, as_of: datetime) -> Kpis:
        q = self._queue(queue)
        rules = self.rules_for(queue)
        out = Kpis()
        out += q.done
        for uid in q.live:
            out += kpi.call_kpis(self.calls[uid], rules, as_of)
        return out

    def queue_view(self, queue: str, as_of: datetime) -> dict[str, Any]:
        """What the board shows of a queue: the KPIs and the day's series."""
        rules = self.rules_for(queue)
        k = self.queue_kpis(queue, as_of)
        waiting = self.waiting(queue)
        longest = max((kpi.seconds(c.entered_at, as_of) for c in waiting), default=0.0)
        return {
            "queue": queue, "kpi": k.as_dict(), "waiting": len(waiting),
            "longest_wait_s": round(longest, 1),
            "series": self.series(queue, as_of),
            "targets": {"service_level_pct": rules.service_level_target_pct,
                        "average_ring": rules.average_ring_target,
                        "service_level_s": rules.service_level_s,
                        "interval_min": rules.interval_min},
        }

    def series(self, queue: str, as_of: datetime) -> list[dict[str, Any]]:
        """Per interval up to now: offered, answered, service level, most calls waiting."""
        q = self._queue(queue)
        rules = self.rules_for(queue)
        now_index = self._interval(min(as_of, self.period.end), rules)
        live: dict[int, Kpis] = defaultdict(Kpis)
        for uid in q.live:
            call = self.calls[uid]
            live[self._interval(call.entered_at, rules)] += kpi.call_kpis(call, rules, as_of)
        out = []
        step = rules.interval_min * 60
        empty = Kpis()
        for index in range(now_index + 1):
            done, going = q.intervals.get(index), live.get(index)
            if done is not None and going is not None:
                k = Kpis()
                k += done
                k += going
            else:  # read only: no sum to build (most of the day's intervals)
                k = done or going or empty
            start = self.period.start.timestamp() + index * step
            out.append({"t": start, "offered": k.offered, "answered": k.answered,
                        "sl": _round(k.service_level), "ring": _round(k.average_answer_ring),
                        "waiting": q.waiting_peaks.get(index, 0)})
        return out

    def team_kpis(self, team: str, as_of: datetime) -> Kpis:
        """A team's figures today: its finished calls plus its calls in progress."""
        t = self._team(team)
        out = Kpis()
        out += t.done
        for uid in t.live:
            call = self.calls[uid]
            out += kpi.call_kpis(call, self.rules_for(call.queue), as_of)
        return out

    def team_view(self, team: str, as_of: datetime) -> dict[str, Any]:
        """What the board's team view shows of a team (engine/team_kpi.py ``team_view``)."""
        rules = self.centre_rules or self.rules_for("main")
        return team_view(team, self.team_kpis(team, as_of), rules)

    def take_dirty_teams(self) -> set[str]:
        teams, self.dirty_teams = self.dirty_teams, set()
        return teams

    def agent_kpis(self, agent_id: str, as_of: datetime) -> Kpis:
        """kpi.agent_kpis over the agent's calls and spans, from the two caches: a state
        change costs one span, not the agent's whole day (2,000 agents change at once)."""
        figures = self._agent_call_figures.get(agent_id)
        if figures is None:
            calls = [self.calls[uid] for uid in self.agent_calls.get(agent_id, ())]
            acw = [s for s in self.spans.get(agent_id, []) if s.state == "acw"]
            figures = kpi.agent_kpis(calls, acw, self.rules_for, self.period, as_of,
                                     agents=[agent_id])[agent_id]
            figures.state_s = {}
            self._agent_call_figures[agent_id] = figures
        out = Kpis()
        out += figures
        out.state_s = dict(self._closed_state_s.get(agent_id, {}))
        spans = self.spans.get(agent_id)
        if spans and spans[-1].ended_at is None:
            for key, secs in kpi.state_time([spans[-1]], self.period, as_of).items():
                out.state_s[key] = out.state_s.get(key, 0.0) + secs
        return out

    def agent_view(self, agent_id: str, as_of: datetime) -> dict[str, Any]:
        k = self.agent_kpis(agent_id, as_of)
        last = max((self.calls[uid] for uid in self.agent_calls.get(agent_id, ())),
                   key=lambda c: c.entered_at, default=None)
        return {"agent_id": agent_id, "calls": k.handled, "avg_talk_s": _round(k.average_talk_s),
                "avg_acw_s": _round(k.average_acw_s), "rona": k.ring_no_answer,
                "answered": k.answered, "occupancy": _round(k.occupancy),
                "last_queue": last.queue if last is not None else None}

    def take_dirty(self) -> tuple[set[str], set[str]]:
        queues, agents = self.dirty_queues, self.dirty_agents
        self.dirty_queues, self.dirty_agents = set(), set()
        return queues, agents


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
