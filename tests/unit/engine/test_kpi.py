"""KPI definitions on hand-made call sets whose answers are worked out by hand.

Every threshold comes from the default Policy (cn cadence: 5 s a ring, short abandon
5 s, service level 3 rings); the expected figures are written as arithmetic on those
numbers so the test says what the definition says.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callflow.engine import kpi
from callflow.engine.kpi import CallFact, HoldFact, KpiRules, Kpis, OfferFact, StateSpan
from callflow.engine.policy import Policy, QueuePolicy

POLICY = Policy.defaults()
RULES = KpiRules.from_policy(POLICY)
RING = POLICY.ring_cycle_s
ZONE = ZoneInfo(POLICY.calendar.timezone)
DAY = date(2024, 5, 6)
T0 = datetime(2024, 5, 6, 10, 0, tzinfo=ZONE)


def at(s: float, base: datetime = T0) -> datetime:
    return base + timedelta(seconds=s)


def answered_call(uid: str, *, wait_s: float, ring_s: float, talk_s: float = 60.0,
                  agent: str = "1001", queue: str = "main", start: float = 0.0,
                  holds: tuple[HoldFact, ...] = (), **extra: object) -> CallFact:
    """Entered at ``start``; the agent's phone rings for the last ``ring_s`` of ``wait_s``."""
    t_in = at(start)
    t_ans = at(start + wait_s)
    t_ring = at(start + wait_s - ring_s)
    return CallFact(uniqueid=uid, queue=queue, entered_at=t_in, answered_at=t_ans,
                    ended_at=at(start + wait_s + talk_s), agent_id=agent, outcome="answered",
                    ring_started_at=t_ring,
                    offers=(OfferFact(agent, t_ring, t_ans, "answered"),), holds=holds,
                    released_by="caller", **extra)  # type: ignore[arg-type]


def unanswered(uid: str, *, after_s: float, outcome: str = "abandoned", queue: str = "main",
               start: float = 0.0) -> CallFact:
    return CallFact(uniqueid=uid, queue=queue, entered_at=at(start),
                    ended_at=at(start + after_s), outcome=outcome, released_by="caller")


def one_queue(calls: list[CallFact], spans: list[StateSpan] | None = None) -> Kpis:
    result = kpi.queue_kpis(calls, lambda q: RULES, as_of=at(86000), spans=spans or [])
    return result["main"]


@pytest.mark.std("STD-006")
def test_average_answer_ring_and_within_three_rings_std006() -> None:
    """Test hint 2: answers after 4, 9, 14, 12 s of ringing -> rings 1, 2, 3, 3; average 2.25."""
    rings_s = [0.8 * RING, 1.8 * RING, 2.8 * RING, 2.4 * RING]
    calls = [answered_call(f"c{i}", wait_s=r, ring_s=r, start=i * 300)
             for i, r in enumerate(rings_s)]
    k = one_queue(calls)
    assert [kpi.answer_ring(c, RULES) for c in calls] == [1, 2, 3, 3]
    assert k.average_answer_ring == pytest.approx(9 / 4)
    assert k.within_rings_rate == 1.0
    checks = {c.name: c for c in kpi.checks(k, RULES, "queue")}
    assert checks["average answer ring"].passed is False  # 2.25 > 2 (STD-006)
    assert checks[f"answered within {RULES.within_rings} rings"].passed is True


def test_ring_count_edges() -> None:
    assert kpi.ring_count(0.0, RING) == 1  # an instant answer is the first ring
    assert kpi.ring_count(RING, RING) == 1
    assert kpi.ring_count(RING + 0.001, RING) == 2
    assert kpi.ring_count(3 * RING + 1e-9, RING) == 3  # float noise is not a 4th ring


