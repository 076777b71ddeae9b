"""Compliance: the share of verdicts that passed, per rule and per agent, queue, hour, day.

One aggregation, pure, used by the board's live panel, its reports and the compliance
API alike, over verdicts handed in (engine/verdicts.py; the store's rows read back as
``Verdict``s). A verdict that is not applicable counts nowhere: compliance is
passed / (passed + failed).

The trend alarm: a rule whose compliance over the last ``supervision.compliance_window_min``
is under its target raises ``compliance_below_target`` once; it may be raised again only
after the rule was back at or above the target (a standing condition, like the service
level's alarm in engine/supervision.py). The ring rule's target is the within-rings
target (``kpi.within_rings_target_pct``), every other rule's
``supervision.compliance_target_pct``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from callflow.engine.effects import Alarm
from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.engine.verdicts import RING_LIMIT, Outcome, Verdict

Dimension = Literal["rule", "agent", "queue", "hour", "day"]
DIMENSIONS: tuple[Dimension, ...] = ("rule", "agent", "queue", "hour", "day")


@dataclass(frozen=True)
class Tally:
    passed: int = 0
    failed: int = 0

    @property
    def judged(self) -> int:
        return self.passed + self.failed

    @property
    def pct(self) -> float | None:
        return None if not self.judged else round(100.0 * self.passed / self.judged, 1)

    def add(self, outcome: Outcome) -> Tally:
        if outcome is Outcome.PASS:
            return replace(self, passed=self.passed + 1)
        if outcome is Outcome.FAIL:
            return replace(self, failed=self.failed + 1)
        return self

    def remove(self, outcome: Outcome) -> Tally:
        if outcome is Outcome.PASS:
            return replace(self, passed=self.passed - 1)
        if outcome is Outcome.FAIL:
            return replace(self, failed=self.failed - 1)
        return self


_ZERO = Tally()


def group_of(verdict: Verdict, by: Dimension, zone: tzinfo = UTC) -> str:
    """The group a verdict falls in: its agent, its queue, its local hour or day."""
    if by == "rule":
        return ""
    if by == "agent":
        return verdict.agent or ""
    if by == "queue":
        return verdict.queue
    local = datetime.fromtimestamp(verdict.at, zone)
    return local.strftime("%Y-%m-%dT%H:00") if by == "hour" else local.strftime("%Y-%m-%d")


def compliance(verdicts: Iterable[Verdict], by: Dimension = "rule",
               zone: tzinfo = UTC) -> dict[tuple[str, str], Tally]:
    """Tallies per (rule, group) (group "" when ``by`` is "rule")."""
    out: dict[tuple[str, str], Tally] = {}
    for v in verdicts:
        key = (v.rule, group_of(v, by, zone))
        out[key] = out.get(key, Tally()).add(v.outcome)
    return out


def compliance_rows(verdicts: Iterable[Verdict], by: Dimension = "rule",
                    zone: tzinfo = UTC) -> list[dict[str, Any]]:
    """The tallies as rows, sorted by rule then group (the API, the board, the reports)."""
    return rows_of(compliance(verdicts, by, zone), by)


def rows_of(tallies: Mapping[tuple[str, str], Tally], by: Dimension) -> list[dict[str, Any]]:
    return [{"rule": rule, "by": by, "group": group, "passed": t.passed, "failed": t.failed,
             "pct": t.pct}
            for (rule, group), t in sorted(tallies.items())]


LIVE_DIMENSIONS: tuple[Dimension, ...] = ("rule", "agent", "queue")


class RunningCompliance:
    """Today's tallies (per rule, agent and queue) and the trend window's (per rule), kept
    up to date verdict by verdict.

    The board adds a call's verdicts as the call is judged; recounting the whole day at
    each call would cost more and more as the day goes on (issue 20: at 2 calls/s it was
    8 % of the engine by the end of a one-minute bench). A verdict is counted in the
    window from when it arrives until its time is ``window_s`` old (``advance``); the day
    is counted again from the verdicts of the new day when the local date changes.
    """

    def __init__(self, zone: tzinfo, window_s: float) -> None:
        self.zone, self.window_s = zone, window_s
        self.day = ""
        self._day_start = self._next_day = 0.0
        self.today: dict[Dimension, dict[tuple[str, str], Tally]] = {
            by: {} for by in LIVE_DIMENSIONS}
        self.window: dict[tuple[str, str], Tally] = {}
        self._window_n: dict[tuple[str, str], int] = {}  # verdicts (any outcome) per key
        self._in_window: list[tuple[float, int, Verdict]] = []  # a heap by time
        self._seq = 0

    def restart(self, verdicts: Iterable[Verdict], now: float) -> None:
        """Count from scratch: at start (the store's verdicts) and when the day changes."""
        local = datetime.fromtimestamp(now, self.zone)
        self.day = local.strftime("%Y-%m-%d")
        self._day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        self._next_day = datetime.combine(local.date() + timedelta(days=1), time(),
                                          self.zone).timestamp()
        self.today = {by: {} for by in LIVE_DIMENSIONS}
        self.window, self._window_n, self._in_window = {}, {}, []
        self.add(verdicts, now)

    def add(self, verdicts: Iterable[Verdict], now: float) -> None:
        self.advance(now)
        since = now - self.window_s
        for v in verdicts:
            if v.at >= self._day_start:
                for by in LIVE_DIMENSIONS:
                    key = (v.rule, group_of(v, by, self.zone))
                    tallies = self.today[by]
                    tallies[key] = tallies.get(key, _ZERO).add(v.outcome)
            if v.at >= since:
                self._seq += 1
                heapq.heappush(self._in_window, (v.at, self._seq, v))
                key = (v.rule, "")
                self.window[key] = self.window.get(key, _ZERO).add(v.outcome)
                self._window_n[key] = self._window_n.get(key, 0) + 1

    def advance(self, now: float) -> bool:
        """Verdicts older than the window leave it, a new day is counted afresh (its
        verdicts so far are in the window); whether anything changed."""
        if now >= self._next_day:
            self.restart(self.in_window(), now)
            return True
        since = now - self.window_s
        left = False
        while self._in_window and self._in_window[0][0] < since:
            _, _, v = heapq.heappop(self._in_window)
            key = (v.rule, "")
            self._window_n[key] -= 1
            if self._window_n[key]:
                self.window[key] = self.window[key].remove(v.outcome)
            else:  # a rule with no verdict left in the window has no row, as in compliance()
                del self.window[key], self._window_n[key]
            left = True
        return left

    def in_window(self) -> list[Verdict]:
        return [v for _, _, v in self._in_window]



# --- the trend alarm ------------------------------------------------------------------


@dataclass(frozen=True)
class TrendRules:
    window_s: float
    ring_target_pct: float
    target_pct: float

    @classmethod
    def from_policy(cls, policy: Policy) -> TrendRules:
        return cls(window_s=policy.supervision.compliance_window_min * 60,
                   ring_target_pct=policy.kpi.within_rings_target_pct,
                   target_pct=policy.supervision.compliance_target_pct)

    def target(self, rule: str) -> float:
        return self.ring_target_pct if rule == RING_LIMIT else self.target_pct


def check_trend(verdicts: Iterable[Verdict], now: float, rules: TrendRules,
                low: frozenset[str]) -> tuple[list[Alarm], frozenset[str]]:
    """Rules under target over the window ending ``now`` (epoch seconds): alarms for those
    not alarmed yet (``low``), and the new set of rules under target."""
    since = now - rules.window_s
    return trend_alarms(compliance(v for v in verdicts if since <= v.at <= now), rules, low)


@enforces("STD-147", "STD-008", policy=("supervision.compliance_window_min",
                                        "supervision.compliance_target_pct",
                                        "kpi.within_rings_target_pct"))
def trend_alarms(tallies: Mapping[tuple[str, str], Tally], rules: TrendRules,
                 low: frozenset[str]) -> tuple[list[Alarm], frozenset[str]]:
    """The trend alarm from the window's tallies per rule (``check_trend``, or the board's
    running count)."""
    alarms: list[Alarm] = []
    still_low = set(low)
    for (rule, _), tally in sorted(tallies.items()):
        pct = tally.pct
        if pct is None:
            continue
        target = rules.target(rule)
        if pct < target:
            if rule not in still_low:
                still_low.add(rule)
                alarms.append(Alarm("compliance_below_target", {
                    "rule": rule, "compliance_pct": pct, "target_pct": target,
                    "passed": tally.passed, "failed": tally.failed,
                    "window_min": round(rules.window_s / 60, 1)}, std=rule))
        else:
            still_low.discard(rule)
    return alarms, frozenset(still_low)
