"""The board's running compliance counts what a recount of the same verdicts gives.

``RunningCompliance`` adds verdicts one call at a time and lets them leave the trend
window as time passes, instead of recounting the day at every call (issue 20). A
recount with ``compliance_rows`` / ``check_trend`` over the verdicts of the day and of
the window is the reference, checked after every step of random days on a fake clock.
"""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from callflow.engine import compliance
from callflow.engine.verdicts import Outcome, Verdict

ZONE = ZoneInfo("Asia/Shanghai")
RULES = compliance.TrendRules(window_s=600, ring_target_pct=80, target_pct=90)
START = datetime(2026, 12, 7, 23, 30, tzinfo=ZONE).timestamp()  # a day changes on the way


def verdict(rng: random.Random, at: float, n: int) -> Verdict:
    return Verdict(call_id=f"c{n}", rule=rng.choice(("STD-008", "STD-040", "STD-098")),
                   outcome=rng.choice((Outcome.PASS, Outcome.PASS, Outcome.FAIL,
                                       Outcome.NOT_APPLICABLE)),
                   measured=None, limit=None, unit="", agent=rng.choice(("1001", "1002", None)),
                   queue=rng.choice(("sales", "support")), at=at, detail="")


def day_start(now: float) -> float:
    local = datetime.fromtimestamp(now, ZONE)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


@pytest.mark.std("STD-147")
@pytest.mark.parametrize("seed", range(8))
def test_running_counts_equal_a_recount_after_every_call_and_tick(seed: int) -> None:
    rng = random.Random(seed)
    seen: list[Verdict] = []
    running = compliance.RunningCompliance(ZONE, RULES.window_s)
    running.restart([], START)
    low_running = low_recount = frozenset[str]()
    now = START
    for n in range(400):
        now += rng.uniform(0, 20)
        if rng.random() < 0.7:  # a call judged: its verdicts, a little before now
            batch = [verdict(rng, now - rng.uniform(0, 5), n) for _ in range(rng.randint(1, 4))]
            seen.extend(batch)
            running.add(batch, now)
        else:  # the board's tick
            running.advance(now)
        today = [v for v in seen if v.at >= day_start(now)]
        window = [v for v in seen if v.at >= now - RULES.window_s]
        assert running.day == datetime.fromtimestamp(now, ZONE).strftime("%Y-%m-%d")
        for by in compliance.LIVE_DIMENSIONS:
            assert compliance.rows_of(running.today[by], by) == \
                compliance.compliance_rows(today, by, ZONE)
        assert compliance.rows_of(running.window, "rule") == \
            compliance.compliance_rows(window, "rule", ZONE)
        alarms, low_running = compliance.trend_alarms(running.window, RULES, low_running)
        expected, low_recount = compliance.check_trend(seen, now, RULES, low_recount)
        assert alarms == expected and low_running == low_recount


def test_a_verdict_leaves_the_window_when_its_time_is_window_old() -> None:
    running = compliance.RunningCompliance(ZONE, 600)
    running.restart([], START)
    v = Verdict(call_id="c", rule="STD-008", outcome=Outcome.FAIL, measured=None, limit=None,
                unit="", agent="1001", queue="sales", at=START + 10, detail="")
    running.add([v], START + 12)
    assert running.window == {("STD-008", ""): compliance.Tally(failed=1)}
    assert not running.advance(START + 609)
    assert running.advance(START + 611)
    assert running.window == {}
    assert running.today["agent"] == {("STD-008", "1001"): compliance.Tally(failed=1)}
