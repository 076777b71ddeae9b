"""Today's agent accumulators: read back from the state log after a restart
(store/agent_log.py), restored into the machine (agents/restore.py), and closed at the
centre's midnight (desktop/feature.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.agents.restore import StoredAgent, restored
from callflow.agents.state import AgentState, time_in
from callflow.desktop.feature import _midnight
from callflow.engine.clock import FakeClock
from callflow.engine.policy import Policy
from callflow.store import repo
from callflow.store.agent_log import load_day_totals
from callflow.store.db import Store

MIDNIGHT = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 00:00 Asia/Shanghai on the 27th


def at(minutes: float) -> datetime:
    return MIDNIGHT + timedelta(minutes=minutes)


def test_the_centres_midnight_in_its_time_zone() -> None:
    wall = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    assert _midnight(wall, "Asia/Shanghai") == MIDNIGHT
    assert _midnight(wall, "Asia/Shanghai", days=1) == MIDNIGHT + timedelta(days=1)
    assert _midnight(wall, "UTC") == datetime(2026, 11, 27, tzinfo=UTC)
    # a day of 23 hours (spring forward in New York): the next midnight is still midnight
    march = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert (_midnight(march, "America/New_York", days=1)
            - _midnight(march, "America/New_York")) == timedelta(hours=23)


def test_todays_totals_come_back_from_the_state_log(store: Store) -> None:
    with store.session() as s:
        for agent_id in ("1001", "1002"):
            repo.upsert_agent(s, agent_id, name=agent_id, extension=f"agent{agent_id}")
        log = [  # (agent, state, reason, minutes after midnight)
            ("1001", "ready", None, -30),  # from yesterday: counts from midnight
            ("1001", "on_call", None, 10),
            ("1001", "acw", None, 15),
            ("1001", "not_ready", "ring_no_answer", 16),
            ("1001", "busy", "meal", 20),
            ("1001", "ready", None, 50),  # open: counts up to now
            ("1002", "logged_out", None, -60),  # logged out all day: nothing
            ("1002", "acw", None, -10),  # an ACW of yesterday: not today's call
            ("1002", "logged_out", None, 5),
        ]
        for agent_id, state, reason, minutes in log:
            repo.record_agent_state(s, agent_id, state, at(minutes), reason=reason)
        repo.append_event(s, "acw", at(16), {"agent_id": "1001", "seconds": 60,
                                             "overrun": True})
        repo.append_event(s, "acw", at(-10), {"agent_id": "1001", "overrun": True})
    days = store.read(load_day_totals, MIDNIGHT, at(60))
    one = days["1001"]
    assert one.totals == pytest.approx({"ready": (10 + 10) * 60.0, "on_call": 300.0,
                                        "acw": 60.0, "not_ready:ring_no_answer": 240.0,
                                        "busy:meal": 1800.0})
    assert (one.calls_handled, one.ring_no_answer_count, one.acw_overruns) == (1, 1, 1)
    two = days["1002"]
    assert two.totals == {"acw": 300.0} and two.calls_handled == 0

    # restored into the machine: the day goes on from there
    clock = FakeClock()
    stored = StoredAgent("1001", "ready", None, at(50))
    agent, _ = restored(stored, "agent1001", clock.now(), at(60), Policy.defaults(), one)
    assert agent.state is AgentState.READY and agent.calls_handled == 1
    assert time_in(agent, AgentState.BUSY) == pytest.approx(1800.0)
    assert time_in(agent, AgentState.READY, now=clock.now() + 60) == pytest.approx(1260.0)
