"""The customer record in the store (store/customers.py): numbers, PIN hash, every edit
attributed in the audit log with the names of what changed, never the values (STD-079)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callflow.engine.identity import hash_pin, pin_matches
from callflow.engine.policy import Policy
from callflow.store import customers, repo
from callflow.store.db import Store

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.std("STD-079")
def test_create_edit_and_find_a_customer_every_edit_attributed(store: Store) -> None:
    made = store.run(customers.save_customer, "boss", AT, {
        "surname": "王", "title": "先生", "account": "6222"}, ["13700000001"],
        hash_pin("4711", Policy.defaults()))
    assert made is not None and made["has_pin"] and made["numbers"] == ["13700000001"]
    cid = made["customer_id"]
    edited = store.run(customers.save_customer, "admin", AT, {"account": "7333"},
                       ["13700000002", "13700000001"], None, cid)
    assert edited is not None and edited["account"] == "7333"
    assert store.run(customers.save_customer, "admin", AT, {}, None, None, cid + 99) is None
    record, pin_hash = store.read(customers.customer_for_number, "13700000002") or ({}, None)
    assert record["customer_id"] == cid and pin_hash and pin_matches("4711", pin_hash)
    assert store.read(customers.customer_for_number, "13700000003") is None
    entries = store.read(repo.audit_entries, target=f"customer:{cid}")
    assert [(e.actor, e.action, e.detail["fields"]) for e in reversed(entries)] == [
        ("boss", "customer.create", ["account", "surname", "title", "pin", "numbers"]),
        ("admin", "customer.update", ["account", "numbers"])]
    assert "7333" not in str([e.detail for e in entries])


def test_a_number_belongs_to_one_customer(store: Store) -> None:
    store.run(customers.save_customer, "boss", AT, {"surname": "王"}, ["13700000001"], None)
    with pytest.raises(customers.CustomerConflict):
        store.run(customers.save_customer, "boss", AT, {"surname": "李"}, ["13700000001"], None)
