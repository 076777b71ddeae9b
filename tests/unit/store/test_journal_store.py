"""Journal records into a real database exactly once (store/applied.py), on SQLite and
PostgreSQL: insert-type records (agent states, alarms) survive a crash and a replay
without a duplicate; the marks go once their files do; the write probe."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callflow.engine.policy import StorePolicy
from callflow.errors import StoreUnavailable
from callflow.store import repo
from callflow.store.applied import StoreSink, applied_among, probe_write
from callflow.store.db import Store
from callflow.store.journal import Journal
from callflow.store.models import AgentState, Alarm, JournalApplied
from callflow.store.writer import PersistQueue

RULES = StorePolicy(fsync_window_ms=0, retry_max_s=0.2)
AT = 1_800_000_000.0


def records(n: int) -> list[tuple[str, dict[str, object]]]:
    """Insert-type records: an agent's states one after another, and alarms."""
    out: list[tuple[str, dict[str, object]]] = []
    for i in range(n):
        state = ("ready", "on_call", "acw")[i % 3]
        out.append(("agent_state", {"agent_id": "1001", "state": state, "at": AT + i}))
        out.append(("alarm", {"kind": "ring_no_answer", "std": "STD-008",
                              "detail": {"i": i}, "raised_at": AT + i}))
    return out


def counts(store: Store) -> tuple[int, int]:
    with store.session(readonly=True) as s:
        states = s.scalar(select(func.count()).select_from(AgentState)) or 0
        alarms = s.scalar(select(func.count()).select_from(Alarm)) or 0
    return states, alarms


def marks(store: Store) -> int:
    with store.session(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(JournalApplied)) or 0


def start(store: Store, tmp_path: Path) -> PersistQueue:
    journal = Journal(tmp_path / "journal", segment_bytes=RULES.journal_segment_bytes)
    return PersistQueue(StoreSink(store, journal.journal_id), journal,
                        tmp_path / "dead.jsonl", RULES)


@pytest.fixture
def agent(store: Store) -> Store:
    store.run(repo.upsert_agent, "1001", name="Agent 1001", extension="agent1001")
    return store


def test_a_replay_after_a_crash_writes_no_insert_twice(agent: Store, tmp_path: Path) -> None:
    store = agent
    first = start(store, tmp_path)
    for kind, data in records(6):
        first.put(kind, data)
    assert first.flush(10)
    first.abandon()  # died after the database had them, before the journal let them go
    assert counts(store) == (6, 6)
    second = start(store, tmp_path)
    assert second.stats.duplicates == 12 and second.stats.replayed == 0
    assert second.flush(10)
    second.close()
    assert counts(store) == (6, 6)
    assert marks(store) == 0  # every file gone, so every mark


def test_records_the_dead_process_had_written_are_skipped_one_by_one(
        agent: Store, tmp_path: Path) -> None:
    """The database took some records in transactions the dying process never saw end:
    the replay asks, then each write checks again in its own transaction."""
    store = agent
    journal = Journal(tmp_path / "journal", segment_bytes=1 << 20)
    sink = StoreSink(store, journal.journal_id)
    written = []
    for kind, data in records(4):
        record = journal.new_record(kind, data)
        journal.append(record)
        written.append(record)
    journal.sync()
    for record in written[:3]:  # committed before the death
        assert sink.apply_once(record.id, record.segment, record.kind, record.data(),
                               lambda: None)
    assert applied_among(store, [r.id for r in written]) == {r.id for r in written[:3]}
    queue = PersistQueue(sink, Journal(tmp_path / "journal", segment_bytes=1 << 20),
                         tmp_path / "dead.jsonl", RULES)
    assert queue.stats.replayed == 5 and queue.stats.duplicates == 3
    assert queue.flush(10)
    queue.close()
    assert counts(store) == (4, 4)


def test_a_failing_write_commits_nothing(agent: Store, tmp_path: Path) -> None:
    store = agent
    sink = StoreSink(store, "j1")

    def die() -> None:
        raise RuntimeError("the process died")

    with pytest.raises(RuntimeError):
        sink.apply_once("g.1", 1, "alarm", records(1)[1][1], die)
    assert counts(store) == (0, 0) and marks(store) == 0


