"""The PIN scanner the identity live tests rely on finds a PIN wherever it is kept, and
only then: its false alarm in CI was CEL's eventtime and uniqueid side by side."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from secretscan import leaks

PIN = "111111"


def cel_file(path: Path, appdata: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE cel (AcctId INTEGER PRIMARY KEY, eventtype TEXT, eventtime TEXT,"
               " uniqueid TEXT, appdata TEXT, duration REAL)")
    db.execute("INSERT INTO cel VALUES (1, 'CHAN_START', '1796664382.111111',"
               " '1796664382.11', '', 2.111111)")
    db.execute("INSERT INTO cel VALUES (2, 'APP_START', '1796664382.311111',"
               " '1796664382.11', ?, NULL)", (appdata,))
    db.commit()
    return db  # open: the rows stay in the WAL, as with a running Asterisk


def test_times_beside_each_other_are_not_a_pin(tmp_path: Path) -> None:
    db = cel_file(tmp_path / "cel.db", "agi://127.0.0.1:4573/inbound")
    (tmp_path / "messages.log").write_text("[2026-12-07 18:11:11.111] NOTICE ok\n")
    try:
        assert PIN.encode() in (tmp_path / "cel.db-wal").read_bytes()  # raw bytes would say so
        assert leaks(tmp_path, (PIN,)) == []
    finally:
        db.close()


def test_a_pin_in_a_field_in_the_wal_or_in_a_log_is_found(tmp_path: Path) -> None:
    db = cel_file(tmp_path / "cel.db", f"Read(pin,,6)={PIN}#")
    (tmp_path / "agi.log").write_text(f"200 result={PIN}\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" + PIN.encode() + b"\xff")
    try:
        assert sorted(leaks(tmp_path, (PIN,))) == [
            f"{tmp_path / name}: {PIN}" for name in ("agi.log", "blob.bin", "cel.db")]
    finally:
        db.close()
