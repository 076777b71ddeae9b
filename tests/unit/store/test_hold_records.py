"""The hold machine's records (through the store's rows) reach call_holds and the
call's totals, and the release verdict reaches the call row (STD-040, STD-110..112)."""

from __future__ import annotations

from edges import as_edges

from callflow.engine import hold
from callflow.engine.effects import Persist
from callflow.engine.policy import Policy
from callflow.store import records, repo
from callflow.store.db import Store

RULES = hold.HoldRules.from_policy(Policy())
WALL0 = 1_800_000_000.0


def persist(store: Store, effects: list) -> None:  # type: ignore[type-arg]
    for e in as_edges(effects):
        if isinstance(e, Persist):
            records.write(store, e.kind, e.data)


def test_two_holds_are_stored_with_totals(store: Store) -> None:
    store.run(repo.upsert_agent, "1001", name="Li", extension="agent1001")
    store.run(repo.upsert_call, "c1", direction="inbound")
    h = hold.new("c1", "1001")
    for on, off in ((0.0, 35.0), (40.0, 50.0)):
        h, effects = hold.step(h, hold.HoldOn("c1", "1001", on, WALL0 + on), RULES)
        persist(store, effects)
        h, effects = hold.step(h, hold.HoldOff("c1", "1001", off, WALL0 + off), RULES)
        persist(store, effects)
    with store.session() as s:
        rows = repo.holds_for_call(s, "c1")
        assert [(r.hold_s, r.agent_id) for r in rows] == [(35.0, "1001"), (10.0, "1001")]
        call = repo.get_call(s, "c1")
        assert call is not None and (call.hold_count, call.hold_total_s) == (2, 45.0)


def test_release_verdict_and_special_outcome(store: Store) -> None:
    store.run(repo.upsert_call, "c2", direction="inbound", outcome="answered",
              released_by="caller")
    records.write(store, "call_release", {
        "uniqueid": "c2", "release_compliant": True, "release_procedure": "silent",
        "outcome": "silent", "released_by": "system", "closing_at": None})
    with store.session() as s:
        call = repo.get_call(s, "c2")
        assert call is not None
        assert (call.outcome, call.released_by, call.release_compliant,
                call.release_procedure) == ("silent", "system", True, "silent")


def test_repeated_nuisance_number_goes_to_the_attendant_c_2(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from callflow.engine.policy import parse_policy
    from callflow.special_calls.feature import nuisance_route

    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    policy = parse_policy({"special_calls": {"nuisance_route_after": 2,
                                             "nuisance_lookback_days": 30}})
    number = "13800000099"
    assert nuisance_route(store, Policy(), number, now) is None  # off by default
    for i, (days_ago, outcome) in enumerate([(40, "nuisance"), (10, "nuisance"),
                                             (5, "answered")]):
        store.run(repo.upsert_call, f"n{i}", direction="inbound", caller_number=number,
                  entered_at=now - timedelta(days=days_ago), outcome=outcome)
    assert nuisance_route(store, policy, number, now) is None  # one within 30 days
    store.run(repo.upsert_call, "n9", direction="inbound", caller_number=number,
              entered_at=now - timedelta(days=1), outcome="nuisance")
    assert nuisance_route(store, policy, number, now) == policy.special_calls.attendant_target
    assert nuisance_route(store, policy, "13800000000", now) is None