def test_the_probe_writes_nothing_visible(store: Store) -> None:
    probe_write(store, "j1", 1.0)
    probe_write(store, "j1", 1.0)
    assert marks(store) == 0


def test_the_probe_fails_within_its_timeout_on_a_locked_sqlite_file(tmp_path: Path) -> None:
    from callflow.store.db import open_store

    path = tmp_path / "cf.db"
    store = open_store(f"sqlite:///{path}")
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            probe_write(store, "j1", 0.3)
        assert time.monotonic() - t0 < 1.5
        locker.execute("ROLLBACK")
        probe_write(store, "j1", 0.3)  # and the connection's own busy timeout is back
        with store.writer_connection() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == store.busy_timeout_ms
    finally:
        locker.close()
        store.close()


def call(i: int, **extra: object) -> dict[str, object]:
    return {"uniqueid": f"1800000000.{i}", "direction": "inbound", "caller_number": "555",
            "queue": "general", "agent_id": "1001", "entered_at": AT + i,
            "offers": [{"agent_id": "1001", "started_at": AT + i + 1, "ended_at": None}],
            **extra}


def test_a_group_commit_writes_the_batch_and_dead_letters_only_the_refused_record(
        agent: Store, tmp_path: Path) -> None:
    """Records put within one fsync window go in as one transaction; one the database
    refuses (a new call without its direction: NOT NULL) rolls the batch back, then the
    records are written one by one and only it is dead-lettered (issue 20)."""
    store = agent
    rules = StorePolicy(fsync_window_ms=200, retry_max_s=0.2)
    journal = Journal(tmp_path / "journal", segment_bytes=rules.journal_segment_bytes)
    queue = PersistQueue(StoreSink(store, journal.journal_id), journal,
                         tmp_path / "dead.jsonl", rules)
    queue.put("call", call(1))
    for kind, data in records(3):
        queue.put(kind, data)
    queue.put("call", {"uniqueid": "1800000000.9", "queue": "general"})  # refused
    queue.put("call", call(1, answered_at=AT + 3, offers=[
        {"agent_id": "1001", "started_at": AT + 2, "ended_at": AT + 3, "result": "answered"}]))
    queue.put("call", call(2))
    assert queue.flush(10)
    queue.close()
    assert queue.stats.dead_letters == 1 and queue.stats.written == 10
    assert "1800000000.9" in (tmp_path / "dead.jsonl").read_text()
    assert counts(store) == (3, 3)
    with store.session(readonly=True) as s:
        first = repo.get_call(s, "1800000000.1")
        assert first is not None and first.answered_at is not None
        offers = repo.offers_for_call(s, "1800000000.1")
        assert [(o.result, o.ring_s) for o in offers] == [("answered", 1.0)]
        assert repo.get_call(s, "1800000000.2") is not None
        assert repo.get_call(s, "1800000000.9") is None


def test_a_batch_applies_the_records_not_yet_in_and_skips_the_rest(agent: Store) -> None:
    """The sink's group commit: one transaction, each record once (a replay's batch)."""
    from callflow.store.applied import Pending, apply_batch

    store = agent
    batch = [Pending(f"g.{i}", 1, kind, data) for i, (kind, data) in enumerate(records(4))]
    assert apply_batch(store, "j1", batch[:3]) == [True, True, True]
    assert apply_batch(store, "j1", batch) == [False, False, False] + [True] * 5
    assert counts(store) == (4, 4) and marks(store) == 8

    def die() -> None:
        raise RuntimeError("the process died")

    more = [Pending(f"h.{i}", 1, kind, data) for i, (kind, data) in enumerate(records(2))
            if kind == "alarm"]
    with pytest.raises(RuntimeError):
        apply_batch(store, "j1", more, before_commit=die)
    assert counts(store) == (4, 4) and marks(store) == 8
