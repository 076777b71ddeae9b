"""Recordings and QA reviews in the store (SQLite and PostgreSQL), and the writer's flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.errors import StateError, StoreError
from callflow.store import records, repo
from callflow.store.db import Store

T0 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def agents(store: Store) -> None:
    for agent_id in ("1001", "1002"):
        store.run(repo.upsert_agent, agent_id, name=f"A{agent_id}")


def add(store: Store, uid: str, agent: str | None, number: str, start: float,
        **extra: object) -> int:
    row = store.run(repo.add_recording, uid, direction="inbound", agent_id=agent,
                    number=number, path=f"/rec/{uid}.wav", started_at=at(start),
                    ended_at=at(start + 30), duration_s=30.0, bytes=480044, **extra)
    return int(row.id)


def test_a_recording_is_found_by_call_and_by_number_and_fills_the_call(
        store: Store, agents: None) -> None:
    store.run(repo.upsert_call, "c1", direction="inbound", caller_number="13900000001",
              entered_at=at(0))
    rid = add(store, "c1", "1001", "13900000001", 5, flags=["late_answer"])
    again = add(store, "c1", "1001", "13900000001", 5, flags=["late_answer"])
    assert again == rid  # one row per call
    call = store.read(repo.get_call, "c1")
    assert call is not None and call.recording_path == "/rec/c1.wav"
    found = store.read(repo.recording_for_call, "c1")
    assert found is not None and found.id == rid and found.flags == ["late_answer"]
    assert found.started_at == at(5) and found.qa_selected is False
    assert [r.id for r in store.read(repo.list_recordings, number="13900000001")] == [rid]
    assert store.read(repo.recording_for_call, "nope") is None
    assert store.read(repo.get_recording, rid) is not None
    with pytest.raises(StoreError, match="unknown recording"):
        store.run(repo.add_recording, "c2", colour="red")


def test_filters_qa_selection_reviews_and_purge(store: Store, agents: None) -> None:
    a = add(store, "a", "1001", "111", 0)
    b = add(store, "b", "1002", "222", 100)
    c = add(store, "c", "1001", "111", 200)
    newest_first = store.read(repo.list_recordings)
    assert [r.id for r in newest_first] == [c, b, a]
    assert [r.id for r in store.read(repo.list_recordings, agent_id="1001")] == [c, a]
    assert [r.id for r in store.read(repo.list_recordings, since=at(50), until=at(150))] == [b]
    assert [r.id for r in store.read(repo.list_recordings, limit=1)] == [c]
    assert store.run(repo.select_for_qa, {a: "spread: slot 1/5", b: "flagged: x"}) == 2
    assert store.run(repo.select_for_qa, {a: "again"}) == 0  # keeps its first reason
    selected = store.read(repo.list_recordings, qa="selected")
    assert [(r.id, r.qa_reason) for r in selected] == [(b, "flagged: x"),
                                                       (a, "spread: slot 1/5")]
    review = store.run(repo.add_review, a, "qa1", at(300), scores={"x": 3},
                       penalties=[{"code": "data_leak", "count": 1}], total=-47,
                       unqualified=False, notes="ok")
    assert review.id > 0
    assert [r.id for r in store.read(repo.list_recordings, qa="reviewed")] == [a]
    reviews = store.read(repo.reviews_for, [a, b])
    assert [r.total for r in reviews[a]] == [-47] and reviews[b] == []
    with pytest.raises(StateError):
        store.run(repo.add_review, 9999, "qa1", at(1), scores={}, penalties=[], total=0,
                  unqualified=True)
    with pytest.raises(StoreError, match="qa filter"):
        store.read(repo.list_recordings, qa="maybe")
    assert [r.id for r in store.read(repo.recordings_between, at(0), at(200))] == [a, b]
    due = store.read(repo.recordings_to_purge, at(150))
    assert [r.id for r in due] == [a, b]
    store.run(repo.mark_purged, a, at(400))
    assert [r.id for r in store.read(repo.recordings_to_purge, at(150))] == [b]
    purged = store.read(repo.get_recording, a)
    assert purged is not None and purged.purged_at == at(400)


def test_the_writer_flags_what_the_store_knows(store: Store, agents: None) -> None:
    store.run(repo.upsert_call, "f1", direction="inbound", caller_number="333",
              agent_id="1002", entered_at=at(0), late=True, outcome="silent",
              release_compliant=False, transfer_count=1)
    hold = store.run(repo.add_hold, "f1", at(10), agent_id="1002")
    store.run(repo.finish_hold, hold.id, at(45))
    store.run(repo.upsert_call, "f1", hold_count=1, hold_total_s=35.0)
    data = {"call_uniqueid": "f1", "path": "/rec/f1.wav", "started_at": T0.timestamp(),
            "ended_at": at(60).isoformat(), "duration_s": 60.0, "bytes": 960044,
            "hold_limit_s": 30.0, "flags": ["manual"]}
    records.write(store, "recording", data)
    row = store.read(repo.recording_for_call, "f1")
    assert row is not None
    assert row.flags == ["hold_breach", "late_answer", "manual", "release_violation",
                         "special_call", "transfer"]
    assert (row.agent_id, row.number, row.direction) == ("1002", "333", "inbound")
    # per-call scope: the sum of holds; a limit above it is no breach
    flags, _ = store.read(records.recording_flags, "f1", hold_limit_s=40.0, hold_scope="call")
    assert "hold_breach" not in flags
    # a recording whose call row is unknown is still stored, unflagged
    records.write(store, "recording", {"call_uniqueid": "cfo-9", "direction": "outbound",
                                       "agent_id": "1001", "number": "444",
                                       "path": "/rec/o.wav", "started_at": T0.isoformat()})
    out = store.read(repo.recording_for_call, "cfo-9")
    assert out is not None and out.flags == [] and out.direction == "outbound"
    assert store.read(repo.calls_by_uniqueid, ["f1", "zz"]).keys() == {"f1"}
