"""The QA scoring sheet (STD-116, STD-117, STD-119): criteria, penalties, one review's total.

Pure: the sheet is built from the Policy (``recordings.criteria`` for the most points per
criterion, ``qa.penalties`` for the penalty schedule), a review is plain data, and
``score_review`` either returns its total or raises ``ReviewError`` naming what is wrong,
so the API can refuse a bad review with a reason and nothing stored.

Rules (the seeds' words, decisions marked):

* A review scores every criterion of the sheet, each from 0 to its max: a review "written
  in detail" (STD-117) leaves none out.
* Penalties are listed by code with a count (STD-119 counts "per occurrence" and "per
  customer"); "speaking too fast" is a range (5..20 points): the reviewer gives
  ``points`` inside it, the least when omitted.
* total = sum of the scores - sum of points x count; it may fall below zero (a penalty
  schedule is a deduction, not a grade).
* Unqualified (不合格): "not stating activation time, fees or cancellation", or a score of
  zero; the zero score's own 50 points are deducted by the sheet itself (STD-119).
* The month's totals (STD-117) are per agent over the reviews of the calls made that
  month, beside how many of the agent's calls were sampled and reviewed against the
  monitoring minimum (STD-115): ``agent_month_totals``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from callflow.engine.policy import Policy
from callflow.engine.rules import enforces
from callflow.errors import CallflowError

#: Penalty codes and the ``qa.penalties`` fields that give their points (STD-119).
#: ``speaking_fast`` is a range between two fields; ``zero_score`` is applied by the sheet.
PENALTY_FIELDS: dict[str, tuple[str, str]] = {
    "non_standard_phrase": ("non_standard_phrase", "non_standard_phrase"),
    "speaking_fast": ("speaking_fast_min", "speaking_fast_max"),
    "hangup_on_caller": ("hangup_on_caller", "hangup_on_caller"),
    "service_without_consent": ("service_without_consent", "service_without_consent"),
    "data_leak": ("data_leak_per_customer", "data_leak_per_customer"),
    "abuse_after_hangup": ("abuse_after_hangup", "abuse_after_hangup"),
    "missing_disclosure": ("missing_disclosure", "missing_disclosure"),
}
PENALTY_LABELS = {
    "non_standard_phrase": "Non-standard opening/closing/linking phrase or forbidden word",
    "speaking_fast": "Speaking too fast",
    "hangup_on_caller": "Hanging up on a caller who cannot hear",
    "service_without_consent": "Opening a service without consent",
    "data_leak": "Leaking customer data (per customer)",
    "abuse_after_hangup": "Grumbling or abuse after hang-up, raising the voice",
    "missing_disclosure": "Activation time, fees or cancellation not stated: unqualified",
}
#: Penalties that make the review unqualified by themselves.
UNQUALIFYING = frozenset({"missing_disclosure"})
ZERO_SCORE = "zero_score"
MAX_COUNT = 100  # a sanity bound: a count above it is a typo, not a call


class ReviewError(CallflowError):
    """A review the sheet refuses; ``reason`` is a stable code for the API."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Criterion:
    code: str
    label: str
    max: int
    std: str


@dataclass(frozen=True)
class PenaltyRule:
    code: str
    label: str
    points: int  # the least (fixed penalties: the only) points per occurrence
    max_points: int


@dataclass(frozen=True)
class Sheet:
    criteria: tuple[Criterion, ...]
    penalties: tuple[PenaltyRule, ...]
    zero_score_points: int

    @classmethod
    def from_policy(cls, policy: Policy) -> Sheet:
        section = policy.recordings.criteria
        criteria = []
        for code, info in type(section).model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            criteria.append(Criterion(code, info.description or code, getattr(section, code),
                                      str(extra.get("std", ""))))
        table = policy.qa.penalties
        rules = tuple(PenaltyRule(code, PENALTY_LABELS[code], getattr(table, low),
                                  getattr(table, high))
                      for code, (low, high) in PENALTY_FIELDS.items())
        return cls(tuple(criteria), rules, table.zero_score)

    @property
    def max_total(self) -> int:
        return sum(c.max for c in self.criteria)

    def as_dict(self) -> dict[str, Any]:
        """The sheet as the API shows it (``GET /api/v1/recordings/scoring-sheet``)."""
        return {
            "criteria": [{"code": c.code, "label": c.label, "max": c.max, "std": c.std}
                         for c in self.criteria],
            "penalties": [{"code": p.code, "label": p.label, "points": p.points,
                           **({"max_points": p.max_points} if p.max_points != p.points else {})}
                          for p in self.penalties],
            "max_total": self.max_total,
        }