@pytest.mark.std("STD-139", "STD-140")
def test_short_abandons_are_excluded_and_the_rates_add_up() -> None:
    short = RULES.short_abandon_s
    calls = [
        unanswered("s1", after_s=short - 2),  # short
        unanswered("s2", after_s=short),  # "within 5 s" includes 5 s: short
        unanswered("a1", after_s=short + 0.001),  # abandoned
        unanswered("cb", after_s=RULES.long_wait_s, outcome="callback"),
        answered_call("ok1", wait_s=3, ring_s=3, start=60),
        answered_call("ok2", wait_s=3, ring_s=3, start=120),
    ]
    k = one_queue(calls)
    assert (k.offered, k.short_abandons, k.abandoned, k.callbacks, k.answered) == (6, 2, 1, 1, 2)
    assert k.decided == 4  # offered - short abandons
    assert k.answer_rate == 0.5 and k.abandon_rate == 0.25 and k.callback_rate == 0.25
    assert k.answer_rate + k.abandon_rate + k.callback_rate == 1.0


def test_a_call_still_waiting_counts_as_offered_but_in_no_rate() -> None:
    waiting = CallFact(uniqueid="w", queue="main", entered_at=at(0))
    k = kpi.queue_kpis([waiting, answered_call("a", wait_s=1, ring_s=1)], lambda q: RULES,
                       as_of=at(30))["main"]
    assert (k.offered, k.waiting, k.decided) == (2, 1, 1)
    assert k.service_level == 1.0


def test_service_level_asa_and_late_answers() -> None:
    sl = RULES.service_level_s  # 3 rings = 15 s
    waits = [sl - 5, sl, sl + 0.001, 2 * sl]
    calls = [answered_call(f"c{i}", wait_s=w, ring_s=2, start=i * 300)
             for i, w in enumerate(waits)]
    calls.append(unanswered("gone", after_s=sl + 20, start=2000))
    k = one_queue(calls)
    assert k.in_service_level == 2  # "total wait <= 3 rings": exactly 15 s is in time
    assert k.service_level == pytest.approx(2 / 5)  # abandon counts in the denominator
    assert k.late_answers == 2  # wait > 15 s needs the apology opening (STD-009)
    assert k.asa_s == pytest.approx(sum(waits) / 4)
    assert kpi.checks(k, RULES, "queue")[2].name == "service level"
    assert kpi.checks(k, RULES, "queue")[2].passed is False  # 40 % < 80 %


def test_queue_override_of_the_service_level_target() -> None:
    policy = Policy.model_validate({"queues": {"vip": QueuePolicy(service_level_target_pct=95)
                                               .model_dump(exclude_none=True)}})
    rules_for = kpi.rules_by_queue(policy)
    assert rules_for("vip").service_level_target_pct == 95
    assert rules_for("main").service_level_target_pct == POLICY.kpi.service_level_target_pct


@pytest.mark.std("STD-101")
def test_average_talk_time_is_checked_against_the_policy_target() -> None:
    """ACD = talk time / calls talked; over ``kpi.talk_average_target_s`` the check fails."""
    target = RULES.talk_target_s
    calls = [answered_call("a", wait_s=5, ring_s=5, talk_s=target - 30),
             answered_call("b", wait_s=5, ring_s=5, talk_s=target + 10, start=600)]
    k = one_queue(calls)
    assert k.average_talk_s == pytest.approx(target - 10)
    assert {c.name: c for c in kpi.checks(k, RULES, "queue")}[
        "average talk time (ACD)"].passed is True
    k = one_queue([*calls, answered_call("c", wait_s=5, ring_s=5, talk_s=target + 60,
                                         start=1200)])
    assert k.average_talk_s == pytest.approx(target + 40 / 3)
    assert {c.name: c for c in kpi.checks(k, RULES, "queue")}[
        "average talk time (ACD)"].passed is False


