"""Journal records into the database exactly once, and the watcher's write probe.

A record from the journal (store/journal.py) is applied in the same transaction that
writes its id into ``journal_applied``; a record whose id is there already is skipped.
So a journal replayed after a crash (the database had the record, the process died
before the journal learnt it) writes nothing twice, insert-type records included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.engine import Connection

from callflow.store import records
from callflow.store.db import Store, translate_errors
from callflow.store.models import JournalApplied
from callflow.store.prepared import Prepared, connection_of

log = logging.getLogger(__name__)

#: ids per ``IN (...)`` when the journal asks which of its records are applied.
ID_CHUNK = 500
#: The probe's row id (then the journal's id): written and deleted in one committed
#: transaction, never seen by anyone.
PROBE_PREFIX = "probe:"


def apply_once(store: Store, record_id: str, journal: str, segment: int, kind: str,
               data: dict[str, Any], *, before_commit: Callable[[], None] | None = None
               ) -> bool:
    """Write one journal record and its ``journal_applied`` row in one transaction;
    False (nothing written) if the record is in the database already.

    ``before_commit`` runs last inside the transaction: raising there rolls it back
    (a writer told to stop, as a dead process would, commits nothing more)."""
    with store.session() as s:
        if s.get(JournalApplied, record_id) is not None:
            return False
        records.apply(s, kind, data)
        s.add(JournalApplied(id=record_id, journal=journal, segment=segment,
                             applied_at=datetime.now(UTC)))
        s.flush()
        if before_commit is not None:
            before_commit()
    return True


@dataclass(frozen=True)
class Pending:
    """One journal record as a batch carries it to the database."""

    id: str
    segment: int
    kind: str
    data: dict[str, Any]


_APPLIED: Table = cast(Table, JournalApplied.__table__)
# prepared once per dialect and run on the DBAPI cursor (store/prepared.py; issue 20: an
# idle engine commits batches of one record, so these ran per record): "which of these
# ids are in?" (one statement per number of ids) and the marks' insert (executemany)
_MARK = Prepared(_APPLIED.insert().values(
    id=bindparam("id"), journal=bindparam("journal"), segment=bindparam("segment"),
    applied_at=bindparam("applied_at")))


@lru_cache(maxsize=ID_CHUNK)
def _applied_among(count: int) -> Prepared:
    """``SELECT id ... WHERE id IN (:i0, ..., :iN)`` for ``count`` ids."""
    return Prepared(select(_APPLIED.c.id).where(
        _APPLIED.c.id.in_([bindparam(f"i{n}") for n in range(count)])))


def _applied_of(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have their mark already, ``ID_CHUNK`` ids per statement."""
    done: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start:start + ID_CHUNK]
        rows = _applied_among(len(chunk)).rows(conn, {f"i{n}": v for n, v in enumerate(chunk)})
        done.update(row[0] for row in rows)
    return done


def apply_batch(store: Store, journal: str, batch: Sequence[Pending], *,
                before_commit: Callable[[], None] | None = None) -> list[bool]:
    """Write a run of journal records, in order, and all their ``journal_applied`` rows
    in ONE transaction (group commit); per record, False if it was in the database
    already (a replay after a crash) and so was skipped.

    Why one transaction: on SQLite each commit is a WAL write plus lock hand-over and on
    PostgreSQL a round trip and a WAL flush; per record that was most of the engine's
    CPU (docs/ingest-performance.md). The exactly-once guarantee is unchanged: a record
    counts as applied only in the transaction that writes its mark, and the batch
    commits or rolls back whole. The marks go in with one ``executemany``, the
    "already applied?" question is one ``IN`` select for the batch, both on the DBAPI
    cursor of the session's own connection (store/prepared.py), so in its transaction.

    Any error rolls back the whole batch; the writer then retries it (outage) or
    writes its records one by one (``apply_once``) to find the one the database
    refuses, so a bad record never takes good ones with it."""
    if not batch:
        return []
    if all(records.is_prepared(item.kind) for item in batch):
        return _apply_on_connection(store, journal, batch, before_commit)
    with store.session() as s:
        conn = connection_of(s)
        applied, marks = _unapplied(conn, journal, batch)
        for item, _ in marks:
            records.apply(s, item.kind, item.data)
            # each record sees the database as its own transaction would have: nothing
            # loaded for an earlier record of the batch is reused (Core writes bypass it)
            s.flush()
            s.expunge_all()
        _MARK.executemany(conn, [mark for _, mark in marks])
        s.flush()
        if before_commit is not None:
            before_commit()
    return applied


