"""The store writer over its journal (store/writer.py), against a fake database: fsync
before the database, batched fsyncs, an outage keeps order and loses nothing, a replay
after a death applies exactly once, a full journal holds records in memory, files are
released, dead letters; the group commit (issue 20): records waiting together go in one
transaction, an outage retries the batch whole, a refused record is found one by one
and dead-lettered alone, a death mid-batch commits none of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from callflow.engine.policy import StorePolicy
from callflow.errors import StoreError, StoreUnavailable
from callflow.store.applied import Pending
from callflow.store.journal import Journal
from callflow.store.writer import PersistQueue

FAST = StorePolicy(fsync_window_ms=0, retry_max_s=0.2)
BIG = "x" * 600  # a record of about 700 bytes


class FakeSink:
    """A database in memory that can be down, refuse a kind, or hold a write."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, Any]]] = []
        self.applied: set[str] = set()
        self.marked: set[str] = set()
        self.down = ""
        self.refuse: set[str] = set()
        self.gate: threading.Event | None = None
        self.calls = 0
        self.forgotten: list[int] = []
        self.on_apply: Callable[[str], None] | None = None

    def applied_among(self, ids: Iterable[str]) -> set[str]:
        if self.down:
            raise StoreUnavailable(self.down)
        return self.applied & set(ids)

    def apply_once(self, record_id: str, segment: int, kind: str, data: dict[str, Any],
                   before_commit: Callable[[], None]) -> bool:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.down:
            raise StoreUnavailable(self.down)
        if kind in self.refuse:
            raise StoreError(f"{kind} refused: constraint")
        if record_id in self.applied:
            return False
        if self.on_apply is not None:
            self.on_apply(record_id)
        before_commit()
        self.applied.add(record_id)
        self.rows.append((record_id, kind, data))
        return True

    def mark_applied(self, record_id: str, segment: int) -> None:
        self.marked.add(record_id)
        self.applied.add(record_id)

    def forget_below(self, segment: int) -> int:
        if self.down:
            raise StoreUnavailable(self.down)
        self.forgotten.append(segment)
        return 0

    def numbers(self) -> list[int]:
        return [data["n"] for _, _, data in self.rows]


def start(tmp_path: Path, sink: FakeSink, rules: StorePolicy = FAST,
          journal: Journal | None = None) -> PersistQueue:
    journal = journal or Journal(tmp_path / "journal", segment_bytes=rules.journal_segment_bytes)
    return PersistQueue(sink, journal, tmp_path / "dead-letters.jsonl", rules)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def put(queue: PersistQueue, numbers: Iterable[int], kind: str = "agent_state",
        pad: str = "") -> None:
    for n in numbers:
        queue.put(kind, {"n": n, "pad": pad})


class CountingJournal(Journal):
    """Notes how many appends each fsync covered."""

    def __init__(self, path: Path, segment_bytes: int) -> None:
        self.appends = 0
        self.synced_appends = 0
        super().__init__(path, segment_bytes=segment_bytes)

    def append(self, record: Any) -> int:
        segment = super().append(record)
        self.appends += 1
        return segment

    def sync(self) -> None:
        upto = self.appends
        super().sync()
        self.synced_appends = max(self.synced_appends, upto)


def test_a_record_reaches_the_database_only_once_fsynced(tmp_path: Path) -> None:
    sink = FakeSink()
    journal = CountingJournal(tmp_path / "journal", 1 << 20)
    late: list[str] = []

    def check(record_id: str) -> None:
        if int(record_id.rsplit(".", 1)[1]) > journal.synced_appends:
            late.append(record_id)

    sink.on_apply = check
    queue = start(tmp_path, sink, journal=journal)
    put(queue, range(300))
    assert queue.flush(5)
    queue.close()
    assert sink.numbers() == list(range(300))
    assert late == []


def test_records_put_together_share_an_fsync(tmp_path: Path) -> None:
    sink = FakeSink()
    queue = start(tmp_path, sink, StorePolicy(fsync_window_ms=20))
    put(queue, range(200))
    assert queue.flush(5)
    fsyncs = queue.stats.fsyncs
    queue.close()
    assert 1 <= fsyncs <= 10, fsyncs


