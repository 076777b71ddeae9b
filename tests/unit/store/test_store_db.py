"""Opening, health, sessions and error translation of the Store, on both databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from callflow.errors import StoreError
from callflow.store import repo
from callflow.store.db import Store, open_store
from callflow.store.models import Call

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))


def test_sqlite_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "callflow.db"
    store = open_store(f"sqlite:///{target}")
    try:
        assert target.exists()
        assert store.ping()
    finally:
        store.close()


@pytest.mark.parametrize("url, message", [
    ("not a url", "invalid database URL"),
    ("mysql://u@h/db", "unsupported database"),
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
])
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(url)


def test_ping_is_true_on_a_live_database(store: Store) -> None:
    assert store.ping()


def test_ping_is_false_not_an_exception_when_the_server_is_gone() -> None:
    # nothing listens on port 1; psycopg fails at once with "connection refused"
    store = open_store("postgresql://nobody@127.0.0.1:1/none", migrate=False)
    try:
        started = time.monotonic()
        assert store.ping() is False
        assert time.monotonic() - started < 5
    finally:
        store.close()


def test_ping_is_false_when_the_sqlite_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database file" * 100)
    store = open_store(f"sqlite:///{path}", migrate=False)
    try:
        assert store.ping() is False
    finally:
        store.close()


def test_opening_an_unreachable_database_raises_store_error() -> None:
    with pytest.raises(StoreError, match="migrating the database"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def test_plain_postgresql_urls_use_psycopg3() -> None:
    store = open_store("postgresql://nobody@127.0.0.1:1/none", migrate=False)
    try:
        assert store.engine.dialect.driver == "psycopg"
    finally:
        store.close()


def test_instants_come_back_aware_in_utc_whatever_zone_went_in(store: Store) -> None:
    entered = datetime(2026, 1, 5, 17, 0, 0, 250000, tzinfo=BEIJING)  # = 09:00:00.25 UTC
    store.run(repo.upsert_call, "tz-1", direction="inbound", entered_at=entered)
    call = store.read(repo.get_call, "tz-1")
    assert call is not None and call.entered_at is not None
    assert call.entered_at == entered
    assert call.entered_at.tzinfo == UTC
    assert call.entered_at.isoformat() == "2026-01-05T09:00:00.250000+00:00"


def test_comparisons_in_sql_use_the_instant_not_the_wall_clock_text(store: Store) -> None:
    store.run(repo.upsert_call, "tz-2", direction="inbound", caller_number="138",
              entered_at=datetime(2026, 1, 5, 17, 0, tzinfo=BEIJING))
    # 09:30 UTC is after 17:00+08:00 (09:00 UTC) although "09:30" < "17:00" as text
    since = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert store.read(repo.calls_from_number, "138", since=since) == []
    earlier = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    assert [c.uniqueid for c in store.read(repo.calls_from_number, "138", since=earlier)] == [
        "tz-2"]


def test_a_naive_datetime_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        store.run(repo.upsert_call, "naive", direction="inbound",
                  entered_at=datetime(2026, 1, 5, 9, 0))
    assert store.read(repo.get_call, "naive") is None


def test_a_failed_transaction_writes_nothing_at_all(store: Store) -> None:
    with pytest.raises(StoreError, match="outcome"), store.session() as s:
        repo.upsert_call(s, "rolled-back", direction="inbound", entered_at=T0)
        repo.append_event(s, "entered", T0, uniqueid="rolled-back")
        repo.upsert_call(s, "rolled-back", outcome="no such outcome")
    assert store.read(repo.get_call, "rolled-back") is None
    assert store.read(repo.read_events) == []


def test_readonly_sessions_do_not_write(store: Store) -> None:
    with store.session(readonly=True) as s:
        repo.upsert_call(s, "ro", direction="inbound")
    assert store.read(repo.get_call, "ro") is None


def test_objects_stay_readable_after_their_session(store: Store) -> None:
    with store.session() as s:
        repo.upsert_call(s, "after", direction="outbound", entered_at=T0)
    with store.session(readonly=True) as s:
        call = s.scalar(select(Call).where(Call.uniqueid == "after"))
    assert call is not None and call.direction == "outbound" and call.entered_at == T0


def test_sqlite_enforces_foreign_keys_like_postgresql(store: Store) -> None:
    with pytest.raises(StoreError, match=r"(?i)foreign key"):
        store.run(repo.upsert_call, "fk", direction="inbound", agent_id="no-such-agent")


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        store.close()
