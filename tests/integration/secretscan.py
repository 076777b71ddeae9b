"""Looking for secrets (a caller's PIN) in every file a live test's parts wrote.

A PIN leaks as a number of its own: ``result=582904``, ``pin 582904#``, a column
holding ``582904``. So a file leaks when a run of digits in it *is* a secret, not
when a secret's digits merely occur inside a longer run.

Raw bytes are not enough for SQLite files. A row stores its fields side by side with
no separator. CEL's ``eventtime`` (``1796664382.311111``) followed by the ``uniqueid``
(``1796664382.11``) reads ``...3111111796664382...``, and a CI run once flagged the
wrong PIN 111111 that way. Databases are therefore read through SQLite (the WAL
included), field by field. A field that is a time or a duration is not a PIN:
Asterisk's and the store's times carry microseconds, and one in a million ends in
any given six digits.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
DIGITS = re.compile(rb"\d+")
#: a number with a fraction (an epoch time, a duration) or an ISO date-time: a
#: measure, never a PIN
MEASURE = re.compile(r"^\s*(-?\d+\.\d+|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?"
                     r"([+-]\d\d:?\d\d|Z)?)\s*$")
MAX_FILE = 50_000_000


def leaks(root: Path, secrets: tuple[str, ...]) -> list[str]:
    """``path: secret`` for each file under ``root`` that holds one of ``secrets``."""
    found: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.stat().st_size > MAX_FILE \
                or path.name.endswith(("-wal", "-shm", "-journal")):
            continue  # a database's side files are read through the database
        found.extend(f"{path}: {s}" for s in secrets_in(path, secrets))
    return found


def secrets_in(path: Path, secrets: tuple[str, ...]) -> set[str]:
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return {s for value in _fields(path) for s in _numbers_in(value, secrets)}
    return _numbers_in(path.read_bytes(), secrets)


def _numbers_in(data: bytes | str, secrets: tuple[str, ...]) -> set[str]:
    if isinstance(data, str):
        if MEASURE.match(data):
            return set()
        data = data.encode("utf-8", "surrogateescape")
    wanted = {s.encode(): s for s in secrets}
    return {wanted[run] for run in DIGITS.findall(data) if run in wanted}


def _fields(path: Path) -> Iterator[str | bytes]:
    """Every field of every table (as text), the WAL's rows included."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        db.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if value is not None:
                        yield value if isinstance(value, bytes) else str(value)
    finally:
        db.close()