@pytest.mark.std("STD-100", "STD-144")
def test_talk_hold_acw_aht_per_queue_and_agent() -> None:
    """Talk = t_end - t_ans - hold; ACW only from the acw state linked to the call."""
    hold = HoldFact(at(20), at(20 + 12), "1001")
    call = answered_call("c1", wait_s=5, ring_s=5, talk_s=100, holds=(hold,))
    t_end = call.ended_at
    assert t_end is not None
    spans = [
        StateSpan("1001", "ready", at(-100), at(0)),
        StateSpan("1001", "ringing", at(0), at(5), call_uniqueid="c1"),
        StateSpan("1001", "on_call", at(5), at(20), call_uniqueid="c1"),
        StateSpan("1001", "on_hold", at(20), at(32), call_uniqueid="c1"),
        StateSpan("1001", "on_call", at(32), t_end, call_uniqueid="c1"),
        StateSpan("1001", "acw", t_end, t_end + timedelta(seconds=40), call_uniqueid="c1"),
        StateSpan("1001", "busy", t_end + timedelta(seconds=40), t_end + timedelta(seconds=340),
                  reason="meal"),
    ]
    k = one_queue([call], spans)
    assert (k.handled, k.talk_s, k.hold_s, k.acw_s) == (1, 88.0, 12.0, 40.0)
    assert k.aht_s == 140.0 and k.hold_episodes == 1 and k.hold_breaches == 0
    period = kpi.day_period(DAY, ZONE)
    agent = kpi.agent_kpis([call], spans, lambda q: RULES, period, at(86000))["1001"]
    assert (agent.handled, agent.talk_s, agent.average_acw_s) == (1, 88.0, 40.0)
    assert agent.state_s == {"ready": 100.0, "ringing": 5.0, "on_call": 88.0,
                             "on_hold": 12.0, "acw": 40.0, "busy:meal": 300.0}
    assert agent.online_s == 545.0
    # occupancy: (ringing + talk + hold + ACW) / (that + ready); busy is excluded
    assert agent.occupancy == pytest.approx(145 / (145 + 100))


def test_hold_breaches_by_episode_or_by_call_c5() -> None:
    limit = RULES.hold_limit_s
    holds = (HoldFact(at(10), at(10 + limit - 10)), HoldFact(at(40), at(40 + limit - 10)))
    call = answered_call("c", wait_s=2, ring_s=2, talk_s=200, holds=holds)
    assert one_queue([call]).hold_breaches == 0  # each episode within the limit
    call_scope = KpiRules(**{**RULES.__dict__, "hold_breach_scope": "call"})
    k = kpi.queue_kpis([call], lambda q: call_scope, at(1000))["main"]
    assert k.hold_breaches == 1  # together they exceed it
    long_hold = answered_call("L", wait_s=2, ring_s=2, talk_s=400,
                              holds=(HoldFact(at(10), at(10 + RULES.long_wait_s)),))
    k = one_queue([long_hold])
    assert (k.hold_breaches, k.long_waits) == (1, 1)  # STD-040 and STD-043


def test_rona_counts_per_agent_and_the_answer_ring_is_the_answering_agents() -> None:
    """Test hint 1: A rings 3 rings unanswered, the call moves to B, who answers in 1 s."""
    limit = 3 * RING
    offers = (OfferFact("1001", at(1), at(1 + limit), "no_answer"),
              OfferFact("1002", at(1 + limit), at(2 + limit), "answered"))
    call = CallFact(uniqueid="c", queue="main", entered_at=at(0), answered_at=at(2 + limit),
                    ended_at=at(100), agent_id="1002", outcome="answered",
                    ring_started_at=at(1 + limit), offers=offers, released_by="caller")
    k = one_queue([call])
    assert (k.ring_no_answer, k.average_answer_ring, k.late_answers) == (1, 1, 1)
    period = kpi.day_period(DAY, ZONE)
    agents = kpi.agent_kpis([call], [], lambda q: RULES, period, at(1000))
    assert (agents["1001"].ring_no_answer, agents["1001"].handled) == (1, 0)
    assert (agents["1002"].ring_no_answer, agents["1002"].handled) == (0, 1)
    assert agents["1001"].answered == 0 and agents["1002"].answered == 1


