"""Predicted beside recorded: the figures ``callflow simulate`` prints.

Both columns come from ``engine/kpi.py`` over KPI facts (recorded calls from the store,
simulated calls from ``agents/simulation.py``), so "service level" or "answered within
3 rings" is computed by one definition whichever side it is on. Only the longest wait,
which the KPI module does not report, is measured here, with its ``seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from callflow.engine import kpi
from callflow.engine.kpi import CallFact, StateSpan
from callflow.engine.policy import Policy


@dataclass(frozen=True)
class DayFigures:
    """One side of the comparison; rates 0..1 (None: nothing to divide). Counts are
    whole for one day, and may be fractional as the mean of several simulated runs."""

    offered: float
    answered: float
    abandoned: float  # including short abandons
    short_abandons: float
    callbacks: float
    service_level: float | None
    within_rings_rate: float | None  # answered within kpi.within_rings_threshold rings
    ring_no_answer: float  # offers the ring limit ended (STD-008)
    asa_s: float | None  # average wait of the answered calls
    longest_wait_s: float  # the longest any caller waited (until answer or hang-up)
    average_acw_s: float | None
    occupancy: float | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def figures(calls: Sequence[CallFact], spans: Sequence[StateSpan], policy: Policy,
            as_of: datetime) -> DayFigures:
    """The day's figures, per queue by its own rules (``kpi.queue_kpis``), then summed."""
    rules_for = kpi.rules_by_queue(policy)
    # the spans go to agent_kpis only: queue_kpis looks a call's ACW up by scanning every
    # (agent, call) pair, quadratic over a day of calls; agent_kpis looks it up by key
    total = kpi.total(kpi.queue_kpis(calls, rules_for, as_of).values())
    acw_s = 0.0
    if spans:
        period = kpi.Period(min(s.started_at for s in spans), as_of)
        agents = kpi.total(kpi.agent_kpis(calls, spans, rules_for, period, as_of).values())
        total.state_s = agents.state_s
        acw_s = agents.acw_s
    average_acw = acw_s / total.handled if total.handled else None
    longest = max((kpi.seconds(c.entered_at, c.answered_at or c.ended_at or as_of)
                   for c in calls), default=0.0)
    return DayFigures(
        offered=total.offered, answered=total.answered,
        abandoned=total.abandoned + total.short_abandons, short_abandons=total.short_abandons,
        callbacks=total.callbacks, service_level=total.service_level,
        within_rings_rate=total.within_rings_rate, ring_no_answer=total.ring_no_answer,
        asa_s=total.asa_s, longest_wait_s=longest, average_acw_s=average_acw,
        occupancy=total.occupancy)


def mean(runs: Sequence[DayFigures]) -> DayFigures:
    """The mean of several simulated runs of one day, figure by figure (a figure that is
    None in a run is left out of that figure's mean)."""
    out: dict[str, Any] = {}
    for name in DayFigures.__dataclass_fields__:
        values = [v for r in runs if (v := getattr(r, name)) is not None]
        out[name] = sum(values) / len(values) if values else None
    return DayFigures(**out)


#: (label, field, kind) rows of the printed table; kind: pct | s | n
ROWS = (("calls offered", "offered", "n"), ("answered", "answered", "n"),
        ("service level", "service_level", "pct"),
        ("answered within the ring threshold", "within_rings_rate", "pct"),
        ("ring-no-answer offers", "ring_no_answer", "n"),
        ("average wait (ASA)", "asa_s", "s"), ("longest wait", "longest_wait_s", "s"),
        ("abandons", "abandoned", "n"), ("  of which short", "short_abandons", "n"),
        ("callbacks", "callbacks", "n"), ("average ACW", "average_acw_s", "s"),
        ("occupancy", "occupancy", "pct"))


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value * 100:.1f} %"
    if kind == "s":
        return f"{value:.1f} s"
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


def table(predicted: DayFigures, recorded: DayFigures | None) -> str:
    """A plain-text table: figure, predicted, recorded, difference (pp for rates)."""
    head = f"{'figure':<36} {'predicted':>12} {'recorded':>12} {'difference':>12}"
    lines = [head, "-" * len(head)]
    for label, name, kind in ROWS:
        p = getattr(predicted, name)
        r = getattr(recorded, name) if recorded is not None else None
        diff = "-"
        if p is not None and r is not None:
            delta = p - r
            diff = (f"{delta * 100:+.1f} pp" if kind == "pct"
                    else f"{delta:+.1f} s" if kind == "s"
                    else f"{delta:+g}" if float(delta).is_integer() else f"{delta:+.1f}")
        lines.append(f"{label:<36} {_cell(p, kind):>12} {_cell(r, kind):>12} {diff:>12}")
    return "\n".join(lines)
