"""Campaign rules on a fake wall clock: contact windows, attempts per number, retry
spacing, who may dial, do-not-call, and the CSV import's row reports."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from callflow.engine import campaigns, outbound
from callflow.engine.campaigns import CampaignRules
from callflow.engine.policy import Policy, parse_policy
from callflow.errors import StateError

TZ = ZoneInfo("Asia/Shanghai")
POLICY = parse_policy({"outbound": {"calling_days": "all_but_holidays"}})
#: Weekdays 10:00-12:00 only, 2 attempts, 45 min apart.
RULES = CampaignRules(7, ("mon", "tue", "wed", "thu", "fri"), time(10), time(12), 2, 45.0)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2026: the 7th is a Monday, the 12th a Saturday."""
    return datetime(2026, 12, day, hour, minute, tzinfo=TZ)


@pytest.mark.parametrize(("t", "open_"), [
    (at(7, 9, 59), False), (at(7, 10), True), (at(7, 11, 59), True), (at(7, 12), False),
    (at(12, 10, 30), False),  # Saturday: not a campaign day
])
def test_the_contact_window_is_the_campaigns_days_and_hours(t: datetime, open_: bool) -> None:
    assert campaigns.is_open(t, RULES, POLICY) is open_


@pytest.mark.std("STD-085")
def test_the_window_never_leaves_the_policys_calling_window() -> None:
    late = CampaignRules(1, (), time(19), time(23, 30), 3, 0.0)
    assert campaigns.is_open(at(7, 20, 59), late, POLICY)
    assert not campaigns.is_open(at(7, 21, 30), late, POLICY)  # STD-085 ends at 21:00
    assert campaigns.next_open(at(7, 21, 30), late, POLICY) == at(8, 19)
    holiday = parse_policy({"outbound": {"calling_days": "all_but_holidays"},
                            "calendar": {"holidays": [date(2026, 12, 8)]}})
    assert campaigns.next_open(at(7, 22), late, holiday) == at(9, 19)


def test_next_open_moves_to_the_next_campaign_day() -> None:
    assert campaigns.next_open(at(7, 8), RULES, POLICY) == at(7, 10)
    assert campaigns.next_open(at(7, 10, 30), RULES, POLICY) == at(7, 10, 30)
    assert campaigns.next_open(at(11, 12, 5), RULES, POLICY) == at(14, 10)  # Fri -> Mon


def test_a_paused_campaign_is_never_open_and_is_skipped_for_everyone() -> None:
    paused = CampaignRules(3, (), time(0), time(23, 59), 3, 0.0, active=False)
    assert not campaigns.is_open(at(7, 10), paused, POLICY)
    assert campaigns.skipped_for("1001", [paused, RULES], at(7, 10), POLICY) == {3}
    assert campaigns.skipped_for(None, [paused, RULES], at(7, 9), POLICY) == {3, 7}


def test_only_the_campaigns_agents_dial_it() -> None:
    mine = CampaignRules(4, (), time(9), time(21), 3, 0.0, agents=("1002",))
    assert campaigns.skipped_for("1001", [mine], at(7, 10), POLICY) == {4}
    assert campaigns.skipped_for("1002", [mine], at(7, 10), POLICY) == frozenset()


def test_retry_spacing_and_window_apply_on_top_of_the_ladder() -> None:
    now = at(7, 11, 30)
    ladder = outbound.decide(outbound.AttemptOutcome.NO_ANSWER, kind="manual", attempts=1,
                             max_attempts=RULES.max_attempts, attempts_today=1, now=now,
                             due_at=now, policy=POLICY)
    assert ladder.retry_at == now + timedelta(minutes=30)  # the Policy's ladder
    # 45 min spacing -> 12:15, past the campaign's 12:00 close -> the next day at 10:00
    assert campaigns.campaign_retry_at(ladder.retry_at, now, RULES, POLICY) == at(8, 10)
    early = at(7, 10)
    assert campaigns.campaign_retry_at(early + timedelta(minutes=30), early, RULES,
                                       POLICY) == at(7, 10, 45)