def test_transfer_splits_talk_between_agents_and_counts_once_per_queue() -> None:
    a_answers, b_answers, end = at(5), at(65), at(155)
    offers = (OfferFact("1001", at(2), a_answers, "answered"),
              OfferFact("1002", at(60), b_answers, "answered"))
    holds = (HoldFact(at(30), at(40), "1001"),)
    call = CallFact(uniqueid="t", queue="main", entered_at=at(0), answered_at=a_answers,
                    ended_at=end, agent_id="1001", outcome="answered", ring_started_at=at(2),
                    offers=offers, holds=holds, transfer_count=1, released_by="caller")
    spans = [StateSpan("1001", "acw", b_answers, b_answers + timedelta(seconds=20),
                       call_uniqueid="t"),
             StateSpan("1002", "acw", end, end + timedelta(seconds=30), call_uniqueid="t")]
    q = one_queue([call], spans)
    assert (q.answered, q.handled, q.talk_s, q.acw_s, q.transferred) == (1, 1, 140.0, 50.0, 1)
    assert q.one_stop_rate == 0.0
    agents = kpi.agent_kpis([call], spans, lambda r: RULES, kpi.day_period(DAY, ZONE), at(1e4))
    a, b = agents["1001"], agents["1002"]
    assert (a.handled, a.talk_s, a.hold_s, a.acw_s, a.answered) == (1, 50.0, 10.0, 20.0, 1)
    assert (b.handled, b.talk_s, b.hold_s, b.acw_s, b.answered) == (1, 90.0, 0.0, 30.0, 0)
    assert b.ring_measured == 0  # only the answering agent's ringing is an answer ring


def test_a_call_spanning_midnight_belongs_to_the_day_it_entered() -> None:
    late = datetime(2024, 5, 6, 23, 59, 50, tzinfo=ZONE)
    t_ans, t_end = late + timedelta(seconds=8), late + timedelta(seconds=190)
    call = CallFact(uniqueid="m", queue="main", entered_at=late, answered_at=t_ans,
                    ended_at=t_end, agent_id="1001", outcome="answered",
                    ring_started_at=late + timedelta(seconds=1),
                    offers=(OfferFact("1001", late + timedelta(seconds=1), t_ans, "answered"),),
                    released_by="caller")
    spans = [StateSpan("1001", "on_call", t_ans, t_end, call_uniqueid="m"),
             StateSpan("1001", "acw", t_end, t_end + timedelta(seconds=30), call_uniqueid="m"),
             StateSpan("1001", "ready", t_end + timedelta(seconds=30), None)]
    monday, tuesday = kpi.day_period(DAY, ZONE), kpi.day_period(DAY + timedelta(days=1), ZONE)
    as_of = datetime(2024, 5, 7, 1, 0, tzinfo=ZONE)
    day1 = kpi.queue_kpis(kpi.in_period([call], monday), lambda q: RULES, as_of, spans)
    day2 = kpi.queue_kpis(kpi.in_period([call], tuesday), lambda q: RULES, as_of, spans)
    assert day1["main"].answered == 1 and day1["main"].talk_s == 182.0
    assert day1["main"].acw_s == 30.0  # the ACW after midnight follows its call
    assert day2 == {}
    # agent state time, belonging to no call, is cut at midnight
    a1 = kpi.agent_kpis(kpi.in_period([call], monday), spans, lambda q: RULES, monday, as_of)
    a2 = kpi.agent_kpis(kpi.in_period([call], tuesday), spans, lambda q: RULES, tuesday, as_of)
    assert a1["1001"].state_s == {"on_call": 2.0}
    assert a2["1001"].state_s["on_call"] == 180.0 and a2["1001"].state_s["acw"] == 30.0
    assert a2["1001"].handled == 0 and a1["1001"].handled == 1


def test_day_period_follows_the_centre_zone_and_dst() -> None:
    period = kpi.day_period(DAY, ZONE)
    assert period.start == datetime(2024, 5, 5, 16, 0, tzinfo=UTC)  # Shanghai is UTC+8
    ny = ZoneInfo("America/New_York")
    spring = kpi.day_period(date(2024, 3, 10), ny)
    assert spring.end - spring.start == timedelta(hours=23)
    week = kpi.week_period(DAY, ZONE)
    assert week.end - week.start == timedelta(days=7)


@pytest.mark.std("STD-110")
def test_agent_first_hang_ups_std110() -> None:
    plain = answered_call("p", wait_s=1, ring_s=1)
    agent_first = answered_call("a", wait_s=1, ring_s=1, start=100)
    agent_first = CallFact(**{**agent_first.__dict__, "released_by": "agent"})
    compliant = CallFact(**{**agent_first.__dict__, "uniqueid": "b",
                            "release_compliant": True})
    special = CallFact(**{**agent_first.__dict__, "uniqueid": "s",
                          "release_procedure": "silent"})
    assert one_queue([plain, agent_first, compliant, special]).agent_first_hangups == 1


