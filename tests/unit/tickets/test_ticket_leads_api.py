"""The escalation chain's people over the tickets API, on a real store (SQLite and
PostgreSQL): shift leads and department managers as logins, what each may see, the steps
assigned to them and sent to their own topic, the customer class a ticket's deadlines
follow, and the daily check stored once per working day."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from ticket_api import TicketApi

from callflow.api.auth import principal_for
from callflow.engine.clock import FakeClock
from callflow.engine.effects import Alarm
from callflow.engine.policy import Policy
from callflow.store import customers, repo
from callflow.store import tickets as store_tickets
from callflow.store.db import Store
from callflow.tickets.feature import DAILY_CHECK_ALARM, sweep, user_topic

NOW = datetime(2027, 1, 5, 1, 0, tzinfo=UTC)  # Tuesday 09:00 in Shanghai
BASE = "/api/v1/tickets"
VIP_ANSWER_H = 1


class Hub:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any]) -> int:
        self.published.append((topic, payload))
        return 1


@pytest.fixture
def env(store: Store) -> Iterator[SimpleNamespace]:
    store.run(repo.upsert_agent, "1001", name="Li", team="red")
    store.run(repo.upsert_agent, "1003", name="Zhao", team="blue")
    policy = Policy.model_validate({"tickets": {
        "escalation_after_h": 1, "escalation_interval_h": 1,
        "deadlines_by_class": {"standard": {}, "vip": {
            "complaint_simple_answer_h": VIP_ANSWER_H}}}})
    clock = FakeClock(NOW)
    executed: list[Any] = []
    hub = Hub()
    api = TicketApi(store, policy, clock, execute=executed.extend, hub=hub)
    store.run(repo.set_user, "lead_red", "shift_lead", "x", team="red")
    store.run(repo.set_user, "lead_blue", "shift_lead", "x", team="blue")
    store.run(repo.set_user, "manager", "department_manager", "x")
    api.log_in("red", "1001", "agent", "1001")
    api.log_in("blue", "1003", "agent", "1003")
    for name, role in (("lead_red", "shift_lead"), ("lead_blue", "shift_lead"),
                       ("manager", "department_manager")):
        api.log_in(name, name, role)
    yield SimpleNamespace(call=api.call, store=store, feature=api.feature, clock=clock,
                          policy=policy, hub=hub, executed=executed)


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return sorted(t["id"] for t in response.json()["tickets"])


@pytest.mark.std("STD-148")
def test_lead_roles_see_the_board_and_their_own_topic_only() -> None:
    lead = principal_for("lead_red", "shift_lead", None, "red")
    assert (lead.team, lead.may_see("board"), lead.may_see("alarms")) == ("red", True, True)
    assert lead.may_see("user:lead_red") and not lead.may_see("user:lead_blue")
    assert not lead.may_see("agent:1001")
    boss = principal_for("manager", "department_manager", None)
    assert boss.may_see("user:manager") and not boss.may_see("user:lead_red")
    assert principal_for("sup", "supervisor", None).may_see("user:lead_red")


@pytest.mark.std("STD-148")
def test_a_shift_lead_sees_their_teams_tickets_a_manager_all(env: SimpleNamespace) -> None:
    red = env.call("POST", BASE, "red", json={"type": "enquiry", "description": "r"})
    blue = env.call("POST", BASE, "blue", json={"type": "enquiry", "description": "b"})
    r, b = red.json()["ticket"]["id"], blue.json()["ticket"]["id"]
    assert ids(env.call("GET", BASE, "lead_red")) == [r]
    assert ids(env.call("GET", BASE, "lead_blue")) == [b]
    assert ids(env.call("GET", BASE, "manager")) == [r, b]
    assert env.call("GET", f"{BASE}/{b}", "lead_red").status_code == 404
    assert env.call("GET", f"{BASE}/{r}", "lead_red").status_code == 200
    # the board's ticket views are theirs too; an agent's are not
    assert env.call("GET", f"{BASE}/backlog", "lead_red").status_code == 200
    assert env.call("GET", f"{BASE}/backlog", "red").status_code == 403


@pytest.mark.std("STD-137")
@pytest.mark.std("STD-125")
def test_steps_go_to_the_teams_shift_lead_then_the_manager_once(env: SimpleNamespace) -> None:
    made = env.call("POST", BASE, "blue", json={"type": "enquiry", "description": "b"})
    t = made.json()["ticket"]
    # Open 1 h (escalation_after_h) at 10:00 Tuesday. The steps follow the daily check
    # (STD-125; they used to come 1 h apart): nothing until Wednesday's 09:30 check
    assert sweep(env.store, NOW + timedelta(hours=1), env.policy).frames == []
    wednesday_0930 = NOW + timedelta(hours=24, minutes=30)
    assert sweep(env.store, wednesday_0930 - timedelta(minutes=1), env.policy).frames == []
    first = sweep(env.store, wednesday_0930, env.policy)
    assert [(topic, p["level"], p["to"]) for topic, p in first.frames] == [
        (user_topic("lead_blue"), 1, "lead_blue")]
    got = env.call("GET", f"{BASE}/{t['id']}", "lead_blue").json()
    assert got["ticket"]["escalated_to"] == "lead_blue"
    assert got["history"][-1]["note"] == "escalated to shift_lead lead_blue"
    # a restart (a new pass over the same store) sends nothing again
    assert sweep(env.store, wednesday_0930 + timedelta(minutes=5), env.policy).frames == []
    # still open at the next check (Thursday 09:30): the department manager, once
    assert sweep(env.store, wednesday_0930 + timedelta(hours=23), env.policy).frames == []
    second = sweep(env.store, wednesday_0930 + timedelta(hours=24), env.policy)
    assert [(topic, p["role"]) for topic, p in second.frames] == [
        (user_topic("manager"), "department_manager")]
    assert sweep(env.store, wednesday_0930 + timedelta(hours=48), env.policy).frames == []
    # the other team's lead never saw it; once escalated to a lead it is theirs
    assert env.call("GET", f"{BASE}/{t['id']}", "lead_red").status_code == 404
    # the feature publishes the frame on the person's topic
    env.call("POST", BASE, "red", json={"type": "enquiry", "description": "r"})
    env.clock.advance(24.5 * 3600)  # to Wednesday's check
    asyncio.run(env.feature.check_now())
    assert [topic for topic, _ in env.hub.published] == [user_topic("lead_red")]


@pytest.mark.std("STD-123")
def test_the_customer_class_comes_from_the_record_or_the_body(env: SimpleNamespace) -> None:
    vip = env.store.run(customers.save_customer, "sup", NOW, {"surname": "Wu"},
                        ["13900000009"], None)
    env.store.run(lambda s: setattr(s.get(customers.Customer, vip["customer_id"]),
                                    "customer_class", "vip"))

    def answer_due(body: dict[str, Any]) -> tuple[str, str]:
        r = env.call("POST", BASE, "red", json={"type": "complaint_simple",
                                                "description": "x", **body})
        assert r.status_code == 201, r.text
        t = r.json()["ticket"]
        return t["customer_class"], t["clocks"][0]["due_at"]

    assert answer_due({"caller_number": "13900000009"}) == (
        "vip", (NOW + timedelta(hours=VIP_ANSWER_H)).isoformat())
    assert answer_due({"caller_number": "13900000001"})[0] == "standard"
    assert answer_due({"customer_class": "vip"})[0] == "vip"
    bad = env.call("POST", BASE, "red", json={"type": "enquiry", "description": "x",
                                              "customer_class": "gold"})
    assert (bad.status_code, bad.json()["detail"]["error"]) == (422, "unknown_customer_class")
    bad = env.call("POST", BASE, "red", json={"type": "enquiry", "description": "x",
                                              "customer_class": ["vip"]})
    assert bad.status_code == 422


@pytest.mark.std("STD-125")
def test_the_daily_check_is_stored_once_and_served(env: SimpleNamespace) -> None:
    env.call("POST", BASE, "red", json={"type": "complaint_simple", "description": "r"})
    env.call("POST", BASE, "blue", json={"type": "back_office", "description": "b",
                                         "owner_kind": "back_office", "owner_id": "bo"})
    assert env.call("GET", f"{BASE}/daily-check", "manager").status_code == 404
    at_0930 = NOW + timedelta(minutes=30)
    made = sweep(env.store, at_0930, env.policy)
    [alarm] = [e for e in made.events if isinstance(e, Alarm) and e.kind == DAILY_CHECK_ALARM]
    assert (alarm.detail["day"], alarm.detail["count"], alarm.detail["unassigned"]) == \
        ("2027-01-05", 2, 1)
    # a restarted engine, later the same day: the day is stored, nothing again
    again = sweep(env.store, at_0930 + timedelta(hours=3), env.policy)
    assert [e for e in again.events if isinstance(e, Alarm) and e.kind == DAILY_CHECK_ALARM] \
        == []
    got = env.call("GET", f"{BASE}/daily-check", "manager").json()
    assert (got["day"], got["count"]) == ("2027-01-05", 2)
    lead = env.call("GET", f"{BASE}/daily-check", "lead_blue",
                    params={"day": "2027-01-05"}).json()
    assert [i["team"] for i in lead["items"]] == ["blue"]
    assert env.call("GET", f"{BASE}/daily-check", "red").status_code == 403
    assert env.call("GET", f"{BASE}/daily-check", "manager",
                    params={"day": "x"}).status_code == 422
    assert env.store.read(store_tickets.checked_days, date(2027, 1, 1)) == {date(2027, 1, 5)}
