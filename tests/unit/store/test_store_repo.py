"""Repository functions for calls, offers, holds, the event log, agents, alarms and audit.

Every test runs on SQLite and on PostgreSQL (the ``store`` fixture is parametrized).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.errors import StateError, StoreError
from callflow.store import repo
from callflow.store.db import Store, open_store
from callflow.store.models import CALL_OUTCOMES, AgentState

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def agents(store: Store) -> list[str]:
    for agent_id, name in (("1001", "Li"), ("1002", "Wang")):
        store.run(repo.upsert_agent, agent_id, name=name, extension=f"6{agent_id}")
    return ["1001", "1002"]


# --- calls -------------------------------------------------------------------------


def test_upsert_call_creates_then_changes_only_the_given_fields(
        store: Store, agents: list[str]) -> None:
    created = store.run(repo.upsert_call, "1700000000.1", direction="inbound",
                        caller_number="13800138000", did="95598", queue="general",
                        entered_at=at(0))
    assert created.id > 0
    assert (created.late, created.repeat_caller, created.hold_count, created.transfer_count) == (
        False, False, 0, 0)

    store.run(repo.upsert_call, "1700000000.1", agent_id="1001", ring_started_at=at(10),
              answered_at=at(18), answer_ring=2, total_wait_s=18.0, late=True,
              greeting="apology")
    store.run(repo.upsert_call, "1700000000.1", ended_at=at(200), outcome="answered",
              released_by="caller", hangup_cause=16, hold_count=1, hold_total_s=35.0)

    call = store.read(repo.get_call, "1700000000.1")
    assert call is not None
    assert call.id == created.id
    assert call.created_at == created.created_at
    assert (call.direction, call.caller_number, call.did, call.queue) == (
        "inbound", "13800138000", "95598", "general")
    assert (call.entered_at, call.ring_started_at, call.answered_at, call.ended_at) == (
        at(0), at(10), at(18), at(200))
    assert (call.agent_id, call.answer_ring, call.total_wait_s, call.late, call.greeting) == (
        "1001", 2, 18.0, True, "apology")
    assert (call.outcome, call.released_by, call.hangup_cause) == ("answered", "caller", 16)
    assert (call.hold_count, call.hold_total_s) == (1, 35.0)


def test_a_new_call_needs_its_direction(store: Store) -> None:
    with pytest.raises(StoreError, match="direction"):
        store.run(repo.upsert_call, "no-direction", entered_at=at(0))


def test_unknown_call_fields_are_refused_by_name(store: Store) -> None:
    with pytest.raises(StoreError, match=r"unknown call field.*colour"):
        store.run(repo.upsert_call, "x", direction="inbound", colour="red")


@pytest.mark.parametrize("field, value", [
    ("direction", "sideways"), ("outcome", "vanished"), ("released_by", "nobody"),
    ("greeting", "shout"),
])
def test_closed_value_sets_are_checked_by_the_database(
        store: Store, field: str, value: str) -> None:
    with pytest.raises(StoreError, match=f"(?i)check constraint.*ck_calls_{field}"):
        store.run(repo.upsert_call, "bad", **{"direction": "inbound", field: value})
    assert store.read(repo.get_call, "bad") is None


@pytest.mark.parametrize("outcome", CALL_OUTCOMES)
def test_every_listed_outcome_is_storable(store: Store, outcome: str) -> None:
    assert store.run(repo.upsert_call, f"o-{outcome}", direction="inbound",
                     outcome=outcome).outcome == outcome


def test_get_call_of_an_unknown_uniqueid_is_none(store: Store) -> None:
    assert store.read(repo.get_call, "nope") is None


@pytest.mark.std("STD-073")
def test_earlier_contacts_of_a_number_newest_first(store: Store) -> None:
    """STD-073: a repeat caller's history within the look-back window."""
    for i, day in enumerate((-40, -3, -1)):
        store.run(repo.upsert_call, f"h{i}", direction="inbound", caller_number="139",
                  entered_at=T0 + timedelta(days=day))
    store.run(repo.upsert_call, "other", direction="inbound", caller_number="137",
              entered_at=T0)
    found = store.read(repo.calls_from_number, "139", since=T0 - timedelta(days=30))
    assert [c.uniqueid for c in found] == ["h2", "h1"]
    assert [c.uniqueid for c in store.read(repo.calls_from_number, "139",
                                           since=T0 - timedelta(days=90), limit=1)] == ["h2"]
    # the flow's four columns (recent_contacts) say the same of the same calls
    for since, limit in ((T0 - timedelta(days=30), 5), (T0 - timedelta(days=90), 1)):
        whole = store.read(repo.calls_from_number, "139", since=since, limit=limit)
        assert [tuple(r) for r in store.read(repo.recent_contacts, "139", since=since,
                                             limit=limit)] == \
            [(c.uniqueid, c.entered_at, c.outcome, c.agent_id) for c in whole]


