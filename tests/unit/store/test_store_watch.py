"""The store watcher (store/watch.py): the writer's failures and stalls and its own probe
become one alarm per outage and a recovery with its length; /healthz's store part.
A fake writer and clock first, then a real SQLite file locked by another connection."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from callflow.engine.effects import Alarm
from callflow.engine.policy import StorePolicy
from callflow.errors import StoreUnavailable
from callflow.store import repo
from callflow.store.applied import StoreSink
from callflow.store.db import open_store
from callflow.store.journal import Journal
from callflow.store.watch import StoreWatcher
from callflow.store.writer import PersistQueue, WriterHealth, WriterStats

RULES = StorePolicy()
IDLE = WriterHealth(pending=0, journal_records=0, journal_bytes=0, memory_only=0,
                    writing_since=None, unavailable=False, failing_since=None, last_error="",
                    last_ok=None, journal_error="")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeWriter:
    def __init__(self) -> None:
        self.state = IDLE
        self.stats = WriterStats()
        self.retries = 0

    def health(self) -> WriterHealth:
        return self.state

    def retry_now(self) -> None:
        self.retries += 1


class FakeProbe:
    def __init__(self) -> None:
        self.error = ""
        self.calls = 0

    def __call__(self, timeout_s: float) -> None:
        self.calls += 1
        if self.error:
            raise StoreUnavailable(self.error)


def watcher(writer: FakeWriter, probe: FakeProbe, clock: FakeClock,
            alarms: list[Alarm]) -> StoreWatcher:
    return StoreWatcher(writer, probe, RULES, alarms.append,  # type: ignore[arg-type]
                        monotonic=clock, wall=lambda: 1_800_000_000.0 + clock.now)


async def settle(w: StoreWatcher) -> None:
    """Let a probe the last look started finish."""
    for _ in range(100):
        if w._probing is None:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("probe did not finish")


def kinds(alarms: list[Alarm]) -> list[str]:
    return [a.kind for a in alarms]


async def test_a_failed_write_is_alarmed_at_the_next_look_once_and_its_end_with_its_length(
        ) -> None:
    writer, probe, clock, alarms = FakeWriter(), FakeProbe(), FakeClock(), []
    w = watcher(writer, probe, clock, alarms)
    writer.state = replace(IDLE, pending=4, journal_records=4, unavailable=True,
                           last_error="database transaction failed: disk I/O error")
    w.look()
    assert kinds(alarms) == ["store_unavailable"]
    assert alarms[0].detail["pending"] == 4 and "disk I/O" in alarms[0].detail["error"]
    part = w.component()
    assert part["ok"] is False and part["state"] == "unavailable"
    assert part["journal_records"] == 4 and "disk I/O" in part["last_error"]
    assert "4 records kept in the journal" in part["detail"]
    probe.error = "disk I/O error"
    for _ in range(20):  # retries and probes fail: still one alarm
        clock.now += RULES.check_interval_s
        w.look()
        await settle(w)
    assert kinds(alarms) == ["store_unavailable"]
    assert w.component()["down_for_s"] == pytest.approx(10.0)
    clock.now += 0.5
    writer.state = replace(IDLE, last_ok=clock.now)  # the retry went in, the queue drained
    w.look()
    assert kinds(alarms) == ["store_unavailable", "store_recovered"]
    assert alarms[1].detail["outage_s"] == pytest.approx(10.5)
    part = w.component()
    assert part["ok"] is True and part["last_outage_s"] == pytest.approx(10.5)


async def test_a_write_waiting_past_the_stall_limit_counts_as_a_failure() -> None:
    writer, probe, clock, alarms = FakeWriter(), FakeProbe(), FakeClock(), []
    w = watcher(writer, probe, clock, alarms)
    writer.state = replace(IDLE, pending=1, journal_records=1, writing_since=clock.now)
    clock.now += RULES.stall_s - 0.1
    w.look()
    assert alarms == []
    clock.now += 0.2
    w.look()
    assert kinds(alarms) == ["store_unavailable"]
    assert "waited" in alarms[0].detail["error"]
    assert alarms[0].detail["since"] == pytest.approx(1_800_000_000.0 + 100.0)  # the write's start


async def test_an_idle_store_is_probed_and_a_failed_probe_alarms_with_its_words() -> None:
    writer, probe, clock, alarms = FakeWriter(), FakeProbe(), FakeClock(), []
    w = watcher(writer, probe, clock, alarms)
    w.look()
    await settle(w)
    assert probe.calls == 1 and alarms == []
    clock.now += RULES.probe_interval_s / 2
    w.look()
    await settle(w)
    assert probe.calls == 1  # not due yet
    probe.error = "the store probe failed: OperationalError: database is locked"
    clock.now += RULES.probe_interval_s
    w.look()  # starts the probe
    await settle(w)
    w.look()  # sees its result
    assert kinds(alarms) == ["store_unavailable"]
    assert "database is locked" in alarms[0].detail["error"]


async def test_a_probe_that_goes_in_tells_a_waiting_writer_to_retry_at_once() -> None:
    writer, probe, clock, alarms = FakeWriter(), FakeProbe(), FakeClock(), []
    w = watcher(writer, probe, clock, alarms)
    writer.state = replace(IDLE, pending=2, journal_records=2, unavailable=True,
                           last_error="locked")
    w.look()
    await settle(w)
    assert writer.retries == 1


async def test_records_held_in_memory_make_the_store_part_degraded() -> None:
    writer, probe, clock, alarms = FakeWriter(), FakeProbe(), FakeClock(), []
    w = watcher(writer, probe, clock, alarms)
    writer.state = replace(IDLE, pending=10, journal_records=7, memory_only=3,
                           writing_since=clock.now)
    w.look()
    assert kinds(alarms) == ["store_journal_full"]
    part = w.component()
    assert part["ok"] is False and part["state"] == "journal_full"
    assert part["memory_only_records"] == 3


# --- a real SQLite file, locked by another connection ------------------------------------------


def locked(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "writing"])
async def test_a_locked_sqlite_file_is_alarmed_within_5s_and_every_record_lands_after(
        tmp_path: Path, busy: bool) -> None:
    path = tmp_path / "cf.db"
    store = open_store(f"sqlite:///{path}")
    store.run(repo.upsert_agent, "1001", name="Agent 1001", extension="agent1001")
    journal = Journal(tmp_path / "journal", segment_bytes=1 << 20)
    sink = StoreSink(store, journal.journal_id)
    writer = PersistQueue(sink, journal, tmp_path / "dead.jsonl", RULES)
    raised: list[tuple[float, Alarm]] = []
    w = StoreWatcher(writer, sink.probe, RULES, lambda a: raised.append((time.monotonic(), a)))
    task = asyncio.create_task(w.run())
    try:
        await asyncio.sleep(RULES.check_interval_s * 2)
        locker = await asyncio.to_thread(locked, path)
        t0 = time.monotonic()
        if busy:
            writer.put("alarm", {"kind": "ring_no_answer", "raised_at": 1_800_000_000.0})
        while not raised:
            await asyncio.sleep(0.05)
            assert time.monotonic() - t0 < 6, "no alarm"
        detected = raised[0][0] - t0
        assert raised[0][1].kind == "store_unavailable" and detected < 5.0
        assert w.component()["ok"] is False
        await asyncio.sleep(1.0)
        assert [a.kind for _, a in raised] == ["store_unavailable"]
        locker.execute("ROLLBACK")
        t1 = time.monotonic()
        locker.close()
        while len(raised) < 2:
            await asyncio.sleep(0.05)
            assert time.monotonic() - t1 < 6, "no recovery"
        recovered = raised[1][0] - t1
        assert raised[1][1].kind == "store_recovered" and recovered < 5.0
        assert await asyncio.to_thread(writer.flush, 5)
        alarms = store.read(repo.recent_alarms, since=None, open_only=False, limit=10)
        assert [a.kind for a in alarms] == (["ring_no_answer"] if busy else [])
        print(f"locked ({'writing' if busy else 'idle'}): alarm after {detected:.2f} s, "
              f"recovered {recovered:.2f} s after the lock went")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(writer.close)
        store.close()


def test_watcher_kinds_are_shown_by_the_board() -> None:
    """The board titles an alarm from the language packs ("alarm.<kind>", api/i18n)."""
    from callflow.api.language import load_packs
    for pack in load_packs().values():
        for kind in ("store_unavailable", "store_recovered", "store_journal_full"):
            assert f"alarm.{kind}" in pack, kind