@dataclass(frozen=True)
class AppliedPenalty:
    code: str
    count: int
    points: int  # per occurrence

    @property
    def deducted(self) -> int:
        return self.count * self.points


@dataclass(frozen=True)
class ScoredReview:
    scores: dict[str, int]
    penalties: tuple[AppliedPenalty, ...]
    score: int  # sum of the criteria
    deducted: int
    total: int
    unqualified: bool
    unqualified_because: tuple[str, ...]

    def penalties_json(self) -> list[dict[str, Any]]:
        return [{"code": p.code, "count": p.count, "points": p.points, "deducted": p.deducted}
                for p in self.penalties]


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReviewError("not_an_integer", f"{what} must be a whole number, got {value!r}")
    return value


@enforces("STD-116", "STD-119", policy=("recordings.criteria", "qa.penalties"))
def score_review(sheet: Sheet, scores: Mapping[str, object],
                 penalties: Iterable[Mapping[str, object]]) -> ScoredReview:
    """Validate one review against the sheet and total it; ReviewError says what is wrong."""
    known = {c.code: c for c in sheet.criteria}
    unknown = sorted(set(scores) - set(known))
    if unknown:
        raise ReviewError("unknown_criterion", f"not on the scoring sheet: {', '.join(unknown)}")
    missing = [code for code in known if code not in scores]
    if missing:
        raise ReviewError("missing_criterion", f"score every criterion; missing: "
                                               f"{', '.join(missing)}")
    clean: dict[str, int] = {}
    for code, criterion in known.items():
        value = _int(scores[code], code)
        if not 0 <= value <= criterion.max:
            raise ReviewError("score_out_of_range",
                              f"{code}: {value} is outside 0..{criterion.max}")
        clean[code] = value
    rules = {p.code: p for p in sheet.penalties}
    applied: list[AppliedPenalty] = []
    for item in penalties:
        code = str(item.get("code", ""))
        rule = rules.get(code)
        if rule is None:
            raise ReviewError("unknown_penalty", f"no penalty {code!r} in the schedule")
        count = _int(item.get("count", 1), f"{code}.count")
        if not 1 <= count <= MAX_COUNT:
            raise ReviewError("bad_count", f"{code}: count {count} is outside 1..{MAX_COUNT}")
        points = rule.points
        if item.get("points") is not None:
            points = _int(item["points"], f"{code}.points")
            if not rule.points <= points <= rule.max_points:
                raise ReviewError("points_out_of_range",
                                  f"{code}: {points} points is outside "
                                  f"{rule.points}..{rule.max_points}")
        applied.append(AppliedPenalty(code, count, points))
    score = sum(clean.values())
    because = sorted({p.code for p in applied if p.code in UNQUALIFYING})
    if score == 0:
        applied.append(AppliedPenalty(ZERO_SCORE, 1, sheet.zero_score_points))
        because.append(ZERO_SCORE)
    deducted = sum(p.deducted for p in applied)
    return ScoredReview(clean, tuple(applied), score, deducted, score - deducted,
                        bool(because), tuple(because))


@dataclass(frozen=True)
class MonthTotal:
    """One agent's month (STD-117): reviews, their sum and mean, how many unqualified
    (per review: this legacy summary is per review by name; ``AgentMonth`` counts calls)."""

    agent_id: str
    reviews: int
    total: int
    mean: float
    unqualified: int


def monthly_totals(reviews: Iterable[tuple[str, int, bool]]) -> list[MonthTotal]:
    """``(agent_id, total, unqualified)`` per review of one month -> one row per agent."""
    by_agent: dict[str, list[tuple[int, bool]]] = {}
    for agent_id, total, unqualified in reviews:
        by_agent.setdefault(agent_id, []).append((total, unqualified))
    return [MonthTotal(agent, len(rows), sum(t for t, _ in rows),
                       round(sum(t for t, _ in rows) / len(rows), 2),
                       sum(1 for _, u in rows if u))
            for agent, rows in sorted(by_agent.items())]


