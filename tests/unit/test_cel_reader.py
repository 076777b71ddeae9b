"""callflow/pbx/cel.py: the records file Asterisk's cel_sqlite3_custom writes, prepared
and read while it is written, its content treated as untrusted."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from callflow.errors import PbxError
from callflow.pbx.cel import COLUMNS, TABLE, CelReader, prepare_database, template_context

NAMES = [c for c, _ in COLUMNS]


def insert(path: Path, *rows: dict[str, str]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for row in rows:
            db.execute(f"INSERT INTO {TABLE} VALUES (NULL, {', '.join('?' * len(NAMES))})",
                       [row.get(c, "") for c in NAMES])


def row(event: str, at: str, uid: str = "1.1", linkedid: str = "1.1", **more: str
        ) -> dict[str, str]:
    return {"eventtype": event, "eventtime": at, "uniqueid": uid, "linkedid": linkedid,
            "channame": "PJSIP/caller-00000001", "context": "inbound", "exten": "100", **more}


def test_the_file_is_prepared_once_in_wal_with_the_columns_asterisk_is_given(
        tmp_path: Path) -> None:
    path = tmp_path / "log" / "callflow-cel.db"
    prepare_database(path)
    insert(path, row("CHAN_START", "1796616131.400001"))
    prepare_database(path)  # again: the rows stay
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({TABLE})")]
        assert db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 1
    assert columns == ["AcctId", *NAMES]
    context = template_context()
    assert str(context["columns"]).split(", ") == NAMES  # what cel_sqlite3_custom is told
    assert "eventtime(double)" in str(context["fields"])


def test_the_records_file_and_its_wal_are_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "cel.db"
    path.write_bytes(b"")
    path.chmod(0o644)  # an older run's file, made under umask 022
    prepare_database(path)
    with contextlib.closing(sqlite3.connect(path)) as db:  # as Asterisk writes it (WAL)
        db.execute(f"INSERT INTO {TABLE} (eventtype) VALUES ('CHAN_START')")
        db.commit()
        parts = [p for p in tmp_path.iterdir() if p.name.startswith("cel.db")]
        assert len(parts) == 3 and {p.stat().st_mode & 0o777 for p in parts} == {0o600}


def test_a_table_of_another_mapping_is_put_aside(tmp_path: Path) -> None:
    path = tmp_path / "cel.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(f"CREATE TABLE {TABLE} (AcctId INTEGER PRIMARY KEY, eventtype TEXT)")
        db.execute(f"INSERT INTO {TABLE} VALUES (NULL, 'HANGUP')")
    prepare_database(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert [r[1] for r in db.execute(f"PRAGMA table_info({TABLE})")] == ["AcctId", *NAMES]
    assert len(tables - {TABLE}) == 1  # the old one, renamed with its row


def test_rows_are_read_by_call_and_since_a_time_with_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "cel.db"
    prepare_database(path)
    insert(path, row("CHAN_START", "100.000001", "1.1", "1.1"),
           row("CHAN_START", "100.500000", "1.2", "1.1", channame="PJSIP/agent1001-00000002"),
           row("HANGUP", "200.250000", "1.1", "1.1",
               extra='{"hangupcause":16,"hangupsource":"PJSIP/caller-00000001"}'),
           row("CHAN_START", "300.000000", "2.1", "2.1"))
    reader = CelReader(path)
    one = reader.for_linkedids(["1.1"])
    assert [(e.event, e.at) for e in one] == [("CHAN_START", 100.000001),
                                             ("CHAN_START", 100.5), ("HANGUP", 200.25)]
    assert one[2].extra == {"hangupcause": 16, "hangupsource": "PJSIP/caller-00000001"}
    # a call with any row since 200 comes whole (its start before 200 included)
    assert {e.linkedid for e in reader.since(200.0)} == {"1.1", "2.1"}
    assert len(reader.since(200.0)) == 4
    assert reader.since(250.0)[0].linkedid == "2.1"


def test_what_the_network_wrote_is_kept_as_plain_bounded_text(tmp_path: Path) -> None:
    path = tmp_path / "cel.db"
    prepare_database(path)
    hostile = "1380000\r\n\x1b[2J0000\"'; DROP TABLE cel; --" + "9" * 2000
    insert(path, row("CHAN_START", "1.5", cid_num=hostile, extra="{not json"),
           row("ANSWER", "not-a-time"))
    reader = CelReader(path)
    events = reader.for_linkedids(["1.1"])
    assert len(events) == 1 and reader.skipped == 1  # the row with a broken time
    number = events[0].cid_num
    assert "\r" not in number and "\n" not in number and "\x1b" not in number
    assert len(number) <= 512 and "DROP TABLE" in number  # data, not SQL
    assert events[0].extra == {}
    assert CelReader(path).for_linkedids(["1.1"])  # the table is still there


def test_reading_while_asterisk_holds_a_write_open_is_not_blocked(tmp_path: Path) -> None:
    path = tmp_path / "cel.db"
    prepare_database(path)
    insert(path, row("CHAN_START", "1.0"))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(f"INSERT INTO {TABLE} (eventtype, eventtime, uniqueid, linkedid) "
                       "VALUES ('HANGUP', '2.0', '1.1', '1.1')")
        # the insert is not committed: a reader sees the rows before it, at once
        assert [e.event for e in CelReader(path).for_linkedids(["1.1"])] == ["CHAN_START"]
        writer.execute("COMMIT")
    assert [e.event for e in CelReader(path).for_linkedids(["1.1"])] == ["CHAN_START",
                                                                         "HANGUP"]


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PbxError, match="does not exist"):
        CelReader(tmp_path / "nothing.db").since(0)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    with pytest.raises(PbxError, match="cannot read"):
        CelReader(broken).since(0)