# --- offers and holds --------------------------------------------------------------


def test_offers_record_each_ringing_and_its_length(store: Store, agents: list[str]) -> None:
    """STD-008: a ring-no-answer offer at 1001, then the answered offer at 1002."""
    store.run(repo.upsert_call, "c1", direction="inbound", entered_at=at(0))
    first = store.run(repo.add_offer, "c1", "1001", at(2))
    assert (first.result, first.ended_at, first.ring_s) == (None, None, None)
    store.run(repo.finish_offer, first.id, at(17), "no_answer")
    store.run(repo.add_offer, "c1", "1002", at(17.5), ended_at=at(26.5), result="answered")

    offers = store.read(repo.offers_for_call, "c1")
    assert [(o.agent_id, o.result, o.ring_s) for o in offers] == [
        ("1001", "no_answer", 15.0), ("1002", "answered", 9.0)]


def test_an_offer_for_an_unknown_call_is_refused(store: Store, agents: list[str]) -> None:
    with pytest.raises(StoreError, match="upsert_call it first"):
        store.run(repo.add_offer, "ghost", "1001", at(0))


def test_an_offer_result_outside_the_set_is_refused(store: Store, agents: list[str]) -> None:
    store.run(repo.upsert_call, "c2", direction="inbound")
    with pytest.raises(StoreError):
        store.run(repo.add_offer, "c2", "1001", at(0), ended_at=at(3), result="exploded")
    assert store.read(repo.offers_for_call, "c2") == []


def test_finishing_an_unknown_offer_is_a_state_error(store: Store) -> None:
    with pytest.raises(StateError, match="not_found"):
        store.run(repo.finish_offer, 999, at(1), "answered")


def test_hold_episodes_store_their_length(store: Store, agents: list[str]) -> None:
    """Test hint 4 (STD-040): unhold at 35 s stores the breach with 35 s."""
    store.run(repo.upsert_call, "c3", direction="inbound")
    hold = store.run(repo.add_hold, "c3", at(60), agent_id="1001")
    assert hold.hold_s is None
    store.run(repo.finish_hold, hold.id, at(95))
    assert [(h.agent_id, h.hold_s) for h in store.read(repo.holds_for_call, "c3")] == [
        ("1001", 35.0)]


# --- event log ---------------------------------------------------------------------


def test_events_replay_in_append_order_and_keep_their_payload(store: Store) -> None:
    payload = {"agent": "1001", "script": "對不起,讓您久等了", "rings": [1, 2], "late": True}
    first_id = store.run(repo.append_event, "entered", at(0), {"did": "95598"}, uniqueid="e1")
    first = store.read(repo.read_events, uniqueid="e1")[0]
    assert first.id == first_id
    assert first.call_id is None and first.uniqueid == "e1"   # before the call row exists
    store.run(repo.upsert_call, "e1", direction="inbound")
    second_id = store.run(repo.append_event, "offered", at(1), payload, uniqueid="e1")
    second = store.read(repo.read_events, uniqueid="e1")[1]
    assert second.id == second_id
    call = store.read(repo.get_call, "e1")
    assert call is not None and second.call_id == call.id
    store.run(repo.append_event, "tick", at(2))
    store.run(repo.append_event, "answered", at(1.5), uniqueid="e1")  # appended late

    events = store.read(repo.read_events, uniqueid="e1")
    assert [e.kind for e in events] == ["entered", "offered", "answered"]
    assert events[1].payload == payload
    assert events[2].payload == {}
    everything = store.read(repo.read_events)
    assert [e.kind for e in everything] == ["entered", "offered", "tick", "answered"]
    page = store.read(repo.read_events, after_id=everything[1].id, limit=1)
    assert [e.kind for e in page] == ["tick"]


# --- agents ------------------------------------------------------------------------


def test_upsert_agent_changes_only_the_given_fields(store: Store, agents: list[str]) -> None:
    store.run(repo.upsert_agent, "1001", team="night", active=False)
    everyone = store.read(repo.list_agents, active_only=False)
    li = next(a for a in everyone if a.agent_id == "1001")
    assert (li.name, li.extension, li.team, li.active, li.role) == (
        "Li", "61001", "night", False, "agent")
    assert [a.agent_id for a in store.read(repo.list_agents)] == ["1002"]


