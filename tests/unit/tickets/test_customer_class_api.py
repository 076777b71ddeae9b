"""Setting a customer's class over REST (STD-123), on a real store (SQLite and PostgreSQL):
who may, the one 422 for a class the Policy does not list, the audit row (who, old, new),
and the deadlines: a ticket already logged keeps its class and clocks, the next ticket
of that customer runs the new class's row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from ticket_api import TicketApi

from callflow.engine import tickets as tk
from callflow.engine.clock import FakeClock
from callflow.engine.policy import Policy
from callflow.store import customers, repo
from callflow.store.db import Store

NOW = datetime(2027, 1, 5, 1, 0, tzinfo=UTC)  # Tuesday 09:00 in Shanghai
NUMBER = "13900000077"
VIP_ANSWER_H = 1


@pytest.fixture
def env(store: Store) -> Iterator[SimpleNamespace]:
    store.run(repo.upsert_agent, "1001", name="Li", team="red")
    policy = Policy.model_validate({"tickets": {"deadlines_by_class": {
        "standard": {}, "vip": {"complaint_simple_answer_h": VIP_ANSWER_H}}}})
    clock = FakeClock(NOW)
    api = TicketApi(store, policy, clock)
    for name, role in (("sup", "supervisor"), ("adm", "admin"), ("boss", "department_manager"),
                       ("lead", "shift_lead"), ("qa1", "qa")):
        store.run(repo.set_user, name, role, "x", team="red" if role == "shift_lead" else None)
        api.log_in(name, name, role)
    api.log_in("agent", "1001", "agent", "1001")
    made = store.run(customers.save_customer, "sup", NOW, {"surname": "Wu", "title": "Ms",
                                                           "address": "secret street"},
                     [NUMBER], None)
    yield SimpleNamespace(call=api.call, store=store, clock=clock, policy=policy,
                          customer_id=made["customer_id"])


def set_class(env: SimpleNamespace, who: str, body: Any) -> httpx.Response:
    return env.call("PUT", f"/api/v1/customers/{env.customer_id}/class", who, json=body)


def answer_due(env: SimpleNamespace) -> tuple[int, str, str]:
    r = env.call("POST", "/api/v1/tickets", "sup", json={
        "type": "complaint_simple", "description": "bill", "caller_number": NUMBER})
    assert r.status_code == 201, r.text
    t = r.json()["ticket"]
    return t["id"], t["customer_class"], t["clocks"][0]["due_at"]


@pytest.mark.std("STD-123")
def test_a_reclassed_customers_next_ticket_follows_and_the_logged_one_keeps_its_clocks(
        env: SimpleNamespace) -> None:
    first_id, klass, first_due = answer_due(env)
    assert (klass, first_due) == ("standard", (NOW + timedelta(hours=2)).isoformat())
    # the form finds the customer by number: the header and class, no personal field
    found = env.call("GET", "/api/v1/customer-classes", "sup", params={"number": NUMBER})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["classes"] == ["standard", "vip"] and body["default"] == "standard"
    assert body["customer"] == {"customer_id": env.customer_id, "surname": "Wu",
                                "title": "Ms", "numbers": [NUMBER],
                                "customer_class": "standard"}
    assert "secret street" not in found.text
    env.clock.advance(600)
    moved = set_class(env, "sup", {"customer_class": "vip"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["old"], moved.json()["customer"]["customer_class"]) == \
        ("standard", "vip")
    # audited: who, old, new
    [entry] = env.store.read(repo.audit_entries, target=f"customer:{env.customer_id}",
                             action="customer.class")
    assert (entry.actor, entry.detail) == ("sup", {"old": "standard", "new": "vip"})
    # the next ticket runs the vip row (1 h), the one already logged keeps 2 h
    _, klass, due = answer_due(env)
    assert (klass, due) == ("vip", (NOW + timedelta(minutes=10, hours=VIP_ANSWER_H))
                            .isoformat())
    kept = env.call("GET", f"/api/v1/tickets/{first_id}", "sup").json()["ticket"]
    assert (kept["customer_class"], kept["clocks"][0]["due_at"]) == ("standard", first_due)
    # the manager and an admin may re-class too; back to standard
    assert set_class(env, "boss", {"customer_class": "standard"}).json()["old"] == "vip"
    assert set_class(env, "adm", {"customer_class": "vip"}).status_code == 200
    assert answer_due(env)[1] == "vip"


@pytest.mark.std("STD-123")
def test_bad_class_requests_get_one_clear_error_and_change_nothing(
        env: SimpleNamespace) -> None:
    def refused(who: str, body: Any, status: int, code: str,
                url: str | None = None) -> httpx.Response:
        r = (env.call("PUT", url, who, json=body) if url else set_class(env, who, body))
        assert r.status_code == status, r.text
        if code:
            assert r.json()["detail"]["error"] == code, r.text
        return r

    gold = refused("sup", {"customer_class": "gold"}, 422, "unknown_customer_class")
    assert "standard, vip" in gold.json()["detail"]["message"]
    refused("sup", {"customer_class": ["vip"]}, 422, "unknown_customer_class")
    refused("sup", {"customer_class": None}, 422, "unknown_customer_class")
    refused("sup", {"customer_class": "v" * 10_000}, 422, "unknown_customer_class")
    refused("sup", {"customer_class": "vip", "extra": 1}, 422, "unknown_field")
    refused("sup", ["vip"], 422, "bad_body")
    refused("sup", {"customer_class": "vip"}, 422, "bad_id",
            url="/api/v1/customers/1x/class")
    refused("sup", {"customer_class": "vip"}, 422, "bad_id",
            url="/api/v1/customers/99999999999/class")
    refused("sup", {"customer_class": "vip"}, 404, "not_found",
            url="/api/v1/customers/4242/class")
    for who in ("agent", "lead", "qa1"):  # not theirs to change
        refused(who, {"customer_class": "vip"}, 403, "")
        assert env.call("GET", "/api/v1/customer-classes", who).status_code == 403
    assert env.call("GET", "/api/v1/customer-classes", "sup",
                    params={"number": "12"}).status_code == 422
    missing = env.call("GET", "/api/v1/customer-classes", "sup", params={"number": "555"})
    assert (missing.status_code, missing.json()["detail"]["error"]) == (404, "no_customer")
    # nothing changed, nothing audited
    assert env.call("GET", "/api/v1/customer-classes", "sup", params={"number": NUMBER}
                    ).json()["customer"]["customer_class"] == "standard"
    assert env.store.read(repo.audit_entries, action="customer.class") == []


@pytest.mark.std("STD-123")
def test_the_rule_moves_only_to_a_listed_class() -> None:
    p = Policy.model_validate({"tickets": {"deadlines_by_class": {"standard": {}, "vip": {}}}})
    assert tk.reclassed("standard", "vip", p) == "vip"
    assert tk.reclassed("gold", "gold", p) == "gold"  # a class since removed: a no-op
    assert tk.reclassed("gold", "standard", p) == "standard"
    with pytest.raises(tk.TicketError, match="known classes: standard, vip"):
        tk.reclassed("standard", "gold", p)
    with pytest.raises(tk.TicketError, match="must be a string"):
        tk.reclassed("standard", 1, p)