def _apply_on_connection(store: Store, journal: str, batch: Sequence[Pending],
                         before_commit: Callable[[], None] | None) -> list[bool]:
    """``apply_batch`` for a batch whose every record has a prepared writer
    (store/records.py ``is_prepared``): one transaction on a writer connection, without
    a Session (issue 20: its set-up, flush, expunge and commit cost more than the
    records' statements). The same transaction, order, marks and errors."""
    with (translate_errors("database transaction"), store.writer_connection() as conn,
          conn.begin()):
        applied, marks = _unapplied(conn, journal, batch)
        for item, _ in marks:
            records.apply_prepared(conn, item.kind, item.data)
        _MARK.executemany(conn, [mark for _, mark in marks])
        if before_commit is not None:
            before_commit()
    return applied


def _unapplied(conn: Connection, journal: str, batch: Sequence[Pending]
               ) -> tuple[list[bool], list[tuple[Pending, dict[str, Any]]]]:
    """Per record of the batch, whether it is to be written (False: its mark is in, or
    it came earlier in the batch); the records to write, in order, with their marks."""
    done = _applied_of(conn, [item.id for item in batch])
    now = datetime.now(UTC)
    applied: list[bool] = []
    marks: list[tuple[Pending, dict[str, Any]]] = []
    for item in batch:
        if item.id in done:
            applied.append(False)
            continue
        done.add(item.id)  # the same id twice in one batch is written once
        marks.append((item, {"id": item.id, "journal": journal, "segment": item.segment,
                             "applied_at": now}))
        applied.append(True)
    return applied, marks


def mark_applied(store: Store, record_id: str, journal: str, segment: int) -> None:
    """Mark a record done without writing it (it was dead-lettered: never retried)."""
    with store.session() as s:
        if s.get(JournalApplied, record_id) is None:
            s.add(JournalApplied(id=record_id, journal=journal, segment=segment,
                                 applied_at=datetime.now(UTC)))


def applied_among(store: Store, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are in the database already (a replay skips them)."""
    wanted = list(ids)
    found: set[str] = set()
    with store.session(readonly=True) as s:
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start:start + ID_CHUNK]
            found.update(s.scalars(select(JournalApplied.id).where(JournalApplied.id.in_(chunk))))
    return found


def forget_below(store: Store, journal: str, segment: int) -> int:
    """Delete this journal's rows of segments older than ``segment`` (their files are
    gone, so they can never be replayed); the number of rows deleted."""
    with store.session() as s:
        result = s.execute(delete(JournalApplied).where(JournalApplied.journal == journal,
                                                        JournalApplied.segment < segment))
        return int(getattr(result, "rowcount", 0) or 0)


def probe_write(store: Store, journal: str, timeout_s: float) -> None:
    """A small committed write that waits at most ``timeout_s`` for the database: the
    watcher's question "would a write go in now?". Raises StoreUnavailable (or
    StoreError) with the database's own words.

    A read would not do: a SQLite file locked by another writer, or one the process may
    no longer write, still answers reads. SQLite: the connection's busy timeout is
    lowered for the probe (and put back); PostgreSQL: lock and statement timeouts."""
    ms = max(1, int(timeout_s * 1000))
    with translate_errors("the store probe"), store.writer_connection() as conn:
        sqlite = store.dialect == "sqlite"
        raw: Any = conn.connection.dbapi_connection
        if sqlite:
            raw.execute(f"PRAGMA busy_timeout = {ms}")
        try:
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                probe = PROBE_PREFIX + journal
                conn.execute(insert(JournalApplied).values(
                    id=probe, journal=journal, segment=0, applied_at=datetime.now(UTC)))
                conn.execute(delete(JournalApplied).where(JournalApplied.id == probe))
        finally:
            if sqlite:
                try:
                    raw.execute(f"PRAGMA busy_timeout = {store.busy_timeout_ms}")
                except Exception as exc:  # the connection is broken: the pool replaces it
                    log.debug("store probe: busy timeout not restored: %s", exc)
                    conn.invalidate()


class StoreSink:
    """The database as the writer sees it: one journal's records in, exactly once."""

    def __init__(self, store: Store, journal: str) -> None:
        self.store = store
        self.journal = journal

    def applied_among(self, ids: Iterable[str]) -> set[str]:
        return applied_among(self.store, ids)

    def apply_once(self, record_id: str, segment: int, kind: str, data: dict[str, Any],
                   before_commit: Callable[[], None]) -> bool:
        return apply_once(self.store, record_id, self.journal, segment, kind, data,
                          before_commit=before_commit)

    def apply_batch(self, batch: Sequence[Pending], before_commit: Callable[[], None]
                    ) -> list[bool]:
        return apply_batch(self.store, self.journal, batch, before_commit=before_commit)

    def mark_applied(self, record_id: str, segment: int) -> None:
        mark_applied(self.store, record_id, self.journal, segment)

    def forget_below(self, segment: int) -> int:
        return forget_below(self.store, self.journal, segment)

    def probe(self, timeout_s: float) -> None:
        probe_write(self.store, self.journal, timeout_s)