def test_never_more_attempts_than_the_campaign_allows() -> None:
    now = at(7, 10, 30)
    second = outbound.decide(outbound.AttemptOutcome.BUSY, kind="manual", attempts=2,
                             max_attempts=RULES.max_attempts, attempts_today=2, now=now,
                             due_at=now, policy=POLICY)
    assert second.status == "unreachable" and second.retry_at is None


def test_a_campaign_that_can_never_be_dialled_is_refused() -> None:
    with pytest.raises(StateError, match="window_end must be after"):
        campaigns.check_rules(["mon"], "12:00", "10:00", 3, 30)
    with pytest.raises(StateError, match="unknown days"):
        campaigns.check_rules(["monday"], "10:00", "12:00", 3, 30)
    with pytest.raises(StateError, match="HH:MM"):
        campaigns.check_rules([], "ten", "12:00", 3, 30)
    night = CampaignRules(9, (), time(22), time(23), 3, 0.0)
    with pytest.raises(Exception, match="never meet the calling window"):
        campaigns.next_open(at(7, 10), night, Policy.defaults())


# --- CSV ------------------------------------------------------------------------------------


def test_csv_good_rows_are_kept_bad_rows_reported_one_line_each() -> None:
    text = ("number,name,note\n"
            "139 0000 0001,Wang,prefers mornings\n"
            "not-a-number,Li,\n"
            "\n"
            "13900000002,Zhao\n"
            "(139) 0000-0001,Wang again,\n"
            "+8613900000003,Chen,\n"
            "13900000004,Sun,\n")
    plan = campaigns.parse_numbers_csv(text, max_rows=100)
    assert [(r.row, r.number, r.name) for r in plan.rows] == [
        (2, "13900000001", "Wang"), (7, "+8613900000003", "Chen"), (8, "13900000004", "Sun")]
    lines = [p.line() for p in plan.problems]  # '+' numbers are E.164 (engine/numbers.py)
    assert lines[0].startswith("row 3: ") and "not a phone number" in lines[0]
    assert lines[1:] == ["row 5: 2 cells, the header has 3"]
    assert [p.line() for p in plan.duplicates] == [
        "row 6: 13900000001 duplicates row 2; imported once"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"), ("name,note\nx,y\n", "'number' column"),
    ("number,phone\n1234\n", "among number, name, note"),
    ("number\n" + "1234567\n" * 5, "more than 3 rows"),
])
def test_a_csv_that_cannot_be_read_whole_is_refused_with_one_error(text: str,
                                                                   message: str) -> None:
    with pytest.raises(StateError, match=message) as refused:
        campaigns.parse_numbers_csv(text, max_rows=3)
    assert refused.value.reason == "invalid_csv"


def test_a_number_only_csv_with_a_bom_reads() -> None:
    plan = campaigns.parse_numbers_csv("\ufeffNumber\r\n13900000001\r\n", max_rows=10)
    assert [r.number for r in plan.rows] == ["13900000001"] and not plan.problems


def test_a_campaigns_queue_keeps_it_to_the_agents_serving_that_queue() -> None:
    vip = CampaignRules(5, (), time(9), time(21), 3, 0.0, queue="vip")
    assert campaigns.skipped_for("1001", [vip], at(7, 10), POLICY, ("main",)) == {5}
    assert campaigns.skipped_for("1002", [vip], at(7, 10), POLICY, ("main", "vip")) == set()


def test_a_campaigns_presented_number_comes_first() -> None:
    policy = Policy.model_validate({"outbound": {"caller_id": "4008000000",
                                                 "list_caller_ids": {"winter": "4008001234"}}})
    assert outbound.caller_id_for("manual", policy, key="winter") == "4008001234"
    assert outbound.caller_id_for("manual", policy, key="") == "4008000000"
    route = outbound.OutboundRoute(presented_number="4008009999")
    assert outbound.caller_id_for("manual", Policy.defaults(), route, "spring") == "4008009999"
    assert outbound.presented_keys(policy) == {"winter"}
