"""The store's local journal: every record is on local disk before the database.

The core hands the store writer ``(kind, data)`` records and moves on; the database
may be locked, unwritable or unreachable for a while, and the engine may die in the
meantime. So each record is first appended to a journal file in the state directory,
then applied to the database, and only a database transaction that also writes the
record's id into ``journal_applied`` counts as done (store/applied.py): a journal
replayed after a crash applies each record exactly once, even one that inserts.

The format, and why:

* **Segments.** The journal is a directory of files ``seg-<n>.journal``, appended to
  in order; a file is closed at ``store.journal_segment_bytes`` and deleted once every
  record in it is in the database. Deleting a whole file is the compaction: nothing is
  ever copied or rewritten, so the loop never waits for one.
* **One line per record**: ``<crc32 hex> <json>\\n`` with ``{"id", "kind", "data"}``.
  A crash mid-write leaves a partial last line: the CRC (or the missing newline)
  shows it, and it is skipped with a log line and kept aside in ``corrupt-lines`` for a
  person, never a crash. A process always appends to a new segment, so a torn tail is
  never glued to the next record.
* **Ids** are ``<generation>.<n>``: a random generation per process start and a counter,
  unique across restarts without a counter file.
* **Durability**: ``append`` is one ``write`` (the kernel has the line: a process death
  loses nothing from then on); ``sync`` fsyncs (a power loss then loses nothing);
  the writer applies a record only once it is fsync'd, and batches the fsyncs
  (``store.fsync_window_ms``; bench/bench_journal.py measures the cost).
* The directory is mode 0700 and the files 0600: the records hold callers' numbers.

Not thread-safe by itself: ``PersistQueue`` (store/writer.py) serialises ``append``
and ``roll``; ``sync`` may run beside them (it only fsyncs descriptors the appender
hands over and never closes the one being written).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SEGMENT_PATTERN = re.compile(r"seg-(\d{12})\.journal")
JOURNAL_ID_FILE = "journal-id"
CORRUPT_FILE = "corrupt-lines"


@dataclass
class JournalRecord:
    """One record: its id, what it is, its line as the journal holds it, where it lies
    (``segment`` 0: held in memory only, not in a file).

    The data is read back from the line (``data()``) when it is written to the
    database, in normal running as in a replay: what a replay writes is exactly what
    would have been written."""

    id: str
    kind: str
    line: bytes
    segment: int = 0
    ticket: int = 0  # the writer's count of journal writes when this one was made (fsync)

    @property
    def size(self) -> int:
        """What the record costs the journal's bound."""
        return len(self.line)

    def data(self) -> dict[str, Any]:
        decoded = decode_line(self.line.rstrip(b"\n"))
        if decoded is None:  # only a bug could get here: every line is checked when read
            raise ValueError(f"journal record {self.id} does not read back")
        return decoded[2]