@dataclass(frozen=True)
class MonthRecording:
    """A recording of the month as the totals need it: whose, and whether QA sampled it."""

    id: int
    agent_id: str | None
    qa_selected: bool


@dataclass(frozen=True)
class MonthReview:
    """A stored review of one of the month's recordings (``penalties`` as stored)."""

    recording_id: int
    agent_id: str | None
    total: int
    unqualified: bool
    penalties: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class PenaltyTally:
    code: str
    count: int  # occurrences over the month's reviews
    deducted: int  # points


@dataclass(frozen=True)
class AgentMonth:
    """One agent's QA month for appraisal (STD-117) against the monitoring minimum (STD-115).

    ``reviewed`` counts recordings with at least one review (a recording reviewed twice
    is one monitored call); ``reviews`` counts the reviews themselves."""

    agent_id: str
    recordings: int
    selected: int
    reviewed: int
    reviews: int
    total: int
    average: float | None
    unqualified: int
    penalties: tuple[PenaltyTally, ...]
    minimum: int

    @property
    def minimum_met(self) -> bool:
        return self.reviewed >= self.minimum

    def as_dict(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "recordings": self.recordings,
                "selected": self.selected, "reviewed": self.reviewed,
                "reviews": self.reviews, "total": self.total, "average": self.average,
                "unqualified": self.unqualified,
                "penalties": {p.code: {"count": p.count, "deducted": p.deducted}
                              for p in self.penalties},
                "minimum": self.minimum, "minimum_met": self.minimum_met}


def _tally(reviews: Iterable[MonthReview]) -> tuple[PenaltyTally, ...]:
    counts: dict[str, list[int]] = {}
    for review in reviews:
        for penalty in review.penalties:
            code = str(penalty.get("code", ""))
            count = int(penalty.get("count", 1) or 0)
            deducted = penalty.get("deducted")
            points = int(deducted) if deducted is not None \
                else count * int(penalty.get("points", 0) or 0)
            into = counts.setdefault(code, [0, 0])
            into[0] += count
            into[1] += points
    return tuple(PenaltyTally(code, n, pts) for code, (n, pts) in sorted(counts.items()))


@enforces("STD-115", "STD-117", policy=("qa.min_monitored_per_agent_month",))
def agent_month_totals(recordings: Iterable[MonthRecording], reviews: Iterable[MonthReview],
                       minimum: int) -> list[AgentMonth]:
    """The month's QA totals per agent (STD-117), each against ``minimum`` (STD-115).

    A month is the recordings started in it: a review written on the 2nd of the next
    month still counts for the month the call was made, as the appraisal is of that
    month's calls. Every agent with a recording or a review in the month has a row, so
    an agent nobody listened to shows as not meeting the minimum; recordings without an
    agent (never sampled) are left out."""
    recs: dict[str, list[MonthRecording]] = {}
    for rec in recordings:
        if rec.agent_id:
            recs.setdefault(rec.agent_id, []).append(rec)
    revs: dict[str, list[MonthReview]] = {}
    for review in reviews:
        if review.agent_id:
            revs.setdefault(review.agent_id, []).append(review)
    out = []
    for agent in sorted(set(recs) | set(revs)):
        mine, scored = recs.get(agent, []), revs.get(agent, [])
        total = sum(r.total for r in scored)
        out.append(AgentMonth(
            agent, len(mine), sum(1 for r in mine if r.qa_selected),
            len({r.recording_id for r in scored}), len(scored), total,
            round(total / len(scored), 2) if scored else None,
            unqualified_calls(scored), _tally(scored), minimum))
    return out


def unqualified_calls(reviews: Iterable[MonthReview]) -> int:
    """Unqualified calls (KPI definitions: QA-fatal or zero-score calls), counted per call:
    a recording reviewed twice is one call, judged by its latest review (``reviews`` in the
    order they were written; a second review corrects the first)."""
    latest: dict[int, bool] = {}
    for review in reviews:
        latest[review.recording_id] = review.unqualified
    return sum(latest.values())
