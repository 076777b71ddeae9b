"""The QA scoring sheet (recordings/scoring.py): every rule and every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from callflow.engine.policy import Policy, parse_policy
from callflow.recordings.scoring import (
    MonthRecording,
    MonthReview,
    ReviewError,
    Sheet,
    agent_month_totals,
    monthly_totals,
    score_review,
)

SHEET = Sheet.from_policy(Policy.defaults())


def full(**overrides: int) -> dict[str, object]:
    scores: dict[str, object] = {c.code: c.max for c in SHEET.criteria}
    scores.update(overrides)
    return scores


def test_the_sheet_comes_from_the_policy() -> None:
    assert SHEET.max_total == 100
    codes = [c.code for c in SHEET.criteria]
    assert codes[:5] == ["service_wording", "service_attitude", "tone_intonation",
                         "need_summary", "adaptability"]
    assert {"no_forbidden_phrases", "late_apology", "hold_progress", "identity_check",
            "anything_else", "speech_rate"} <= set(codes)
    shown = SHEET.as_dict()
    fast = next(p for p in shown["penalties"] if p["code"] == "speaking_fast")
    assert (fast["points"], fast["max_points"]) == (5, 20)
    phrase = next(p for p in shown["penalties"] if p["code"] == "non_standard_phrase")
    assert phrase == {"code": "non_standard_phrase", "points": 10,
                      "label": phrase["label"]}
    custom = parse_policy({"recordings": {"criteria": {"speech_rate": 10}},
                           "qa": {"penalties": {"non_standard_phrase": 15}}})
    sheet = Sheet.from_policy(custom)
    assert sheet.max_total == 106
    assert next(p for p in sheet.penalties if p.code == "non_standard_phrase").points == 15


@pytest.mark.std("STD-116")
def test_a_clean_review_totals_its_scores() -> None:
    review = score_review(SHEET, full(adaptability=7), [])
    assert (review.score, review.deducted, review.total, review.unqualified) == (
        97, 0, 97, False)
    assert review.penalties == () and review.unqualified_because == ()


@pytest.mark.std("STD-119")
def test_penalties_per_occurrence_and_the_speaking_rate_range() -> None:
    review = score_review(SHEET, full(), [
        {"code": "non_standard_phrase", "count": 3},
        {"code": "speaking_fast", "count": 1, "points": 15},
        {"code": "data_leak", "count": 2},
        {"code": "speaking_fast"},  # default count 1, least points
    ])
    assert review.deducted == 30 + 15 + 100 + 5
    assert review.total == 100 - 150  # below zero is allowed: a deduction schedule
    assert review.penalties_json()[0] == {"code": "non_standard_phrase", "count": 3,
                                          "points": 10, "deducted": 30}
    assert not review.unqualified


def test_missing_disclosure_and_zero_score_are_unqualified() -> None:
    review = score_review(SHEET, full(), [{"code": "missing_disclosure", "count": 1}])
    assert review.unqualified and review.unqualified_because == ("missing_disclosure",)
    assert review.total == 50
    zero = score_review(SHEET, {c.code: 0 for c in SHEET.criteria}, [])
    assert zero.unqualified and zero.unqualified_because == ("zero_score",)
    assert (zero.score, zero.total) == (0, -50)
    assert zero.penalties_json() == [{"code": "zero_score", "count": 1, "points": 50,
                                      "deducted": 50}]


@pytest.mark.parametrize(("scores", "penalties", "reason"), [
    (full(empathy=3), [], "unknown_criterion"),
    ({"service_wording": 3}, [], "missing_criterion"),
    (full(service_wording=17), [], "score_out_of_range"),
    (full(service_wording=-1), [], "score_out_of_range"),
    (full(service_wording="3"), [], "not_an_integer"),
    (full(service_wording=True), [], "not_an_integer"),
    (full(), [{"code": "swearing", "count": 1}], "unknown_penalty"),
    (full(), [{"code": "data_leak", "count": 0}], "bad_count"),
    (full(), [{"code": "data_leak", "count": 101}], "bad_count"),
    (full(), [{"code": "data_leak", "count": 1.5}], "not_an_integer"),
    (full(), [{"code": "speaking_fast", "points": 25}], "points_out_of_range"),
    (full(), [{"code": "data_leak", "points": 40}], "points_out_of_range"),
    (full(), [{"code": "speaking_fast", "points": "5"}], "not_an_integer"),
])
def test_bad_reviews_are_refused_with_a_reason(scores: dict[str, object],
                                              penalties: list[dict[str, Any]],
                                              reason: str) -> None:
    with pytest.raises(ReviewError) as caught:
        score_review(SHEET, scores, penalties)
    assert caught.value.reason == reason and caught.value.message


def test_monthly_totals_per_agent() -> None:
    rows = monthly_totals([("1001", 90, False), ("1002", -10, True), ("1001", 81, False)])
    assert [(r.agent_id, r.reviews, r.total, r.mean, r.unqualified) for r in rows] == [
        ("1001", 2, 171, 85.5, 0), ("1002", 1, -10, -10.0, 1)]
    assert monthly_totals([]) == []


@pytest.mark.std("STD-115", "STD-117")
def test_agent_month_totals_against_the_minimum() -> None:
    """STD-117 totals per agent; STD-115: monitored = recordings reviewed, not reviews."""
    recordings = [MonthRecording(1, "1001", True), MonthRecording(2, "1001", True),
                  MonthRecording(3, "1001", False), MonthRecording(4, "1002", True),
                  MonthRecording(5, None, False), MonthRecording(6, "1003", False)]
    zero = score_review(SHEET, {c.code: 0 for c in SHEET.criteria}, [])
    fast = score_review(SHEET, full(), [{"code": "non_standard_phrase", "count": 2},
                                        {"code": "speaking_fast", "points": 15}])
    reviews = [
        MonthReview(1, "1001", fast.total, fast.unqualified, fast.penalties_json()),
        MonthReview(1, "1001", 90, False, []),  # a second reviewer, same call
        MonthReview(3, "1001", zero.total, zero.unqualified, zero.penalties_json()),
        MonthReview(4, "1002", 100, False),
        MonthReview(5, None, 70, False),  # no agent: nobody to appraise
    ]
    rows = {r.agent_id: r for r in agent_month_totals(recordings, reviews, minimum=2)}
    assert sorted(rows) == ["1001", "1002", "1003"]
    one = rows["1001"]
    assert (one.recordings, one.selected, one.reviewed, one.reviews) == (3, 2, 2, 3)
    assert (one.total, one.average, one.unqualified) == (65 + 90 - 50, 35.0, 1)
    assert [(p.code, p.count, p.deducted) for p in one.penalties] == [
        ("non_standard_phrase", 2, 20), ("speaking_fast", 1, 15), ("zero_score", 1, 50)]
    assert one.minimum_met
    shown = one.as_dict()
    assert shown["penalties"]["zero_score"] == {"count": 1, "deducted": 50}
    assert (shown["minimum"], shown["minimum_met"], shown["average"]) == (2, True, 35.0)
    two = rows["1002"]
    assert (two.reviewed, two.average, two.penalties, two.minimum_met) == (1, 100.0, (), False)
    nobody = rows["1003"]
    assert (nobody.reviews, nobody.total, nobody.average, nobody.minimum_met) == (
        0, 0, None, False)
    assert agent_month_totals([], [], minimum=5) == []


def test_agent_month_totals_read_penalties_stored_without_deducted() -> None:
    rows = agent_month_totals([MonthRecording(1, "1001", False),
                               MonthRecording(2, "1001", True)], [
        MonthReview(1, "1001", 80, False, [{"code": "data_leak", "count": 2, "points": 50}]),
        MonthReview(2, "1001", 70, True, [{"code": "missing_disclosure"}])], minimum=1)
    assert [(p.code, p.count, p.deducted) for p in rows[0].penalties] == [
        ("data_leak", 2, 100), ("missing_disclosure", 1, 0)]
    assert (rows[0].recordings, rows[0].selected, rows[0].reviewed, rows[0].unqualified) == (
        2, 1, 2, 1)


def test_unqualified_counts_calls_not_reviews() -> None:
    """KPI definitions: unqualified calls. A call two reviewers found unqualified is one call;
    a call whose later review cleared it is not unqualified (the latest review stands)."""
    zero = score_review(SHEET, {c.code: 0 for c in SHEET.criteria}, [])
    reviews = [MonthReview(1, "1001", zero.total, True, zero.penalties_json()),
               MonthReview(1, "1001", zero.total, True, zero.penalties_json()),
               MonthReview(2, "1001", 0, True, []),
               MonthReview(2, "1001", 80, False, [])]
    rows = agent_month_totals([MonthRecording(1, "1001", True), MonthRecording(2, "1001", True)],
                              reviews, minimum=1)
    assert (rows[0].reviews, rows[0].unqualified) == (4, 1)