def _plain(value: Any) -> Any:
    """JSON for what records hold besides JSON's own types: instants as ISO text (the
    store parses them back, store/records.py ``_time``), enums by value, mappings and
    sets as dicts and lists."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not a journal value")


def encode_line(record_id: str, kind: str, data: Mapping[str, Any]) -> bytes:
    """``<crc32> <json>\\n``: the CRC covers the JSON, so a torn or damaged line is seen."""
    payload = json.dumps({"id": record_id, "kind": kind, "data": data}, default=_plain,
                         ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode_line(line: bytes) -> tuple[str, str, dict[str, Any]] | None:
    """``(id, kind, data)`` of one line without its newline; None if it is damaged."""
    crc, _, payload = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(payload):
            return None
        item = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
        return None
    record_id, kind = item.get("id"), item.get("kind")
    if not isinstance(record_id, str) or not isinstance(kind, str):
        return None
    return record_id, kind, item["data"]


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The journal directory: load what a previous process left, append, fsync, release."""

    def __init__(self, directory: Path, *, segment_bytes: int) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        _private_dir(directory)
        self.journal_id = self._journal_id()
        self.generation = secrets.token_hex(6)
        self._counter = 0
        found = self.segments()
        self.current = (found[-1] if found else 0) + 1
        self._fd = -1
        self._size = 0
        self._rolled: list[int] = []  # closed for appends, not yet fsync'd and closed
        self._dir_dirty = False
        self._torn = False  # a write failed part-way: the next record starts a new segment
        self._fds = threading.Lock()  # guards the hand-over of descriptors to ``sync``
        self._open_current()

    # --- what is on disk ------------------------------------------------------------------

    def _journal_id(self) -> str:
        """This journal's name in ``journal_applied`` (kept in the directory: it outlives
        every process, so a restart prunes its own rows and no other engine's)."""
        path = self.directory / JOURNAL_ID_FILE
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            value = secrets.token_hex(8)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "w") as fh:
                fh.write(value + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(self.directory)
            return value

    def path_of(self, segment: int) -> Path:
        return self.directory / f"seg-{segment:012d}.journal"

    def segments(self) -> list[int]:
        """The segment files in the directory, oldest first."""
        found = []
        for entry in self.directory.iterdir():
            match = SEGMENT_PATTERN.fullmatch(entry.name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def load(self) -> list[JournalRecord]:
        """Every record the segments before this process's hold, in order.

        A damaged line (a partial last line after a crash mid-write, or worse) is skipped
        with a log line and copied to ``corrupt-lines``; the rest is read on."""
        records: list[JournalRecord] = []
        for segment in self.segments():
            if segment >= self.current:
                continue
            path = self.path_of(segment)
            raw = path.read_bytes()
            self._fsync_file(path)  # what a dead process wrote is in the page cache only
            lines = raw.split(b"\n")
            tail = lines.pop()  # what follows the last newline: empty unless torn
            if tail:
                self._set_aside(segment, tail, "partial last line (a crash mid-write)")
            for line in lines:
                decoded = decode_line(line)
                if decoded is None:
                    self._set_aside(segment, line, "damaged line")
                    continue
                record_id, kind, _ = decoded
                records.append(JournalRecord(record_id, kind, line + b"\n", segment))
        return records

    @staticmethod
    def _fsync_file(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _set_aside(self, segment: int, line: bytes, why: str) -> None:
        log.warning("journal %s: %s skipped (%d bytes), kept in %s", self.path_of(segment).name,
                    why, len(line), self.directory / CORRUPT_FILE)
        fd = os.open(self.directory / CORRUPT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                     FILE_MODE)
        try:
            os.write(fd, b"# seg %d: %s\n" % (segment, why.encode()) + line + b"\n")
        finally:
            os.close(fd)

    # --- appending ----------------------------------------------------------------------------

    def new_record(self, kind: str, data: Mapping[str, Any]) -> JournalRecord:
        """A record with a fresh id and its encoded line (not written yet).

        Raises TypeError for data JSON cannot hold (a programming error, not an outage)."""
        self._counter += 1
        record_id = f"{self.generation}.{self._counter}"
        return JournalRecord(record_id, kind, encode_line(record_id, kind, data))

    def append(self, record: JournalRecord) -> int:
        """Write the record's line to the current segment (rolling to a new one when it is
        full) and return that segment. One ``write``: from here a process death loses
        nothing; the fsync is ``sync``'s. Raises OSError (disk full, I/O error)."""
        if self._torn or (self._size and self._size + record.size > self.segment_bytes):
            self.roll()
            self._torn = False
        view = memoryview(record.line)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            self._torn = len(view) < record.size
            raise
        self._size += record.size
        record.segment = self.current
        return self.current

    def roll(self) -> int:
        """Close the current segment for appends and open the next; returns the old one.
        Its fsync and close are left to ``sync`` (the loop never waits for a disk)."""
        old = self.current
        with self._fds:
            self._rolled.append(self._fd)
            self.current += 1
            self._open_current()
        return old

    def _open_current(self) -> None:
        self._fd = os.open(self.path_of(self.current),
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        self._size = os.fstat(self._fd).st_size
        self._dir_dirty = True

    def sync(self) -> None:
        """fsync everything appended so far: the closed segments, the current one and the
        directory (a new segment's name). Runs in the writer's sync thread."""
        with self._fds:
            rolled, self._rolled = self._rolled, []
            current = self._fd
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        for fd in rolled:
            os.fdatasync(fd)
            os.close(fd)
        os.fdatasync(current)
        if dir_dirty:
            _fsync_dir(self.directory)

    # --- releasing ----------------------------------------------------------------------------

    def release(self, segment: int) -> None:
        """Delete a segment every record of which is in the database, durably (the
        directory is fsync'd before its ``journal_applied`` rows may go)."""
        if segment == self.current:
            raise ValueError("the current segment is still written to")
        try:
            self.path_of(segment).unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.directory)

    def oldest(self) -> int:
        """The oldest segment still on disk (the current one if no older is left)."""
        found = self.segments()
        return found[0] if found else self.current

    def close(self, *, keep_current: bool, sync: bool = True) -> None:
        """Close the files; the current segment is deleted unless it holds records not
        yet in the database (``keep_current``). ``sync=False``: leave the files as a
        dying process would (tests of a crash)."""
        if sync:
            self.sync()
        with self._fds:
            for fd in (*self._rolled, self._fd):
                os.close(fd)
            self._rolled, self._fd = [], -1
        if not keep_current:
            self.path_of(self.current).unlink(missing_ok=True)
            _fsync_dir(self.directory)