def test_intervals_and_the_waiting_profile() -> None:
    period = kpi.Period(T0, T0 + timedelta(hours=1))
    step = RULES.interval_min * 60
    calls = [
        answered_call("a", wait_s=30, ring_s=2, start=10),  # waits 10..40
        answered_call("b", wait_s=30, ring_s=2, start=20),  # waits 20..50: 2 at once
        CallFact(uniqueid="c", queue="main", entered_at=at(step - 10)),  # still waiting
    ]
    as_of = at(2 * step + 5)
    series = kpi.interval_kpis(calls, RULES, period, as_of)
    assert len(series) == 60 // RULES.interval_min
    assert [k.offered for _, k in series[:2]] == [3, 0]
    profile = kpi.waiting_profile(calls, period, RULES.interval_min, as_of)
    # 2 at once in the first interval; "c" is still waiting through the second and third
    assert profile[:4] == [2, 1, 1, 0]


def test_kpis_merge_and_serialise() -> None:
    a = one_queue([answered_call("x", wait_s=1, ring_s=1)])
    b = one_queue([unanswered("y", after_s=60)])
    merged = kpi.total([a, b])
    assert (merged.offered, merged.answered, merged.abandoned) == (2, 1, 1)
    out = merged.as_dict()
    assert out["answer_rate"] == 0.5 and out["offered"] == 2 and out["occupancy"] is None
    assert Kpis().as_dict()["service_level"] is None  # nothing to divide: no figure


def test_ivr_handled_calls_are_not_offered() -> None:
    ivr = unanswered("i", after_s=40, outcome="ivr_handled")
    k = one_queue([ivr])
    assert (k.offered, k.ivr_handled, k.decided) == (0, 1, 0)


# --- KPI definitions fixed (issue 17): each test fails on the old definitions ---------------


@pytest.mark.std("STD-139")
def test_the_wait_starts_after_the_named_agent_menu() -> None:
    """t_in is routing, not arrival: 20 s in the named-agent menu is no wait (KPI defs)."""
    menu_s, wait_s = 20.0, 2 * RING
    t_ans = at(menu_s + wait_s)
    call = CallFact(uniqueid="n", queue="main", entered_at=at(0), routed_at=at(menu_s),
                    menu=True, answered_at=t_ans, ended_at=at(200), agent_id="1001",
                    outcome="answered", ring_started_at=at(menu_s),
                    offers=(OfferFact("1001", at(menu_s), t_ans, "answered"),),
                    released_by="caller")
    assert kpi.total_wait(call) == wait_s
    k = one_queue([call])
    assert (k.in_service_level, k.late_answers, k.wait_sum_s) == (1, 0, wait_s)
    # a caller who gives up 3 s after the menu is a short abandon, not a 23 s abandon
    short = CallFact(uniqueid="s", queue="main", entered_at=at(0), routed_at=at(menu_s),
                     menu=True, ended_at=at(menu_s + RULES.short_abandon_s - 2),
                     outcome="abandoned", released_by="caller")
    assert kpi.classify(short, RULES) == kpi.SHORT_ABANDON
    # a caller who hangs up in the menu never reached routing: IVR-handled, not offered
    in_menu = CallFact(uniqueid="m", queue="main", entered_at=at(0), menu=True,
                       ended_at=at(menu_s), outcome="abandoned", released_by="caller")
    assert kpi.classify(in_menu, RULES) == kpi.IVR_HANDLED
    k = one_queue([in_menu])
    assert (k.offered, k.ivr_handled, k.abandoned) == (0, 1, 0)