def test_agent_state_log_closes_the_previous_state(store: Store, agents: list[str]) -> None:
    store.run(repo.record_agent_state, "1001", "ready", at(0))
    store.run(repo.record_agent_state, "1001", "on_call", at(30), call_uniqueid="c9")
    store.run(repo.record_agent_state, "1001", "acw", at(210), call_uniqueid="c9")
    store.run(repo.record_agent_state, "1001", "busy", at(250), reason="meal")

    log = store.read(repo.agent_state_log, "1001", since=at(0))
    assert [(r.state, r.reason, r.started_at, r.ended_at, r.call_uniqueid) for r in log] == [
        ("ready", None, at(0), at(30), None),
        ("on_call", None, at(30), at(210), "c9"),
        ("acw", None, at(210), at(250), "c9"),
        ("busy", "meal", at(250), None, None),
    ]
    assert [r.state for r in store.read(repo.agent_state_log, "1001", since=at(220))] == [
        "acw", "busy"]


def test_agent_state_survives_an_engine_restart(db_url: str) -> None:
    first = open_store(db_url)
    try:
        first.run(repo.upsert_agent, "1001")
        first.run(repo.upsert_agent, "1002")
        first.run(repo.record_agent_state, "1001", "acw", at(10), call_uniqueid="c1",
                  acw_extended=True)
        first.run(repo.record_agent_state, "1002", "not_ready", at(12), reason="ring_no_answer")
    finally:
        first.close()
    second = open_store(db_url)
    try:
        snaps = second.read(repo.load_agent_snapshots)
    finally:
        second.close()
    assert [(s.agent_id, s.state, s.reason, s.since, s.call_uniqueid, s.acw_extended)
            for s in snaps] == [
        ("1001", "acw", None, at(10), "c1", True),
        ("1002", "not_ready", "ring_no_answer", at(12), None, False)]


def test_save_agent_snapshot_overwrites(store: Store, agents: list[str]) -> None:
    store.run(repo.save_agent_snapshot, "1001", "acw", at(0))
    store.run(repo.save_agent_snapshot, "1001", "acw", at(0), acw_extended=True,
              updated_at=at(40))
    [snap] = store.read(repo.load_agent_snapshots)
    assert (snap.state, snap.acw_extended, snap.updated_at) == ("acw", True, at(40))


def test_a_state_before_the_current_one_is_refused(store: Store, agents: list[str]) -> None:
    store.run(repo.record_agent_state, "1001", "ready", at(100))
    with pytest.raises(StoreError, match="before the current one"):
        store.run(repo.record_agent_state, "1001", "busy", at(50))
    [current] = store.read(repo.load_agent_snapshots)
    assert current.state == "ready"


def test_an_agent_never_has_two_open_states(store: Store, agents: list[str]) -> None:
    store.run(repo.record_agent_state, "1001", "ready", at(0))
    with pytest.raises(StoreError, match=r"(?i)unique|duplicate"), store.session() as s:
        s.add(AgentState(agent_id="1001", state="busy", started_at=at(5)))
        s.flush()


def test_states_of_an_unknown_agent_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=r"(?i)foreign key"):
        store.run(repo.record_agent_state, "9999", "ready", at(0))


# --- alarms and audit --------------------------------------------------------------


def test_alarms_are_acknowledged_once(store: Store) -> None:
    first = store.run(repo.raise_alarm, "ring_no_answer", at(15), std="STD-008",
                      detail={"agent": "1001", "call": "c1"})
    second = store.run(repo.raise_alarm, "hold_breach", at(30), std="STD-040")
    assert [a.id for a in store.read(repo.open_alarms)] == [first.id, second.id]

    acked = store.run(repo.ack_alarm, first.id, "supervisor1", at(40))
    again = store.run(repo.ack_alarm, first.id, "supervisor2", at(50))
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("supervisor1", at(40))
    assert (again.acknowledged_by, again.acknowledged_at) == ("supervisor1", at(40))
    assert [a.id for a in store.read(repo.open_alarms)] == [second.id]
    assert store.read(repo.open_alarms)[0].detail == {}
    with pytest.raises(StateError, match="not_found"):
        store.run(repo.ack_alarm, 12345, "supervisor1", at(60))


def test_audit_entries_keep_who_what_and_detail(store: Store) -> None:
    entry = store.run(repo.audit, "qa1", "recording.play", at(5), target="call:c1",
                      detail={"path": "2026/01/05/c1.wav", "reason": "monthly sample"})
    assert entry.id > 0
    with store.session(readonly=True) as s:
        stored = s.get(type(entry), entry.id)
    assert stored is not None
    assert (stored.actor, stored.action, stored.target, stored.at) == (
        "qa1", "recording.play", "call:c1", at(5))
    assert stored.detail["reason"] == "monthly sample"