def test_put_never_waits_for_the_database(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = threading.Event()  # every write hangs
    queue = start(tmp_path, sink)
    t0 = time.perf_counter()
    put(queue, range(200))
    took = time.perf_counter() - t0
    sink.gate.set()
    assert queue.flush(5)
    queue.close()
    assert took < 0.2, took


def test_an_outage_keeps_the_order_and_loses_nothing(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = "database is locked"
    queue = start(tmp_path, sink)
    put(queue, range(20))
    wait_until(lambda: sink.calls >= 3)  # retried, the head of the queue each time
    health = queue.health()
    assert health.unavailable and health.pending == 20 == health.journal_records
    assert "locked" in health.last_error and queue.stats.failures >= 3
    sink.down = ""
    queue.retry_now()
    assert queue.flush(5)
    assert sink.numbers() == list(range(20))
    assert not queue.health().unavailable
    queue.close()


def test_a_death_during_an_outage_loses_nothing_and_the_replay_writes_each_record_once(
        tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = "disk I/O error"
    first = start(tmp_path, sink)
    put(first, range(10))
    wait_until(lambda: sink.calls >= 1)
    first.abandon()  # the process dies: its memory is gone, its journal stays
    assert sink.rows == []
    sink.down = ""
    second = start(tmp_path, sink)
    assert second.stats.replayed == 10
    put(second, range(10, 13))  # anything new goes after the replay
    assert second.flush(5)
    second.close()
    assert sink.numbers() == list(range(13))


def test_a_replay_skips_what_the_database_has_already(tmp_path: Path) -> None:
    sink = FakeSink()
    first = start(tmp_path, sink)
    put(first, range(5))
    assert first.flush(5)
    first.abandon()  # died after the database had them, before the journal let them go
    second = start(tmp_path, sink)
    assert second.stats.replayed == 0 and second.stats.duplicates == 5
    assert second.flush(5)
    second.close()
    assert sink.numbers() == list(range(5))


def test_a_write_in_flight_when_the_process_dies_commits_nothing(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = threading.Event()
    first = start(tmp_path, sink)
    put(first, [1])
    wait_until(lambda: sink.calls == 1)  # the write waits for the database (a lock)
    dying = threading.Thread(target=first.abandon)
    dying.start()
    time.sleep(0.05)
    sink.gate.set()  # the lock goes: the dead writer must not commit
    dying.join(10)
    assert sink.rows == []
    sink.gate = None
    second = start(tmp_path, sink)
    assert second.flush(5)
    second.close()
    assert sink.numbers() == [1]


def test_a_full_journal_holds_records_in_memory_then_journals_them_as_it_drains(
        tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = "database is locked"
    rules = StorePolicy(fsync_window_ms=0, retry_max_s=0.2, journal_max_bytes=65536,
                        journal_segment_bytes=8192)
    queue = start(tmp_path, sink, rules)
    put(queue, range(200), pad=BIG)
    health = queue.health()
    assert health.memory_only > 0 and health.pending == 200
    assert health.journal_bytes <= 65536
    assert health.journal_records + health.memory_only == 200
    sink.down = ""
    queue.retry_now()
    assert queue.flush(10)
    assert sink.numbers() == list(range(200))
    health = queue.health()
    assert health.memory_only == 0 and health.journal_bytes == 0
    queue.close()


def test_a_clean_stop_with_the_store_down_keeps_every_record_for_the_next_start(
        tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = "database is locked"
    rules = StorePolicy(fsync_window_ms=0, retry_max_s=0.2, journal_max_bytes=65536)
    first = start(tmp_path, sink, rules)
    put(first, range(200), pad=BIG)
    assert first.health().memory_only > 0
    first.close(timeout=0.3)  # the held ones go to the journal past its bound
    sink.down = ""
    second = start(tmp_path, sink, rules)
    assert second.stats.replayed == 200
    assert second.flush(10)
    second.close()
    assert sink.numbers() == list(range(200))


def test_files_whose_records_are_all_in_are_deleted_and_so_are_their_marks(
        tmp_path: Path) -> None:
    sink = FakeSink()
    rules = StorePolicy(fsync_window_ms=0, journal_segment_bytes=4096)
    queue = start(tmp_path, sink, rules)
    put(queue, range(100), pad="y" * 100)
    assert queue.flush(5)
    wait_until(lambda: queue.journal.segments() == [queue.journal.current])
    assert queue.stats.segments_released > 0
    assert sink.forgotten and max(sink.forgotten) == queue.journal.current
    queue.close()
    assert queue.journal.segments() == []
    assert sink.forgotten[-1] == queue.journal.current + 1


def test_a_record_refused_for_its_content_is_dead_lettered_and_the_queue_goes_on(
        tmp_path: Path) -> None:
    sink = FakeSink()
    sink.refuse = {"bad"}
    queue = start(tmp_path, sink)
    queue.put("bad", {"n": -1})
    put(queue, [1, 2])
    assert queue.flush(5)
    queue.close()
    assert sink.numbers() == [1, 2]
    assert queue.stats.dead_letters == 1 and len(sink.marked) == 1
    letter = (tmp_path / "dead-letters.jsonl").read_text()
    assert '"kind": "bad"' in letter and "constraint" in letter
    assert (tmp_path / "dead-letters.jsonl").stat().st_mode & 0o777 == 0o600  # umask 022 here


def test_data_the_journal_cannot_hold_is_refused_at_put(tmp_path: Path) -> None:
    queue = start(tmp_path, FakeSink())
    with pytest.raises(TypeError):
        queue.put("call", {"x": object()})
    assert queue.health().pending == 0
    queue.close()


# --- group commit (issue 20) ---------------------------------------------------------


class BatchSink(FakeSink):
    """FakeSink with a group commit: a batch's rows and marks become visible together."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def apply_batch(self, batch: Sequence[Pending], before_commit: Callable[[], None]
                    ) -> list[bool]:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.down:
            raise StoreUnavailable(self.down)
        if any(item.kind in self.refuse for item in batch):
            raise StoreError("refused: constraint")  # the whole transaction rolls back
        rows, applied, out = [], set(), []
        for item in batch:
            if item.id in self.applied or item.id in applied:
                out.append(False)
                continue
            if self.on_apply is not None:
                self.on_apply(item.id)
            applied.add(item.id)
            rows.append((item.id, item.kind, item.data))
            out.append(True)
        before_commit()
        self.applied |= applied
        self.rows.extend(rows)
        self.batches.append(len(batch))
        return out


def held_back(tmp_path: Path, sink: BatchSink, rules: StorePolicy = FAST) -> PersistQueue:
    """A queue whose first write waits (a lock), so what is put meanwhile piles up."""
    sink.gate = threading.Event()
    queue = start(tmp_path, sink, rules)
    put(queue, [0])
    wait_until(lambda: sink.calls == 1)
    return queue


def test_records_waiting_together_go_in_one_transaction_each_fsynced_first(
        tmp_path: Path) -> None:
    sink = BatchSink()
    journal = CountingJournal(tmp_path / "journal", 1 << 20)
    late: list[str] = []
    sink.on_apply = lambda rid: (late.append(rid) if int(rid.rsplit(".", 1)[1])
                                 > journal.synced_appends else None)
    queue = start(tmp_path, sink, journal=journal)
    put(queue, range(500))
    assert queue.flush(10)
    queue.close()
    assert sink.numbers() == list(range(500))
    assert late == []
    assert queue.stats.batches < 500 and max(sink.batches) > 1, sink.batches
    assert queue.stats.written == 500


def test_the_batch_size_is_bounded_by_the_policy(tmp_path: Path) -> None:
    sink = BatchSink()
    queue = held_back(tmp_path, sink, StorePolicy(fsync_window_ms=0, batch_max_records=7))
    put(queue, range(1, 31))
    assert sink.gate is not None
    sink.gate.set()
    assert queue.flush(10)
    queue.close()
    assert sink.numbers() == list(range(31))
    assert max(sink.batches) == 7, sink.batches


def test_an_outage_retries_the_batch_whole_and_loses_nothing(tmp_path: Path) -> None:
    sink = BatchSink()
    sink.down = "database is locked"
    queue = start(tmp_path, sink)
    put(queue, range(50))
    wait_until(lambda: queue.stats.failures >= 2)
    assert sink.rows == [] and queue.health().unavailable
    sink.down = ""
    queue.retry_now()
    assert queue.flush(10)
    queue.close()
    assert sink.numbers() == list(range(50))
    assert queue.stats.dead_letters == 0


def test_a_refused_record_in_a_batch_is_dead_lettered_alone_in_order(tmp_path: Path) -> None:
    sink = BatchSink()
    sink.refuse = {"bad"}
    queue = held_back(tmp_path, sink)
    put(queue, [1, 2])
    queue.put("bad", {"n": -1})
    put(queue, [3, 4])
    assert sink.gate is not None
    sink.gate.set()
    assert queue.flush(10)
    queue.close()
    assert sink.numbers() == [0, 1, 2, 3, 4]
    assert queue.stats.dead_letters == 1 and len(sink.marked) == 1
    assert '"kind": "bad"' in (tmp_path / "dead-letters.jsonl").read_text()


def test_a_death_mid_batch_commits_none_of_it_and_the_replay_writes_each_once(
        tmp_path: Path) -> None:
    sink = BatchSink()
    sink.gate = threading.Event()
    # records put within one fsync window are written together: one batch of 20
    first = start(tmp_path, sink, StorePolicy(fsync_window_ms=200, retry_max_s=0.2))
    put(first, range(20))
    wait_until(lambda: sink.calls == 1)  # the batch waits for the database (a lock)
    dying = threading.Thread(target=first.abandon)
    dying.start()
    wait_until(lambda: first._halted)
    sink.gate.set()  # the lock goes: the dead writer must not commit
    dying.join(10)
    assert sink.rows == [] and sink.batches == []
    sink.gate = None
    second = start(tmp_path, sink)
    assert second.stats.replayed == 20
    assert second.flush(10)
    second.close()
    assert sink.numbers() == list(range(20))
    assert sink.batches == [20]


def test_a_replay_of_records_already_in_writes_none_twice(tmp_path: Path) -> None:
    sink = BatchSink()
    first = start(tmp_path, sink)
    put(first, range(40))
    assert first.flush(10)
    first.abandon()  # died after the database had them, before the journal let them go
    second = start(tmp_path, sink)
    assert second.flush(10)
    second.close()
    assert sink.numbers() == list(range(40))
    assert second.stats.duplicates == 40