@pytest.mark.std("STD-139", "STD-140")
def test_a_held_caller_who_chooses_a_callback_is_a_callback_conversion() -> None:
    """STD-042: answered, held to the limit, pressed 2 -> a callback, not an answer."""
    call = dataclasses.replace(
        answered_call("h", wait_s=RING, ring_s=RING, talk_s=200,
                      holds=(HoldFact(at(30), at(30 + RULES.long_wait_s), "1001"),)),
        outcome="callback")
    assert kpi.classify(call, RULES) == kpi.CALLBACK
    k = one_queue([call, answered_call("a", wait_s=RING, ring_s=RING, start=500)])
    assert (k.answered, k.callbacks, k.decided) == (1, 1, 2)
    assert k.answer_rate == 0.5 and k.callback_rate == 0.5
    assert k.ring_measured == 1  # the converted call has no answer ring
    assert k.handled == 2  # the agent's work on it still counts as handling
    agents = kpi.agent_kpis([call], [], lambda q: RULES, kpi.day_period(DAY, ZONE), at(1e4))
    assert (agents["1001"].answered, agents["1001"].handled) == (0, 1)


def test_occupancy_counts_ringing_as_engaged_time() -> None:
    spans = [StateSpan("1001", "ready", at(0), at(60)),
             StateSpan("1001", "ringing", at(60), at(75), call_uniqueid="c"),
             StateSpan("1001", "on_call", at(75), at(135), call_uniqueid="c"),
             StateSpan("1001", "acw", at(135), at(150), call_uniqueid="c"),
             StateSpan("1001", "not_ready", at(150), at(600), reason="break")]
    agent = kpi.agent_kpis([], spans, lambda q: RULES, kpi.day_period(DAY, ZONE),
                           at(1e4))["1001"]
    assert agent.occupancy == pytest.approx((15 + 60 + 15) / (15 + 60 + 15 + 60))


def test_average_hold_divides_by_answered_calls() -> None:
    """One call held 20 s, one call still talking (held 10 s so far): 30 s / 2 answered."""
    done = answered_call("d", wait_s=RING, ring_s=RING, holds=(HoldFact(at(10), at(30)),))
    going = CallFact(uniqueid="g", queue="main", entered_at=at(100), answered_at=at(105),
                     agent_id="1001", outcome=None, ring_started_at=at(100),
                     offers=(OfferFact("1001", at(100), at(105), "answered"),),
                     holds=(HoldFact(at(110), at(120)),))
    k = kpi.queue_kpis([done, going], lambda q: RULES, as_of=at(130))["main"]
    assert (k.answered, k.handled, k.hold_calls) == (2, 1, 2)
    assert k.average_hold_s == pytest.approx(30 / 2)
    assert k.aht_s == pytest.approx(60.0)  # AHT stays on the handled call: 40 talk + 20 hold


@pytest.mark.std("STD-050", "STD-140")
def test_one_stop_per_agent_counts_only_the_segment_handed_on() -> None:
    """A transfers to B, B finishes and resolves it: A's segment is a transfer, B's is one-stop."""
    offers = (OfferFact("1001", at(2), at(5), "answered"),
              OfferFact("1002", at(60), at(65), "answered"))
    call = CallFact(uniqueid="t", queue="main", entered_at=at(0), answered_at=at(5),
                    ended_at=at(155), agent_id="1002", outcome="answered", ring_started_at=at(2),
                    offers=offers, transfer_count=1, released_by="caller",
                    disposition="resolved")
    agents = kpi.agent_kpis([call], [], lambda r: RULES, kpi.day_period(DAY, ZONE), at(1e4))
    assert agents["1001"].one_stop_rate == 0.0
    assert agents["1002"].one_stop_rate == 1.0
    assert (agents["1001"].resolution_rate, agents["1002"].resolution_rate) == (None, 1.0)
    # blind-transferred out of our agents (to a number): the only agent handed it on
    out = answered_call("o", wait_s=RING, ring_s=RING, transfer_count=1)
    agents = kpi.agent_kpis([out], [], lambda r: RULES, kpi.day_period(DAY, ZONE), at(1e4))
    assert agents["1001"].one_stop_rate == 0.0


