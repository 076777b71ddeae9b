"""Asterisk's own call records (CEL) in an SQLite file the engine reads.

Why CEL, and why this backend (issue 14). The engine's record of a call comes from
AMI; when the engine is not there to hear AMI (the process died, the link was down),
Asterisk still writes its Channel Event Logging rows, and those are what a call that
ended out of sight is closed from (``callflow/recovery.py``). Of the backends Asterisk
22 ships (all wrappers over ``res_cdrel_custom`` since 22.8), ``cel_sqlite3_custom``
is used:

* **sub-second times**: the advanced mapping's ``eventtime(double)`` is epoch seconds
  with six decimals (``res/cdrel_custom/formatters.c``); the CSV default is the same
  value but the CSV file is a text stream;
* **safe to read while Asterisk writes**: each row is one committed SQLite insert, so
  a reader never sees half a row (a CSV reader must guess at a partial last line, and
  a caller ID with a newline in it splits a CSV record in two); the file is put in WAL
  mode before Asterisk opens it (``prepare_database``), so a reader never blocks
  Asterisk's inserts, and a reader opens it read-only;
* **untrusted text stays data**: caller IDs from the network are bound as SQL
  parameters by Asterisk and read back as values, never parsed out of a line;
* **queryable**: an ``AcctId`` primary key (Asterisk's) and our index on ``linkedid``
  let the reader fetch one call's rows or the rows since a time without a scan.

The table is created here, not by Asterisk, because only so can the index exist and
WAL be set; Asterisk accepts an existing table whose column count matches its
``fields`` (``res/cdrel_custom/config.c`` ``open_database``), so the columns and the
fields are rendered from the one list below (``COLUMNS``). A table left by another
mapping is renamed aside, never written into (Asterisk would disable the backend).

``CelReader`` turns rows into ``callflow.engine.cel.CelEvent`` values; what they mean
for a call is the pure ``callflow.engine.cel``'s business.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from callflow.engine.cel import CelEvent
from callflow.errors import PbxError

log = logging.getLogger(__name__)

#: cel_sqlite3_custom.conf's category: the file ``<astlogdir>/<DATABASE>.db``.
DATABASE = "callflow-cel"
TABLE = "cel"
#: (column, res_cdrel_custom CEL field): one list renders both, so they never drift.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("eventtype", "eventtype"),
    ("eventtime", "eventtime(double)"),
    ("uniqueid", "uniqueid"),
    ("linkedid", "linkedid"),
    ("channame", "channame"),
    ("context", "context"),
    ("exten", "exten"),
    ("appname", "appname"),
    ("appdata", "appdata"),
    ("cid_num", "num"),
    ("cid_name", "name"),
    ("peer", "peer"),
    ("extra", "eventextra"),
)
#: The CEL events the records need: a channel's life (CHAN_START, ANSWER, HANGUP,
#: CHAN_END), who talked to whom (BRIDGE_ENTER/EXIT), the apps that tell our flow
#: from the fallback queue (APP_START of ``APPS``), the call's end (LINKEDID_END),
#: transfers made on the phone, a 302 followed.
EVENTS = ("CHAN_START", "CHAN_END", "ANSWER", "HANGUP", "APP_START", "BRIDGE_ENTER",
          "BRIDGE_EXIT", "LINKEDID_END", "BLINDTRANSFER", "ATTENDEDTRANSFER", "FORWARD")
#: APP_START is written only for these applications (cel.conf ``apps``).
APPS = ("agi", "queue", "mixmonitor", "dial")
#: How long Asterisk waits for a lock on the file before it drops a row (ms); with WAL
#: only a checkpoint can make it wait at all.
WRITER_BUSY_TIMEOUT_MS = 5000
#: How long the reader waits for a lock (s), and how many rows one query returns at most.
READER_BUSY_TIMEOUT_S = 2.0
MAX_ROWS = 200_000
#: The longest caller ID or app argument kept from a row (network input; Asterisk's own
#: limits are lower, this only bounds what a corrupt file can make us hold).
MAX_TEXT = 512


def database_path(log_dir: Path) -> Path:
    """Where Asterisk writes the rows: its log dir (``astlogdir``) + ``DATABASE.db``."""
    return Path(log_dir) / f"{DATABASE}.db"


def template_context() -> dict[str, object]:
    """What cel.conf.j2 and cel_sqlite3_custom.conf.j2 render from."""
    return {"database": DATABASE, "table": TABLE, "events": ",".join(EVENTS),
            "apps": ",".join(APPS), "columns": ", ".join(c for c, _ in COLUMNS),
            "fields": ", ".join(f for _, f in COLUMNS),
            "busy_timeout": WRITER_BUSY_TIMEOUT_MS}


def _create_sql() -> list[str]:
    cols = ", ".join(f"{c} TEXT" for c, _ in COLUMNS)
    return [f"CREATE TABLE {TABLE} (AcctId INTEGER PRIMARY KEY, {cols})",
            f"CREATE INDEX {TABLE}_linkedid ON {TABLE} (linkedid)",
            f"CREATE INDEX {TABLE}_eventtime ON {TABLE} (eventtime)"]


def prepare_database(path: Path) -> None:
    """Create the records file (WAL, our table and indexes) before Asterisk opens it.

    Idempotent: a file with the right table is left as it is (its rows are the
    history recovery reads). A table with other columns (an older mapping) is renamed
    ``cel_<epoch>`` so Asterisk gets a table it accepts. Must run while no Asterisk
    has the file open (the harness's ``prepare`` before ``start``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _owner_only(path)
        with contextlib.closing(sqlite3.connect(path, timeout=READER_BUSY_TIMEOUT_S)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            have = [row[1] for row in db.execute(f"PRAGMA table_info({TABLE})")]
            want = ["AcctId", *(c for c, _ in COLUMNS)]
            if have == want:
                return
            with db:
                if have:
                    aside = f"{TABLE}_{int(time.time())}"
                    log.warning("CEL table in %s has columns %s, not %s: renamed %s",
                                path, have, want, aside)
                    db.execute(f"ALTER TABLE {TABLE} RENAME TO {aside}")
                    for index in ("linkedid", "eventtime"):
                        db.execute(f"DROP INDEX IF EXISTS {TABLE}_{index}")
                for statement in _create_sql():
                    db.execute(statement)
    except sqlite3.Error as exc:
        raise PbxError(f"cannot prepare Asterisk's CEL records file {path}: {exc}") from exc


def _owner_only(path: Path) -> None:
    """The file (and an older run's -wal/-shm) 0600 before SQLite opens it: SQLite gives
    its -wal and -shm the database file's mode, and the rows carry callers' numbers, so
    whatever umask the process that prepares it runs with, only its owner reads them."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            part.chmod(0o600)


class CelReader:
    """Reads Asterisk's CEL rows, read-only, while Asterisk writes them.

    Every method opens the file for one query and closes it (no lock is held between
    reads; a WAL reader never blocks the writer). Raises ``PbxError`` when the file is
    missing or unreadable, with the path and the reason; a row that does not parse
    (a corrupt time) is skipped and counted in ``skipped``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.skipped = 0

    def for_linkedids(self, linkedids: Iterable[str]) -> list[CelEvent]:
        """Every row of these calls (all their channels), in Asterisk's order."""
        ids = sorted(set(linkedids))
        events: list[CelEvent] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            events += self._query(f"WHERE linkedid IN ({marks})", chunk)
        return sorted(events, key=lambda e: e.seq)

    def since(self, epoch: float) -> list[CelEvent]:
        """Every row of every call that had a row at or after ``epoch``: whole calls,
        so a call that began before ``epoch`` and ended after it is complete.

        ``eventtime`` is text as Asterisk binds it, ``%.6f`` of a ten-digit epoch, so the
        text order is the time order and the index serves the comparison."""
        return self._query(f"WHERE linkedid IN (SELECT linkedid FROM {TABLE} "
                           "WHERE eventtime >= ?)", [f"{epoch:.6f}"])

    def _query(self, where: str, params: Sequence[object]) -> list[CelEvent]:
        names = ", ".join(c for c, _ in COLUMNS)
        sql = f"SELECT AcctId, {names} FROM {TABLE} {where} ORDER BY AcctId LIMIT {MAX_ROWS}"
        if not self.path.is_file():
            raise PbxError(f"Asterisk's CEL records file {self.path} does not exist "
                           "(is CEL enabled and the harness's prepare run?)")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True,
                                                    timeout=READER_BUSY_TIMEOUT_S)) as db:
                db.execute("PRAGMA query_only = ON")
                rows = db.execute(sql, list(params)).fetchall()
        except sqlite3.Error as exc:
            raise PbxError(f"cannot read Asterisk's CEL records {self.path}: {exc}") from exc
        if len(rows) >= MAX_ROWS:
            log.warning("CEL read of %s stopped at %d rows", self.path, MAX_ROWS)
        events = []
        for row in rows:
            event = _event(row)
            if event is None:
                self.skipped += 1
                continue
            events.append(event)
        return events


