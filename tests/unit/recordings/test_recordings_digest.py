"""The morning digest (recordings/digest.py, STD-121): plain rows in, JSON and CSV out."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from callflow.engine.policy import Policy
from callflow.recordings.digest import (
    Digest,
    Finding,
    FlaggedCall,
    as_dict,
    build_digest,
    file_name,
    to_csv,
)
from callflow.recordings.scoring import Sheet, score_review

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 19)
SHEET = Sheet.from_policy(Policy.defaults())


def call(rid: int, hour: int, flags: tuple[str, ...], team: str | None = "A",
         agent: str = "1001", direction: str = "inbound") -> FlaggedCall:
    return FlaggedCall(recording_id=rid, call_id=f"c{rid}", direction=direction,
                       agent_id=agent, number=f"139{rid}",
                       started_at=datetime(2026, 3, 19, hour, 5, tzinfo=ZONE),
                       duration_s=61.25, flags=flags, outcome="answered", team=team)


def finding(review_id: int, minute: int, penalties: list[dict[str, object]], total: int,
            unqualified: bool, team: str | None = "A") -> Finding:
    return Finding(review_id=review_id, recording_id=10 + review_id, reviewer="qa1",
                   at=datetime(2026, 3, 19, 1, minute, tzinfo=UTC), total=total,
                   unqualified=unqualified, penalties=penalties, notes="said 'ok', \"fine\"",
                   agent_id="1002", team=team, number="137", direction="outbound",
                   call_id=f"o{review_id}",
                   call_started_at=datetime(2026, 3, 17, 2, 0, tzinfo=UTC))


def sample_digest(team: str | None = None) -> Digest:
    missing = score_review(SHEET, {c.code: c.max for c in SHEET.criteria},
                           [{"code": "missing_disclosure"},
                            {"code": "non_standard_phrase", "count": 3}])
    zero = score_review(SHEET, {c.code: 0 for c in SHEET.criteria}, [])
    calls = [call(2, 15, ("hold_breach", "late_answer")), call(1, 9, ("late_answer",)),
             call(3, 10, ()),  # not flagged: not an error to go through
             call(4, 11, ("transfer",), team="B", agent="2001", direction="outbound")]
    findings = [finding(2, 30, zero.penalties_json(), zero.total, zero.unqualified, team="B"),
                finding(1, 10, missing.penalties_json(), missing.total, missing.unqualified),
                finding(3, 20, [], 96, False)]
    return build_digest(DAY, calls, findings, team=team)


@pytest.mark.std("STD-121")
def test_the_digest_lists_flagged_calls_and_findings_in_order_with_counts() -> None:
    built = sample_digest()
    assert [c.recording_id for c in built.flagged] == [1, 4, 2]
    assert [f.review_id for f in built.findings] == [1, 3, 2]
    assert [f.review_id for f in built.unqualified] == [1, 2]
    assert built.by_flag == {"hold_breach": 1, "late_answer": 2, "transfer": 1}
    assert built.by_penalty == {"missing_disclosure": 1, "non_standard_phrase": 3,
                                "zero_score": 1}
    shown = as_dict(built)
    assert shown["day"] == "2026-03-19" and shown["unqualified"] == [1, 2]
    assert shown["flagged"][0] == {
        "recording_id": 1, "call_id": "c1", "direction": "inbound", "agent_id": "1001",
        "team": "A", "number": "1391", "started_at": "2026-03-19T01:05:00+00:00",
        "duration_s": 61.25, "flags": ["late_answer"], "outcome": "answered",
        "qa_selected": False}
    first = shown["reviews"][0]
    assert (first["unqualified_because"], first["total"]) == (["missing_disclosure"],
                                                              100 - 50 - 30)
    assert [p["code"] for p in first["penalties"]] == ["missing_disclosure",
                                                       "non_standard_phrase"]
    assert shown["reviews"][2]["unqualified_because"] == ["zero_score"]
    assert shown["counts"] == {"flagged": 3, "reviews": 3, "unqualified": 2,
                               "by_flag": built.by_flag, "by_penalty": built.by_penalty}


def test_one_team_and_an_empty_day() -> None:
    team_b = sample_digest(team="B")
    assert [c.recording_id for c in team_b.flagged] == [4]
    assert [f.review_id for f in team_b.findings] == [2] and team_b.team == "B"
    assert file_name(team_b) == "qa-digest-2026-03-19-B.csv"
    empty = build_digest(DAY, [], [])
    assert as_dict(empty)["counts"] == {"flagged": 0, "reviews": 0, "unqualified": 0,
                                        "by_flag": {}, "by_penalty": {}}
    assert to_csv(empty, ZONE).splitlines()[0].startswith("kind,day,recording_id")
    assert len(to_csv(empty, ZONE).splitlines()) == 1
    assert file_name(empty) == "qa-digest-2026-03-19.csv"
    assert file_name(build_digest(DAY, [], [], team="a/b c")) == "qa-digest-2026-03-19-a_b_c.csv"


def test_csv_is_one_flat_table_in_local_time() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(sample_digest(), ZONE))))
    assert [(r["kind"], r["recording_id"]) for r in rows] == [
        ("flagged", "1"), ("flagged", "4"), ("flagged", "2"),
        ("review", "11"), ("review", "13"), ("review", "12")]
    flagged = rows[2]
    assert (flagged["call_started"], flagged["flags"], flagged["duration_s"],
            flagged["review_id"]) == ("2026-03-19T15:05:00+08:00", "hold_breach late_answer",
                                      "61.2", "")
    review = rows[3]
    assert (review["reviewed_at"], review["call_started"], review["unqualified"],
            review["total"], review["call_id"]) == (
        "2026-03-19T09:10:00+08:00", "2026-03-17T10:00:00+08:00", "yes", "20", "o1")
    assert review["penalties"] == "missing_disclosure x1 (-50); non_standard_phrase x3 (-30)"
    assert review["notes"] == "said 'ok', \"fine\""  # quoted by the csv writer, read back
    assert rows[4]["unqualified"] == "no" and rows[4]["penalties"] == ""


def test_the_digest_counts_unqualified_calls_once_each() -> None:
    """Two reviewers found the same call unqualified: one unqualified call, two reviews."""
    import dataclasses
    first = finding(1, 10, [{"code": "zero_score"}], 0, True)
    second = dataclasses.replace(finding(2, 20, [{"code": "zero_score"}], 0, True),
                                 recording_id=first.recording_id)
    shown = as_dict(build_digest(DAY, [], [first, second]))
    assert shown["counts"]["reviews"] == 2 and shown["counts"]["unqualified"] == 1
    assert shown["unqualified"] == [1, 2]  # both reviews still listed for the team lead
