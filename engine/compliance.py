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

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
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
    return [{"rule": rule, "by": by, "group": group, "passed": t.passed, "failed": t.failed,
             "pct": t.pct}
            for (rule, group), t in sorted(compliance(verdicts, by, zone).items())]


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


@enforces("STD-147", "STD-008", policy=("supervision.compliance_window_min",
                                        "supervision.compliance_target_pct",
                                        "kpi.within_rings_target_pct"))
def check_trend(verdicts: Iterable[Verdict], now: float, rules: TrendRules,
                low: frozenset[str]) -> tuple[list[Alarm], frozenset[str]]:
    """Rules under target over the window ending ``now`` (epoch seconds): alarms for those
    not alarmed yet (``low``), and the new set of rules under target."""
    since = now - rules.window_s
    tallies = compliance(v for v in verdicts if since <= v.at <= now)
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
