"""The journal's files (store/journal.py): append, read back, torn and damaged lines,
segments, release, modes."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callflow.store.journal import CORRUPT_FILE, Journal, decode_line, encode_line


def open_journal(path: Path, segment_bytes: int = 1 << 20) -> Journal:
    return Journal(path, segment_bytes=segment_bytes)


def write(journal: Journal, n: int, kind: str = "agent_state") -> list[str]:
    ids = []
    for i in range(n):
        record = journal.new_record(kind, {"agent_id": "1001", "i": i})
        journal.append(record)
        ids.append(record.id)
    return ids


def test_records_read_back_in_order_by_the_next_process(tmp_path: Path) -> None:
    first = open_journal(tmp_path / "j")
    ids = write(first, 5)
    first.sync()  # a dead process's last words: no close
    second = open_journal(tmp_path / "j")
    loaded = second.load()
    assert [r.id for r in loaded] == ids
    assert [r.data()["i"] for r in loaded] == list(range(5))
    assert {r.kind for r in loaded} == {"agent_state"}
    assert second.current == first.current + 1  # a new process appends to a new file
    assert second.journal_id == first.journal_id  # the journal keeps its name
    assert second.generation != first.generation


def test_ids_are_unique_across_processes(tmp_path: Path) -> None:
    ids = set()
    for _ in range(3):
        journal = open_journal(tmp_path / "j")
        ids.update(write(journal, 10))
        journal.close(keep_current=True)
    assert len(ids) == 30


def test_the_directory_and_files_are_private(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "j")
    write(journal, 1)
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    for path in (tmp_path / "j").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_partial_last_line_is_skipped_with_a_log_line_and_kept_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = open_journal(tmp_path / "j")
    ids = write(journal, 3)
    torn = journal.new_record("call", {"uniqueid": "1.1", "caller_number": "13800000000"})
    path = journal.path_of(journal.current)
    with path.open("ab") as fh:  # a crash in the middle of the write
        fh.write(torn.line[: len(torn.line) // 2])
    with caplog.at_level(logging.WARNING, logger="callflow.store.journal"):
        loaded = open_journal(tmp_path / "j").load()
    assert [r.id for r in loaded] == ids
    assert "partial last line" in caplog.text
    assert torn.line[:20] in (tmp_path / "j" / CORRUPT_FILE).read_bytes()


def test_a_damaged_line_is_skipped_and_the_rest_read(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    journal = open_journal(tmp_path / "j")
    ids = write(journal, 3)
    path = journal.path_of(journal.current)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"1001", b"1002")  # the CRC no longer matches
    path.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="callflow.store.journal"):
        loaded = open_journal(tmp_path / "j").load()
    assert [r.id for r in loaded] == [ids[0], ids[2]]
    assert "damaged line" in caplog.text


def test_segments_roll_at_their_size_and_are_released_when_done(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "j", segment_bytes=4096)
    write(journal, 100)
    assert journal.current > 1
    old = journal.segments()[:-1]
    assert old and journal.current == journal.segments()[-1]
    journal.sync()
    for segment in old:
        journal.release(segment)
    assert journal.segments() == [journal.current] == [journal.oldest()]
    with pytest.raises(ValueError, match="current"):
        journal.release(journal.current)


def test_a_clean_close_with_nothing_pending_leaves_no_segment(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "j")
    write(journal, 2)
    journal.close(keep_current=False)
    assert journal.segments() == []
    assert open_journal(tmp_path / "j").load() == []


def test_lines_carry_json_values_and_instants_as_text() -> None:
    at = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
    line = encode_line("g.1", "task", {"due_at": at, "flags": ("late",), "n": 1.5})
    assert decode_line(line.rstrip(b"\n")) == (
        "g.1", "task", {"due_at": "2026-12-10T09:00:00+00:00", "flags": ["late"], "n": 1.5})
    with pytest.raises(TypeError, match="journal value"):
        encode_line("g.2", "task", {"x": object()})
    assert decode_line(b"00000000 {}") is None
    assert decode_line(b"garbage") is None