def _text(value: object) -> str:
    """A column as text: NULL is empty, anything too long is cut, control characters
    (a caller ID can carry them) are dropped."""
    if value is None:
        return ""
    text = (value.decode(errors="replace") if isinstance(value, bytes) else str(value))
    text = text[:MAX_TEXT]
    return text if text.isprintable() else "".join(ch for ch in text if ch.isprintable())


def _event(row: Sequence[object]) -> CelEvent | None:
    seq, *values = row
    fields = dict(zip((c for c, _ in COLUMNS), values, strict=True))
    try:
        at = float(_text(fields["eventtime"]))
    except ValueError:
        return None
    extra: dict[str, object] = {}
    raw = _text(fields["extra"])
    if raw.startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                extra = {str(k): v for k, v in parsed.items()
                         if isinstance(v, str | int | float | bool)}
    if not isinstance(seq, int):
        return None
    return CelEvent(seq=seq, event=_text(fields["eventtype"]), at=at,
                    uniqueid=_text(fields["uniqueid"]), linkedid=_text(fields["linkedid"]),
                    channel=_text(fields["channame"]), context=_text(fields["context"]),
                    exten=_text(fields["exten"]), app=_text(fields["appname"]),
                    appdata=_text(fields["appdata"]), cid_num=_text(fields["cid_num"]),
                    peer=_text(fields["peer"]), extra=extra)
