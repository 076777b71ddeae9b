"""The month's QA sample (recordings/sampling.py): spread, flagged, earlier picks, edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.recordings.sampling import Candidate, SampleRules, select_month

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


def daily(agent: str, first_id: int, days: int = 31, hour: int = 10) -> list[Candidate]:
    return [Candidate(first_id + d, agent, START + timedelta(days=d, hours=hour))
            for d in range(days)]


@pytest.mark.std("STD-115")
def test_five_picks_per_agent_one_in_each_fifth_of_the_month() -> None:
    recs = daily("1001", 100) + daily("1002", 200, hour=15)
    picks = select_month(recs, START, END, SampleRules(min_per_agent=5))
    for agent in ("1001", "1002"):
        mine = [p for p in picks if p.agent_id == agent]
        assert len(mine) == 5
        days = sorted((next(r for r in recs if r.id == p.id).started_at - START).days
                      for p in mine)
        slot = 31 / 5
        assert [int(d // slot) for d in days] == [0, 1, 2, 3, 4]
        assert all(p.reason.startswith("spread: slot") for p in mine)
    # deterministic: same input, same picks; another month start, other targets
    assert select_month(list(reversed(recs)), START, END, SampleRules()) == picks


@pytest.mark.std("STD-115")
def test_every_flagged_call_is_added_and_does_not_count_toward_the_minimum() -> None:
    recs = daily("1001", 100)
    recs[3] = Candidate(103, "1001", recs[3].started_at, ("hold_breach",))
    recs[4] = Candidate(104, "1001", recs[4].started_at, ("late_answer", "release_violation"))
    picks = select_month(recs, START, END, SampleRules(min_per_agent=2))
    flagged = [p for p in picks if p.reason.startswith("flagged")]
    assert [(p.id, p.reason) for p in flagged] == [
        (103, "flagged: hold_breach"), (104, "flagged: late_answer, release_violation")]
    assert len(picks) == 4
    off = select_month(recs, START, END, SampleRules(min_per_agent=2, include_flagged=False))
    assert len(off) == 2


def test_earlier_picks_stay_and_count() -> None:
    recs = daily("1001", 100)
    recs[0] = Candidate(100, "1001", recs[0].started_at, selected=True)
    recs[20] = Candidate(120, "1001", recs[20].started_at, selected=True)
    picks = select_month(recs, START, END, SampleRules(min_per_agent=2))
    assert [(p.id, p.reason) for p in picks] == [(100, "selected earlier"),
                                                 (120, "selected earlier")]
    more = select_month(recs, START, END, SampleRules(min_per_agent=4))
    assert len(more) == 4 and {100, 120} <= {p.id for p in more}


def test_calls_bunched_in_one_week_fill_empty_slots_far_apart() -> None:
    recs = [Candidate(i, "1001", START + timedelta(days=20, hours=i)) for i in range(10)]
    picks = select_month(recs, START, END, SampleRules(min_per_agent=3))
    assert len(picks) == 3
    ids = sorted(p.id for p in picks)
    assert ids[0] == 0 and ids[-1] == 9  # the ends of the bunch: as spread as possible
    assert any("empty" in p.reason for p in picks)


def test_fewer_calls_than_the_minimum_all_picked() -> None:
    recs = daily("1001", 100, days=2)
    assert [p.id for p in select_month(recs, START, END, SampleRules(min_per_agent=5))] == [
        100, 101]


def test_outside_the_month_and_without_agent_never_picked() -> None:
    recs = [Candidate(1, None, START + timedelta(days=1)),
            Candidate(2, "1001", START - timedelta(seconds=1)),
            Candidate(3, "1001", END),
            Candidate(4, "1001", START)]
    assert [p.id for p in select_month(recs, START, END, SampleRules())] == [4]
    assert select_month([], START, END, SampleRules()) == []


def test_bad_rules_refused() -> None:
    with pytest.raises(ValueError, match="C-8"):
        select_month([], START, END, SampleRules(min_per_agent=0))
    with pytest.raises(ValueError, match="end after"):
        select_month([], END, START, SampleRules())


@pytest.mark.std("STD-115")
def test_breached_calls_go_to_the_sample_first_whatever_the_flags_setting() -> None:
    """A call with a failed verdict (engine/verdicts.py) is picked before any spread pick,
    even with flagged picks off, and says which rules it broke."""
    recs = daily("1001", 100)
    recs[7] = Candidate(107, "1001", recs[7].started_at, breached=("STD-040", "STD-110"))
    recs[9] = Candidate(109, "1001", recs[9].started_at, ("hold_breach",), breached=("STD-040",))
    picks = select_month(recs, START, END, SampleRules(min_per_agent=2, include_flagged=False))
    breached = [(p.id, p.reason) for p in picks if p.reason.startswith("breached")]
    assert breached == [(107, "breached: STD-040, STD-110"), (109, "breached: STD-040")]
    assert len(picks) == 4  # added to the agent's two spread picks
