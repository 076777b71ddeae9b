"""The daily report file's per-team rows (STD-145), built from calls written through a real
store (SQLite and PostgreSQL): each call in one team by the rule of engine/team_kpi.py,
the service level judged against the Policy's target, both languages' labels."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from callflow.board import reports
from callflow.engine.policy import Policy
from callflow.engine.team_kpi import UNASSIGNED, TeamMap
from callflow.store import repo
from callflow.store.db import Store

DAY = date(2027, 1, 5)
NOON = datetime(2027, 1, 5, 4, 0, tzinfo=UTC)  # 12:00 in the centre's zone (UTC+8)
TEAMS = TeamMap.from_roster([("1001", "red", ("sales",)), ("1003", "blue", ("service",)),
                             ("1009", None, ("main",))])


def write_call(store: Store, uid: str, queue: str, start_s: float, *, agent: str | None = None,
               wait_s: float = 0.0, end_s: float = 0.0, rang: str | None = None) -> None:
    """One inbound call as the runtime writes it: entered, offered, answered or lost, ended
    (``agent`` answered after ``wait_s``; else ``rang`` was offered and the caller left)."""
    t_in = NOON + timedelta(seconds=start_s)

    def write(s: object) -> None:
        for who in {agent, rang} - {None}:
            repo.upsert_agent(s, who, name=f"Agent {who}")  # type: ignore[arg-type]
        fields: dict[str, object] = {"direction": "inbound", "queue": queue,
                                     "caller_number": "13800000000", "entered_at": t_in,
                                     "routed_at": t_in, "ended_at": t_in + timedelta(
                                         seconds=end_s), "released_by": "caller"}
        if agent is not None:
            answer = t_in + timedelta(seconds=wait_s)
            fields.update(agent_id=agent, answered_at=answer, outcome="answered",
                          ring_started_at=answer - timedelta(seconds=3))
        else:
            fields.update(outcome="abandoned")
        repo.upsert_call(s, uid, **fields)  # type: ignore[arg-type]
        if agent is not None:
            repo.add_offer(s, uid, agent, answer - timedelta(seconds=3),  # type: ignore[arg-type]
                           ended_at=answer, result="answered")
        elif rang is not None:
            repo.add_offer(s, uid, rang, t_in + timedelta(seconds=1),  # type: ignore[arg-type]
                           ended_at=t_in + timedelta(seconds=end_s), result="caller_gone")
    store.run(write)


@pytest.mark.std("STD-145")
def test_the_daily_report_has_a_row_per_team_from_the_store(store: Store) -> None:
    policy = Policy()
    sl_s = policy.rings_to_seconds(policy.kpi.service_level_threshold_rings)
    write_call(store, "r1", "sales", 0, agent="1001", wait_s=sl_s - 2, end_s=90)
    write_call(store, "r2", "sales", 100, agent="1001", wait_s=2, end_s=60)
    write_call(store, "b1", "service", 200, agent="1003", wait_s=sl_s + 20, end_s=120)
    write_call(store, "b2", "sales", 300, rang="1003", end_s=40)  # rang blue: blue's loss
    write_call(store, "u1", "main", 400, end_s=50)  # main has no team: nobody's
    write_call(store, "x1", "sales", -86400, agent="1001", wait_s=60, end_s=90)  # yesterday
    report = reports.load_and_build(store, policy, "daily", "queue", DAY,
                                    NOON + timedelta(days=1), teams=TEAMS)
    rows = {v["team"]: v for v in report.teams}
    assert [v["team"] for v in report.teams] == ["blue", "red", UNASSIGNED]
    assert (rows["red"]["offered"], rows["red"]["answered"], rows["red"]["service_level"]) \
        == (2, 2, 1.0)
    assert (rows["blue"]["answered"], rows["blue"]["abandoned"], rows["blue"]["service_level"]) \
        == (1, 1, 0.0)
    assert rows[UNASSIGNED]["abandoned"] == 1
    target = f">= {policy.kpi.service_level_target_pct:g}"
    lines = list(csv.reader(io.StringIO(reports.to_csv(report))))
    team_lines = {(r[4], r[6]): r[8:] for r in lines if r[3] == "team"}
    assert team_lines[("red", "service level")] == [target, "100", "pass"]
    assert team_lines[("blue", "service level")] == [target, "0", "fail"]
    assert team_lines[("blue", "ASA")] == ["", f"{sl_s + 20:g}", "info"]
    page = reports.to_html(report)
    assert "各班组服务水平 / Service level per team" in page
    assert "<tr class='fail' data-team='blue'>" in page and "无班组 / no team" in page
    # the by-agent report carries no team rows (they are the centre's, by queue)
    by_agent = reports.load_and_build(store, policy, "daily", "agent", DAY,
                                      NOON + timedelta(days=1), teams=TEAMS)
    assert by_agent.teams == ()
