"""The team a call counts for and the per-team service level (engine/team_kpi.py,
docs/kpi.md "Teams"), on hand-made calls at fixed instants (a fake clock: nothing here
reads the time). Default Policy: 5 s a ring, service level within 3 rings = 15 s."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from callflow.engine import kpi
from callflow.engine.kpi import CallFact, KpiRules, OfferFact
from callflow.engine.policy import Policy
from callflow.engine.team_kpi import UNASSIGNED, TeamMap, call_team, team_kpis, team_view

POLICY = Policy.defaults()
RULES = KpiRules.from_policy(POLICY)
SL_S = RULES.service_level_s
T0 = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
AS_OF = T0 + timedelta(hours=1)
#: red serves sales; blue serves service; 1009 has no team and shares "shared" with red
TEAMS = TeamMap.from_roster([("1001", "red", ("sales", "shared")), ("1002", "red", ("sales",)),
                             ("1003", "blue", ("service",)), ("1009", None, ("shared",))])


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def answered(uid: str, agent: str, wait_s: float, queue: str = "sales",
             before: tuple[OfferFact, ...] = ()) -> CallFact:
    ring = at(max(0.0, wait_s - 4))
    offer = OfferFact(agent, ring, at(wait_s), "answered", None)
    return CallFact(uid, queue, at(0), answered_at=at(wait_s), ended_at=at(wait_s + 60),
                    agent_id=agent, outcome="answered", ring_started_at=ring,
                    offers=(*before, offer), released_by="caller")


def lost(uid: str, queue: str, after_s: float, offers: tuple[OfferFact, ...] = ()) -> CallFact:
    return CallFact(uid, queue, at(0), ended_at=at(after_s), outcome="abandoned",
                    offers=offers, released_by="caller")


def test_the_roster_gives_a_queue_a_team_only_when_all_its_agents_share_one() -> None:
    assert TEAMS.queues == {"sales": "red", "service": "blue"}  # "shared": red and no team
    assert TEAMS.names == ["blue", "red"]


@pytest.mark.std("STD-145")
def test_an_answered_call_is_the_first_answering_agents_team() -> None:
    assert call_team(answered("a", "1003", 5, queue="sales"), TEAMS) == "blue"
    # transferred on to red afterwards: still blue's answer
    first = answered("b", "1003", 5)
    second = OfferFact("1001", at(30), at(34), "answered", None)
    moved = replace(first, offers=(*first.offers, second))
    assert call_team(moved, TEAMS) == "blue"
    # answered by an agent without a team
    assert call_team(answered("c", "1009", 5, queue="shared"), TEAMS) == UNASSIGNED


@pytest.mark.std("STD-145")
def test_an_unanswered_call_is_the_last_rung_agents_team_else_the_queues() -> None:
    rang_blue_then_red = (OfferFact("1003", at(2), at(17), "no_answer"),
                          OfferFact("1001", at(18), at(25), "caller_gone"))
    assert call_team(lost("d", "service", 25, rang_blue_then_red), TEAMS) == "red"
    assert call_team(lost("e", "service", 40), TEAMS) == "blue"  # never rang: the queue's
    assert call_team(lost("f", "shared", 40), TEAMS) == UNASSIGNED  # a shared queue
    rang_no_team = (OfferFact("1009", at(2), at(17), "no_answer"),)
    assert call_team(lost("g", "sales", 40, rang_no_team), TEAMS) == "red"  # then the queue
    waiting = CallFact("h", "service", at(0))
    assert call_team(waiting, TEAMS) == "blue"


@pytest.mark.std("STD-145")
def test_two_teams_service_levels_differ_and_add_up_to_the_centre() -> None:
    calls = [
        answered("r1", "1001", SL_S - 5), answered("r2", "1002", SL_S - 1),  # red: in time
        lost("r3", "sales", 30),  # red: an abandon in its own queue
        answered("b1", "1003", SL_S + 10, queue="service"),  # blue: late
        answered("b2", "1003", 3, queue="service"),  # blue: in time
        lost("b3", "service", 2),  # a short abandon: outside every rate
        lost("u1", "shared", 40),  # nobody's
        CallFact("w1", "service", at(0)),  # still waiting at as_of: offered, undecided
    ]
    figures = team_kpis(calls, lambda q: RULES, TEAMS, AS_OF)
    red, blue, nobody = figures["red"], figures["blue"], figures[UNASSIGNED]
    assert (red.offered, red.answered, red.abandoned, red.in_service_level) == (3, 2, 1, 2)
    assert red.service_level == pytest.approx(2 / 3)
    assert (blue.offered, blue.answered, blue.short_abandons, blue.waiting) == (4, 2, 1, 1)
    assert blue.service_level == pytest.approx(1 / 2)
    assert blue.asa_s == pytest.approx((SL_S + 10 + 3) / 2)
    assert (nobody.abandoned, nobody.service_level) == (1, 0.0)
    centre = kpi.queue_kpis(calls, lambda q: RULES, AS_OF)
    summed, teams_total = kpi.total(centre.values()), kpi.total(figures.values())
    assert teams_total.as_dict() == summed.as_dict()
    view = team_view("red", red, RULES)
    assert (view["team"], view["service_level"], view["answered"], view["abandoned"]) == \
        ("red", round(2 / 3, 4), 2, 1)
    assert view["service_level_target_pct"] == POLICY.kpi.service_level_target_pct


def test_a_team_without_calls_is_listed_with_no_service_level() -> None:
    figures = team_kpis([], lambda q: RULES, TEAMS, AS_OF)
    assert sorted(figures) == ["blue", "red"]
    assert team_view("blue", figures["blue"], RULES)["service_level"] is None
