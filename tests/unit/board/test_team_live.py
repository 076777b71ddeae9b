"""The board's live team figures (board/live.py over engine/team_kpi.py) against the batch
definition, fed the records the real call machine publishes (engine/calls.py) at fixed
instants: a waiting call moves from its queue's team to the team of the agent it rings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_kpi_live import DAY, POLICY, T0, run_call, scripted

from callflow.board.live import LiveDay, fact_from_record
from callflow.engine import calls, kpi
from callflow.engine.team_kpi import UNASSIGNED, TeamMap, team_kpis, team_view

#: main is shared by red and blue (no queue team); sales is blue's alone
TEAMS = TeamMap.from_roster([("1001", "red", ("main",)), ("1002", "blue", ("main", "sales"))])


def live_day() -> LiveDay:
    return LiveDay(kpi.rules_by_queue(POLICY), DAY, ["main", "sales"], TEAMS,
                   kpi.KpiRules.from_policy(POLICY))


@pytest.mark.std("STD-145")
def test_live_team_figures_equal_the_batch_definition() -> None:
    live = live_day()
    as_of = datetime.fromtimestamp(T0 + 300, UTC)
    streams = scripted()
    for step in range(max(len(s) for s in streams)):
        for stream in streams:
            if step < len(stream):
                live.on_call(stream[step], as_of)
    live.on_agent("1001", "acw", datetime.fromtimestamp(T0 + 64, UTC), None, "a")
    live.on_agent("1001", "ready", datetime.fromtimestamp(T0 + 70, UTC), None, None)
    facts = [f for f in (fact_from_record(s[-1]) for s in streams) if f is not None]
    spans = [kpi.StateSpan("1001", "acw", datetime.fromtimestamp(T0 + 64, UTC),
                           datetime.fromtimestamp(T0 + 70, UTC), None, "a")]
    batch = team_kpis(facts, kpi.rules_by_queue(POLICY), TEAMS, as_of, spans)
    rules = kpi.KpiRules.from_policy(POLICY)
    for team in ("red", "blue", UNASSIGNED):
        assert live.team_kpis(team, as_of).as_dict() == batch[team].as_dict(), team
        assert live.team_view(team, as_of) == team_view(team, batch[team], rules)
    # a: red answered in 3 s; b: rang red, blue answered late; c (sales): blue's short
    # abandon; d and w: main is shared, never rang anyone -> unassigned
    assert (batch["red"].answered, batch["red"].service_level) == (1, 1.0)
    assert (batch["blue"].answered, batch["blue"].short_abandons) == (1, 1)
    assert batch["blue"].service_level == 0.0
    assert (batch[UNASSIGNED].abandoned, batch[UNASSIGNED].waiting) == (1, 1)


@pytest.mark.std("STD-145")
def test_a_waiting_call_moves_to_the_team_it_rings_and_marks_both_dirty() -> None:
    live = live_day()
    as_of = datetime.fromtimestamp(T0 + 30, UTC)
    records = run_call([calls.CallEntered("x", "c", "1390", "100", "sales", T0),
                        calls.OfferStarted("x", "1001", "PJSIP/agent1001-9", T0 + 5)])
    live.on_call(records[0], as_of)
    assert live.take_dirty_teams() == {"blue"}  # sales is blue's
    assert live.team_view("blue", as_of)["waiting"] == 1
    live.on_call(records[-1], as_of)  # now ringing red's 1001
    assert live.take_dirty_teams() == {"blue", "red"}
    assert (live.team_view("blue", as_of)["waiting"], live.team_view("red", as_of)["waiting"]) \
        == (0, 1)
    assert live.take_dirty_teams() == set()


def test_a_new_day_has_a_view_of_every_team_and_the_no_team_row() -> None:
    """At midnight the board gets a fresh day's views: every row it showed is replaced."""
    live = live_day()
    as_of = datetime.fromtimestamp(T0, UTC)
    views = {t: live.team_view(t, as_of) for t in live.teams}
    assert sorted(views) == sorted(["red", "blue", UNASSIGNED])
    assert all(v["offered"] == 0 and v["service_level"] is None for v in views.values())