@pytest.mark.std("STD-050", "STD-140")
def test_resolution_rate_comes_from_dispositions_and_is_unknown_without_any() -> None:
    calls = [answered_call("r", wait_s=RING, ring_s=RING, disposition="resolved"),
             answered_call("f", wait_s=RING, ring_s=RING, start=300, disposition="follow_up"),
             answered_call("x", wait_s=RING, ring_s=RING, start=600)]
    k = one_queue(calls)
    assert (k.resolved, k.dispositioned, k.handled) == (1, 2, 3)
    assert k.resolution_rate == pytest.approx(1 / 3)
    assert k.one_stop_rate == 1.0
    assert one_queue(calls[2:]).resolution_rate is None  # no form at all: no data, not 0 %


@pytest.mark.std("STD-007")
def test_a_minimum_answer_delay_makes_an_early_pickup_non_standard() -> None:
    """C-12: answering.min_answer_delay_rings = 1.5 (7.5 s at cn). An answer after 3 s of
    ringing is early (not within the N-rings standard); one after 9 s is standard."""
    policy = Policy.model_validate({"answering": {"min_answer_delay_rings": 1.5}})
    rules = KpiRules.from_policy(policy)
    early = answered_call("e", wait_s=3, ring_s=3)
    fine = answered_call("f", wait_s=9, ring_s=9, start=300)
    assert kpi.answered_too_early(early, rules) and not kpi.answered_too_early(fine, rules)
    k = kpi.queue_kpis([early, fine], lambda q: rules, as_of=at(86000))["main"]
    assert (k.early_answers, k.within_rings, k.ring_measured) == (1, 1, 2)
    check = {c.name: c for c in kpi.checks(k, rules, "queue")}["answered before the minimum delay"]
    assert (check.actual, check.passed) == (1, False)
    assert not kpi.answered_too_early(early, RULES)  # off by default
    assert one_queue([early]).within_rings == 1


def test_a_desktop_transfer_gap_is_nobody_s_talk() -> None:
    """Issue 18: A's part ends when A hands the caller on (the leg's ``left_at``), not when
    B answers: the announcement and B's ringing in between are no agent's talk."""
    a_answers, a_left, b_answers, end = at(5), at(45), at(65), at(155)
    offers = (OfferFact("1001", at(2), a_answers, "answered", left_at=a_left),
              OfferFact("1002", at(55), b_answers, "answered", left_at=end))
    holds = (HoldFact(at(30), at(40), "1001"),)
    call = CallFact(uniqueid="t", queue="main", entered_at=at(0), answered_at=a_answers,
                    ended_at=end, agent_id="1002", outcome="answered", ring_started_at=at(2),
                    offers=offers, holds=holds, transfer_count=1, released_by="caller")
    q = one_queue([call])
    assert (q.answered, q.handled, q.talk_s, q.transferred) == (1, 1, 120.0, 1)
    agents = kpi.agent_kpis([call], [], lambda r: RULES, kpi.day_period(DAY, ZONE), at(1e4))
    a, b = agents["1001"], agents["1002"]
    assert (a.handled, a.talk_s, a.hold_s) == (1, 30.0, 10.0)
    assert (b.handled, b.talk_s, b.hold_s) == (1, 90.0, 0.0)


def test_talk_after_a_transfer_out_of_our_agents_is_nobody_s() -> None:
    """Issue 18 (measured live): A sends the caller to the back office at 45 s, the caller
    talks there until 155 s. The queue's talk is A's part only; the call is counted once
    and as transferred."""
    a_answers, a_left, end = at(5), at(45), at(155)
    offers = (OfferFact("1001", at(2), a_answers, "answered", left_at=a_left),)
    call = CallFact(uniqueid="o", queue="main", entered_at=at(0), answered_at=a_answers,
                    ended_at=end, agent_id="1001", outcome="answered", ring_started_at=at(2),
                    offers=offers, transfer_count=1, released_by="caller")
    q = one_queue([call])
    assert (q.answered, q.handled, q.talk_s, q.transferred) == (1, 1, 40.0, 1)
    a = kpi.agent_kpis([call], [], lambda r: RULES, kpi.day_period(DAY, ZONE), at(1e4))["1001"]
    assert (a.handled, a.talk_s, a.transferred) == (1, 40.0, 1)
