"""The store adapter: Persist records journalled, then written in order, off the loop.

The core emits ``Persist(kind, data)`` and moves on. A store outage must lose nothing,
even if the engine dies during it, so a record takes this path:

1. ``put`` (on the loop, never blocking on the database) gives it an id and appends it
   to the local journal (store/journal.py): one ``write``, so from here a process death
   loses nothing.
2. The sync thread fsyncs the journal, batching the records of one
   ``store.fsync_window_ms`` into one fsync (group commit; bench/bench_journal.py). A
   record counts as handed over once fsync'd: only then is it written to the database.
3. The apply thread writes records in the order they were put, together with their
   ``journal_applied`` rows (store/applied.py), so a replay after a crash applies each
   exactly once. Group commit (issue 20): the run of fsync'd records waiting at the
   head, up to ``store.batch_max_records``, goes in ONE transaction; an idle engine
   still writes a record as soon as it is fsync'd (a batch of one), a busy one pays
   one commit for many. A write the database cannot take now (``StoreUnavailable``:
   locked, unwritable, unreachable) stays at the head and is retried, waiting 0.1 s
   doubling to ``store.retry_max_s`` (or at once when the watcher's probe says the
   store is back: ``retry_now``), while later records wait behind it: order is kept.
   A batch is retried whole. A batch the database refuses for its content is written
   again one record at a time, in order, to find the record at fault.
   A record the database refuses for its content will never go in by retrying: it is
   appended to a dead-letter file as JSON, with the reason, for a person to look at,
   marked done, and the queue moves on.
4. A journal file every record of which is in the database is deleted (and its
   ``journal_applied`` rows with it).

At start the journal's records not yet in the database are the first in the queue:
``Service.start`` waits for them (``store.replay_wait_s``) before the features read
the store. The journal is bounded (``store.journal_max_bytes`` of records not yet in
the database): past it, records are kept in memory only, in order, and written to
the journal as it drains; the watcher raises ``store_journal_full`` (a crash in that
state loses the records held in memory, and only those). At a clean stop with the
store down the records stay in the journal for the next start; those held in memory
are then journalled past the bound rather than lost.

The writer's ``health()`` is what the watcher (store/watch.py) judges: a write that
failed as unavailable, or one still waiting after ``store.stall_s``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from callflow.engine.policy import StorePolicy
from callflow.errors import StoreError, StoreUnavailable
from callflow.store.applied import Pending
from callflow.store.journal import Journal, JournalRecord

log = logging.getLogger(__name__)

#: The first wait before retrying a write the database could not take (then doubled).
FIRST_BACKOFF_S = 0.1


class Sink(Protocol):
    """Where journalled records go (store/applied.py ``StoreSink`` over the database)."""

    def applied_among(self, ids: Iterable[str]) -> set[str]: ...

    def apply_once(self, record_id: str, segment: int, kind: str, data: dict[str, Any],
                   before_commit: Callable[[], None]) -> bool: ...

    def mark_applied(self, record_id: str, segment: int) -> None: ...

    def forget_below(self, segment: int) -> int: ...


#: A sink's group commit: a run of records, in order, in one transaction (per record:
#: False if it was in already). StoreSink.apply_batch (store/applied.py).
BatchApply = Callable[[list[Pending], Callable[[], None]], list[bool]]


@dataclass
class WriterStats:
    put: int = 0  # records handed to the writer by this process
    written: int = 0  # records done (in the database, found there already, or dead-lettered)
    failures: int = 0  # attempts the database could not take, and dead letters
    dead_letters: int = 0
    pending: int = 0  # records not yet in the database
    last_error: str = ""
    replayed: int = 0  # records found in the journal at start, not yet in the database
    duplicates: int = 0  # records found in the database already (a replay after a crash)
    fsyncs: int = 0
    journal_errors: int = 0  # journal writes or fsyncs the disk refused
    segments_released: int = 0
    batches: int = 0  # transactions that went in (one record or a run of them)


@dataclass(frozen=True)
class WriterHealth:
    """The writer as the watcher sees it at one instant (monotonic times)."""

    pending: int  # records not yet in the database
    journal_records: int  # of them, in the journal
    journal_bytes: int
    memory_only: int  # of them, held in memory only (the journal was full)
    writing_since: float | None  # the write in progress began then
    unavailable: bool  # the last attempt failed: the database could not take it
    failing_since: float | None  # the first failed attempt of this run of failures began
    last_error: str
    last_ok: float | None  # the last write that went in
    journal_error: str  # why records are held in memory ("" when the journal is full)


class _Halted(Exception):
    """The writer was abandoned (a simulated process death): commit nothing more."""


class PersistQueue:
    def __init__(self, sink: Sink, journal: Journal, dead_letters: Path,
                 rules: StorePolicy, *, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        """Start the writer over ``journal`` (opened by the caller: ``sink`` writes under
        its id); what the journal holds from a previous run is queued first."""
        self._sink = sink
        #: the sink's group commit (store/applied.py); a sink without one gets one
        #: transaction per record
        self._batched: BatchApply | None = getattr(sink, "apply_batch", None)
        self.dead_letters = dead_letters
        self.rules = rules
        self._monotonic = monotonic
        self.journal = journal
        self.stats = WriterStats()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: deque[JournalRecord] = deque()
        self._held: deque[JournalRecord] = deque()  # memory only, in order (journal full)
        self._per_segment: Counter[int] = Counter()  # records not yet applied, per file
        self._releasable: set[int] = set()
        self._journal_bytes = 0
        self._writes = 0  # journal writes so far (a record's ticket)
        self._synced = 0  # journal writes fsync'd so far
        self._segment = self.journal.current
        self._stop = False
        self._halted = False
        self._wake = threading.Event()
        self._writing_since: float | None = None
        self._failing_since: float | None = None
        self._unavailable = False
        self._last_ok: float | None = None
        self._journal_error = ""
        self._replay(self.journal.load())
        self._syncer = threading.Thread(target=self._sync_loop, name="callflow-store-fsync",
                                        daemon=True)
        self._applier = threading.Thread(target=self._apply_loop, name="callflow-store-writer",
                                         daemon=True)
        self._syncer.start()
        self._applier.start()

    # --- start: what the journal holds ----------------------------------------------------

    def _replay(self, loaded: list[JournalRecord]) -> None:
        """Queue the journal's records not yet in the database, in order, before anything
        new. The database says which are in already (``apply_once`` checks again)."""
        try:
            done = self._sink.applied_among(r.id for r in loaded) if loaded else set()
        except StoreError as exc:
            log.warning("journal: cannot ask the store which records it has (%s); "
                        "each is checked as it is written", exc)
            done = set()
        for record in loaded:
            if record.id in done:
                self.stats.duplicates += 1
                continue
            self._pending.append(record)
            self._per_segment[record.segment] += 1
            self._journal_bytes += record.size
        self.stats.pending = self.stats.replayed = len(self._pending)
        self._releasable = {s for s in self.journal.segments()
                            if s != self.journal.current and not self._per_segment[s]}
        if loaded:
            log.warning("journal: %d records found at start, %d not yet in the database: "
                        "written first", len(loaded), len(self._pending))

    # --- the loop's side ------------------------------------------------------------------

    def put(self, kind: str, data: dict[str, Any]) -> None:
        """Never waits for the database: the record is journalled (one write) and queued.

        Raises TypeError for data the journal cannot hold (a programming error)."""
        with self._cond:
            record = self.journal.new_record(kind, data)
            self._pending.append(record)
            self.stats.pending += 1
            self.stats.put += 1
            if self._held or not self._journal(record):
                self._hold(record)
            self._cond.notify_all()

    def _journal(self, record: JournalRecord) -> bool:
        """Append one record to the journal if it fits the bound (under the lock)."""
        if self._journal_bytes + record.size > self.rules.journal_max_bytes:
            return False
        try:
            segment = self.journal.append(record)
        except OSError as exc:
            self.stats.journal_errors += 1
            self._journal_error = f"journal write failed: {exc}"
            log.error("journal write failed (%s): the record is held in memory", exc)
            return False
        if segment != self._segment:  # the journal moved to a new file
            if not self._per_segment[self._segment]:
                self._releasable.add(self._segment)
            self._segment = segment
        self._writes += 1
        record.ticket = self._writes
        self._per_segment[segment] += 1
        self._journal_bytes += record.size
        return True

    def _hold(self, record: JournalRecord) -> None:
        if not self._held:
            log.error("journal full (%d bytes not yet in the database, bound %d): records are "
                      "held in memory only until it drains; a crash now loses them",
                      self._journal_bytes, self.rules.journal_max_bytes)
        record.segment = 0
        self._held.append(record)

    def retry_now(self) -> None:
        """The store is back (the watcher's probe went in): retry a failed write at once."""
        self._wake.set()

    def health(self) -> WriterHealth:
        with self._lock:
            return WriterHealth(
                pending=len(self._pending), journal_records=len(self._pending) - len(self._held),
                journal_bytes=self._journal_bytes, memory_only=len(self._held),
                writing_since=self._writing_since, unavailable=self._unavailable,
                failing_since=self._failing_since,
                last_error=self.stats.last_error, last_ok=self._last_ok,
                journal_error=self._journal_error if self._held else "")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is in the database (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending (up to ``timeout``), then stop. What the store could not
        take stays in the journal for the next start; nothing is dropped."""
        flushed = self.flush(timeout)
        self._stop_threads(timeout)
        with self._lock:
            held = list(self._held)
            for record in held:  # past the bound, rather than lost
                self._held.popleft()
                if not self._force_journal(record):
                    log.error("journal: %s record %s lost at stop", record.kind, record.id)
            left = len(self._pending)
            keep_current = bool(self._per_segment[self.journal.current])
        if left:
            log.warning("store: %d records not in the database at stop (%s); they stay in "
                        "the journal %s for the next start", left,
                        self.stats.last_error or "timed out", self.journal.directory)
        elif flushed:
            self._release_drained()
        self.journal.close(keep_current=keep_current)
        if not left and flushed:
            try:  # no file holds a record any more: none of this journal's marks is needed
                self._sink.forget_below(self.journal.current + 1)
            except StoreError as exc:
                log.info("journal marks not pruned at stop: %s", exc)

    def _force_journal(self, record: JournalRecord) -> bool:
        try:
            segment = self.journal.append(record)
        except OSError as exc:
            log.error("journal write failed at stop: %s", exc)
            return False
        self._per_segment[segment] += 1
        return True

    def abandon(self) -> None:
        """Stop as a dead process would: nothing more is written to the database or the
        journal, nothing pending is flushed or dropped from the files (tests of a crash;
        the in-memory queue is simply forgotten)."""
        self._halted = True
        self._stop_threads(5.0)
        self.journal.close(keep_current=True, sync=False)

    def _stop_threads(self, timeout: float) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._wake.set()
        self._syncer.join(timeout)
        self._applier.join(timeout)

    # --- the sync thread: fsync, batched ---------------------------------------------------------

    def _sync_loop(self) -> None:
        window = self.rules.fsync_window_ms / 1000
        while True:
            with self._cond:
                while not self._stop and self._synced >= self._writes:
                    self._cond.wait()
                if self._halted or (self._stop and self._synced >= self._writes):
                    return
            if window:
                time.sleep(window)  # the records of this window share the fsync
            with self._cond:
                target = self._writes
            try:
                self.journal.sync()
            except OSError as exc:  # the database still takes the record: its copy counts
                self.stats.journal_errors += 1
                log.error("journal fsync failed: %s", exc)
            with self._cond:
                self._synced = max(self._synced, target)
                self.stats.fsyncs += 1
                self._cond.notify_all()

    # --- the apply thread: into the database, in order ------------------------------------------

    def _ready(self) -> JournalRecord | None:
        """The head of the queue once it may be written (journalled records: fsync'd)."""
        if not self._pending:
            return None
        head = self._pending[0]
        return head if self._may_write(head) else None

    def _may_write(self, record: JournalRecord) -> bool:
        return record.segment == 0 or record.ticket <= self._synced

    def _batch(self) -> list[JournalRecord]:
        """The run of records at the head that may be written now, in order, at most
        ``store.batch_max_records`` (under the lock)."""
        batch: list[JournalRecord] = []
        limit = self.rules.batch_max_records
        for record in self._pending:
            if len(batch) >= limit or not self._may_write(record):
                break
            batch.append(record)
        return batch

    def _apply_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and self._ready() is None and not self._releasable:
                    self._cond.wait()
                if self._stop:  # close() waited for the queue already (flush)
                    return
                batch = self._batch()
            if self._releasable:
                self._release_drained()
            if not batch:
                continue
            # a batch of one takes the group-commit path too (issue 20: an idle engine
            # writes mostly batches of one, and apply_once's ORM round trips cost more);
            # apply_once stays the way to find the record a refused batch holds
            if self._batched is not None:
                written = self._write_batch(batch)
                if written is None:  # refused as a whole: find the bad one, one by one
                    written = 0
                    for record in batch:
                        if not self._write(record):
                            break
                        self._done(record)
                        written += 1
                    continue
                self._done_many(batch[:written])
            elif self._write(batch[0]):
                self._done(batch[0])

    def _write_batch(self, batch: list[JournalRecord]) -> int | None:
        """A run of records into the database in one transaction (group commit): how many
        went in (all, or 0 if the writer stopped first); None if the database refused
        the batch for its content (the caller then writes them one by one, so only the
        bad record is dead-lettered). An outage retries the whole batch, in order."""
        batched = self._batched
        assert batched is not None
        items = [Pending(r.id, r.segment, r.kind, r.data()) for r in batch]
        return self._attempt(lambda: batched(items, self._check_alive), batch[0].kind,
                             len(batch))

    def _write(self, record: JournalRecord) -> bool:
        """One record into the database; False if the writer stopped first."""
        def once() -> list[bool]:
            return [self._sink.apply_once(record.id, record.segment, record.kind,
                                          record.data(), self._check_alive)]
        try:
            written = self._attempt(once, record.kind, 1)
        except Exception as exc:  # refused for its content: retrying will not help
            self._dead_letter(record, exc)
            return not self._halted
        return bool(written)

    def _attempt(self, write: Callable[[], list[bool]], kind: str, size: int) -> int | None:
        """Run ``write`` until the database takes it: the number of records written, 0 if
        the writer stopped first, None if it was refused for its content (batches; a
        single record's refusal is raised)."""
        backoff = FIRST_BACKOFF_S
        while not self._halted:
            with self._lock:
                self._writing_since = self._monotonic()
            try:
                applied = write()
            except _Halted:
                return 0
            except StoreUnavailable as exc:
                with self._lock:
                    if self._failing_since is None:
                        self._failing_since = self._writing_since
                    self._writing_since = None
                    self._unavailable = True
                    self.stats.failures += 1
                    self.stats.last_error = str(exc)
                if self._stop:
                    return 0  # stays in the journal for the next start
                log.warning("store write of %s failed (%s); retrying in %.1fs",
                            kind if size == 1 else f"{size} records from {kind}", exc, backoff)
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, self.rules.retry_max_s)
                continue
            except Exception as exc:
                if size == 1:
                    raise
                with self._lock:
                    self._writing_since = None
                log.info("store refused a batch of %d records (%s): writing them one by one",
                         size, exc)
                return None
            with self._lock:
                self._writing_since = self._failing_since = None
                self._unavailable = False
                self._last_ok = self._monotonic()
                self.stats.duplicates += applied.count(False)
                self.stats.batches += 1
            return len(applied)
        return 0

    def _check_alive(self) -> None:
        if self._halted:
            raise _Halted

    def _done(self, record: JournalRecord) -> None:
        self._done_many([record])

    def _done_many(self, done: list[JournalRecord]) -> None:
        """The records at the head of the queue are in the database (under one lock)."""
        if not done:
            return
        with self._cond:
            for record in done:
                self._forget(record)
            self._drain_held()
            self._cond.notify_all()

    def _forget(self, record: JournalRecord) -> None:
        """One record is in: off the queue and off its journal file's count (locked)."""
        self._pending.popleft()
        self.stats.pending = len(self._pending)
        self.stats.written += 1
        if record.segment:
            self._journal_bytes -= record.size
            self._per_segment[record.segment] -= 1
            if not self._per_segment[record.segment]:
                del self._per_segment[record.segment]
                if record.segment != self.journal.current:
                    self._releasable.add(record.segment)
        elif self._held and self._held[0] is record:
            self._held.popleft()

    def _drain_held(self) -> None:
        """Records held in memory go to the journal, in order, as it has room again."""
        if not self._held:
            return
        while self._held:
            if not self._journal(self._held[0]):
                return
            self._held.popleft()
        log.warning("journal has room again: no record is held in memory only")
        self._journal_error = ""

    def _release_drained(self) -> None:
        """Delete the journal files all of whose records are in, then their marks."""
        with self._lock:
            segments, self._releasable = sorted(self._releasable), set()
        for segment in segments:
            try:
                self.journal.release(segment)
                self.stats.segments_released += 1
            except OSError as exc:
                log.error("journal file %s not deleted: %s", segment, exc)
        try:
            self._sink.forget_below(self.journal.oldest())
        except StoreError as exc:  # the next release deletes them as well
            log.info("journal marks not pruned yet: %s", exc)

    def _dead_letter(self, record: JournalRecord, exc: Exception) -> None:
        log.error("store refused a %s record (%s); kept in %s", record.kind, exc,
                  self.dead_letters)
        with self._lock:
            self.stats.dead_letters += 1
            self.stats.failures += 1
        try:
            data: Any = record.data()
        except ValueError:
            data = record.line.decode(errors="replace")
        line = json.dumps({"kind": record.kind, "id": record.id, "error": str(exc),
                           "data": data}, default=str, ensure_ascii=False)
        self.dead_letters.parent.mkdir(parents=True, exist_ok=True)
        # 0600 whatever the umask: the records hold callers' numbers and agents' notes
        fd = os.open(self.dead_letters, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        try:  # a replay must not dead-letter it again
            self._sink.mark_applied(record.id, record.segment)
        except StoreError as mark_exc:
            log.warning("dead letter %s not marked done: %s", record.id, mark_exc)
