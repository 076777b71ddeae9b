"""Issue 14 on a real Asterisk: a store outage loses nothing, and is seen.

Found in testing: a SQLite store locked for 45 s, then made unwritable for 28 s, left
``/healthz`` at ok with no alarm, and an engine death during the outage lost a finished,
answered call for good. Here, with calls going on:

* the store is (a) locked by another connection holding ``BEGIN EXCLUSIVE`` for 30 s,
  (b) made unwritable for 30 s, (d) on PostgreSQL, refusing connections for 15 s:
  ``store_unavailable`` reaches a board's websocket within 5 s, ``/healthz`` says the
  store is down with what waits and why, and once the store is back
  ``store_recovered`` says how long it was out and every record lands, none twice
  (agent states and alarms, which insert, compared one by one with what the core
  emitted; calls with Asterisk's own times);
* (c) the engine is killed (SIGKILL, a process of its own: ``engine_child.py``) during
  an outage after a call was answered and ended; started again after the store is
  back, it writes the journal's records first: the call is in the store once, with
  Asterisk's times.

Detection and recovery times are printed.
"""

from __future__ import annotations

import contextlib
import os
import select as io_select
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest
from engine_child import child_config
from product import Product, make_roster, make_settings
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from wsclient import EventStream

from callflow.agents.state import AgentState
from callflow.engine.calls import Phase
from callflow.engine.effects import DomainEvent
from callflow.engine.policy import Policy, parse_policy
from callflow.settings import Settings
from callflow.store import repo
from callflow.store.journal import decode_line
from callflow.store.models import AgentState as StateRow
from callflow.store.models import Alarm as AlarmRow
from callflow.store.models import Call
from callflow.store.rows import rows

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

OUTAGE_S = 30.0
PG_OUTAGE_S = 15.0
DETECT_BOUND_S = 5.0  # issue 14: the alarm within 5 s of the first failed write or probe
AGENTS = ["1001", "1002"]
POLICY = parse_policy({"agents": {"acw_limit_s": 3.0}})
CHILD = Path(__file__).resolve().parent / "engine_child.py"


# --- ways to take the store down ----------------------------------------------------------


class Outage(Protocol):
    what: str

    def start(self) -> None: ...

    def end(self) -> None: ...


class SqliteLocked:
    """Another connection holds the write lock (``BEGIN EXCLUSIVE``): a write waits for
    its busy timeout (30 s), then fails with "database is locked"."""

    what = "locked"

    def __init__(self, db: Path) -> None:
        self.db = db
        self.conn: sqlite3.Connection | None = None

    def start(self) -> None:
        self.conn = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


class SqliteUnwritable:
    """The database file and its directory lose their write permission. Root ignores file
    modes, so as root the file and its WAL are also made immutable (``chattr +i``):
    SQLite's writes then fail with "disk I/O error" (measured). The ``-shm`` file is left
    alone: SQLite maps it into memory, and an immutable ``-shm`` kills the process with
    SIGBUS (measured)."""

    what = "unwritable"

    def __init__(self, db: Path) -> None:
        self.db = db
        self.files = [db, Path(f"{db}-wal")]
        self.immutable = os.geteuid() == 0

    def start(self) -> None:
        for path in self.files:
            path.chmod(0o444)
        self.db.parent.chmod(0o555)
        if self.immutable:
            subprocess.run(["chattr", "+i", *map(str, self.files)], check=True)

    def end(self) -> None:
        if self.immutable:
            subprocess.run(["chattr", "-i", *map(str, self.files)], check=False)
        self.db.parent.chmod(0o755)
        for path in self.files:
            path.chmod(0o644)


class PostgresRefusing:
    """The database refuses connections and its open ones are ended (as a restart or a
    network cut would): every write fails at once."""

    what = "postgres refusing connections"

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"),
                                   isolation_level="AUTOCOMMIT")
        self.database = database

    def start(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :db AND pid <> pg_backend_pid()"),
                         {"db": self.database})

    def end(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true'))
        self.admin.dispose()


@contextlib.contextmanager
def lasting(outage: Outage) -> Iterator[Outage]:
    """The outage is always ended, whatever the test does."""
    try:
        yield outage
    finally:
        with contextlib.suppress(Exception):
            outage.end()


# --- what the core emitted, and what the store holds ---------------------------------------


class Emitted:
    """Every store record the core emits from now on, as the store adapter gets it."""

    def __init__(self, product: Product) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        runtime = product.runtime

        def note(event: DomainEvent) -> None:
            self.records.extend(rows(event, runtime.epoch_of))

        product.call(lambda: runtime.on_event(note))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.records if k == kind]


def healthz(settings: Settings) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"http://127.0.0.1:{settings.ports.api}/healthz", timeout=5)
    return response.status_code, response.json()


def stamp(event: dict[str, str]) -> datetime:
    return datetime.fromtimestamp(float(event["Timestamp"]), UTC)


def close_to(a: datetime | None, b: datetime, within_s: float = 0.01) -> bool:
    assert a is not None
    return abs((a - b).total_seconds()) <= within_s


def check_call_times(product: Product, asterisk: PbxHandle, since: float, call_id: str,
                     agent_id: str) -> Call:
    """The call is in the store once (its uniqueid is the key), answered by the agent,
    with Asterisk's own times (docs/call-record.md): the offer from Dial's DialBegin,
    the answer at its Up, the end at the caller's BYE."""
    tap = asterisk.tap
    begin = tap.wait_event("DialBegin", 5, since=since, Uniqueid=call_id)
    answer = tap.wait_event("Newstate", 5, since=since, Uniqueid=begin["DestUniqueid"],
                            ChannelStateDesc="Up")
    bye = tap.wait_event("HangupRequest", 5, since=since, Uniqueid=call_id)
    with product.store.session(readonly=True) as s:
        found = list(s.scalars(select(Call).where(Call.uniqueid == call_id)))
    assert len(found) == 1
    call = found[0]
    assert (call.outcome, call.agent_id, call.released_by) == ("answered", agent_id, "caller")
    assert close_to(call.ring_started_at, stamp(begin))
    assert close_to(call.answered_at, stamp(answer))
    assert close_to(call.ended_at, stamp(bye))
    offers = product.store.read(repo.offers_for_call, call_id)
    assert [(o.agent_id, o.result) for o in offers] == [(agent_id, "answered")]
    return call


def check_every_record_landed_once(product: Product, emitted: Emitted) -> None:
    """Insert-type records, one by one: each agent state and each alarm the core emitted
    is in the store exactly once, in order; every call record's last word is there."""
    writer = product.service.writer
    assert writer is not None
    assert writer.stats.pending == 0 and writer.stats.dead_letters == 0
    assert writer.stats.written == writer.stats.put, writer.stats
    for agent_id in AGENTS:
        want = [(d["state"], d["at"]) for d in emitted.of("agent_state")
                if d["agent_id"] == agent_id]
        got = [(r.state, r.started_at.timestamp()) for r in product.store.read(
            repo.agent_state_log, agent_id, since=datetime(2000, 1, 1, tzinfo=UTC))]
        assert [s for s, _ in got] == [s for s, _ in want], agent_id
        assert all(abs(g - w) < 0.005 for (_, g), (_, w) in zip(got, want, strict=True))
    want_alarms = sorted((d["kind"], d["raised_at"]) for d in emitted.of("alarm"))
    got_alarms = sorted((a.kind, a.raised_at.timestamp()) for a in product.store.read(
        repo.recent_alarms, limit=10_000))
    assert [k for k, _ in got_alarms] == [k for k, _ in want_alarms]
    assert all(abs(g - w) < 0.001 for (_, g), (_, w) in zip(got_alarms, want_alarms,
                                                              strict=True))
    for data in {d["uniqueid"]: d for d in emitted.of("call")}.values():
        call = product.store.read(repo.get_call, data["uniqueid"])
        assert call is not None and call.outcome == data["outcome"]
        assert call.ended_at == (datetime.fromisoformat(data["ended_at"])
                                 if data["ended_at"] else None)


def journalled(settings: Settings, record_kind: str, **match: Any) -> list[dict[str, Any]]:
    """The records of that kind in the engine's journal files now (what a death leaves)."""
    journal = settings.state_dir / "store-journal"
    found = []
    for path in sorted(journal.glob("seg-*.journal")):
        for line in path.read_bytes().splitlines():
            decoded = decode_line(line)
            if decoded is not None and decoded[1] == record_kind and all(
                    decoded[2].get(k) == v for k, v in match.items()):
                found.append(decoded[2])
    return found


# --- (a), (b), (d): an outage with calls going on -------------------------------------------


def ended(product: Product, call_id: str) -> bool:
    call = product.runtime.calls.get(call_id)
    return call is not None and call.phase is Phase.ENDED


def outage_with_calls(asterisk: PbxHandle, sipp: SippControl, product: Product,
                      outage: Outage, outage_s: float) -> dict[str, float]:
    """A call is on when the store goes down; it ends and a second call is answered and
    ends during the outage; then the store comes back. Returns the figures measured."""
    tap = asterisk.tap
    emitted = Emitted(product)
    board = EventStream(product.settings.ports.api, product.settings.api_token, "alarms")
    phones = [sipp.softphone(a, "uas_answer.xml", ring_ms=500, wait=False) for a in AGENTS]
    sipp.wait_ready(*phones)
    for agent_id in AGENTS:
        product.call(lambda a=agent_id: product.runtime.log_in(a))
    t0 = tap.mark()
    first = sipp.caller("100", "uac_call.xml", talk_ms=14000, caller_id="13700000101")
    call_a = tap.wait_event("DialBegin", 10, t0)["Uniqueid"]
    product.wait_for(lambda: product.runtime.agents["1001"].state is AgentState.ON_CALL, 15,
                     "agent 1001 on the first call")

    def kind_is(kind: str) -> Any:
        return lambda f: f.get("payload", {}).get("kind") == kind

    with lasting(outage):
        down_at = time.monotonic()
        outage.start()
        alarm = board.wait(kind_is("store_unavailable"), DETECT_BOUND_S + 2, "store_unavailable")
        detected = alarm["t"] - down_at
        code, health = healthz(product.settings)
        assert code == 503 and health["status"] == "degraded" and health["down"] == ["store"]
        part = health["components"]["store"]
        assert part["ok"] is False and part["state"] == "unavailable" and part["last_error"]
        assert "store unavailable" in part["detail"]

        t1 = tap.mark()
        second = sipp.caller("100", "uac_call.xml", talk_ms=6000, caller_id="13700000102")
        call_b = tap.wait_event(lambda e: e.get("Event") == "DialBegin"
                                and e["Uniqueid"] != call_a, 15, t1)["Uniqueid"]
        assert first.wait(60) == 0, first.diagnostics()
        assert second.wait(60) == 0, second.diagnostics()
        product.wait_for(lambda: ended(product, call_a) and ended(product, call_b), 10,
                         "both calls to end in the core")
        code, health = healthz(product.settings)
        part = health["components"]["store"]
        assert code == 503 and part["journal_records"] > 0 and part["down_for_s"] > 0
        waiting = part["journal_records"]
        assert journalled(product.settings, "call", uniqueid=call_b, phase="ended")
        time.sleep(max(0.0, down_at + outage_s - time.monotonic()))
        up_at = time.monotonic()
        outage.end()
    back = board.wait(kind_is("store_recovered"), 15, "store_recovered")
    recovery = back["t"] - up_at
    writer = product.service.writer
    assert writer is not None
    while writer.stats.pending:
        assert time.monotonic() - up_at < 30, "the journal did not drain"
        time.sleep(0.02)
    landed = time.monotonic() - up_at
    product.flush()
    unavailable = [f for f in board.frames if kind_is("store_unavailable")(f)]
    assert len(unavailable) == 1  # one alarm per outage, not one per retry
    assert detected < DETECT_BOUND_S, detected
    outage_len = back["payload"]["detail"]["outage_s"]
    assert outage_len == pytest.approx(outage_s, abs=DETECT_BOUND_S + 1)
    code, health = healthz(product.settings)
    assert code == 200 and health["components"]["store"]["last_outage_s"] == outage_len
    check_call_times(product, asterisk, t0, call_a, "1001")
    check_call_times(product, asterisk, t1, call_b, "1002")
    check_every_record_landed_once(product, emitted)
    board.close()
    figures = {"detected_s": detected, "recovered_s": recovery, "drained_s": landed,
               "outage_s": outage_len, "records_waiting": waiting,
               "retries": writer.stats.failures}
    print(f"\n{outage.what}: store_unavailable on the board {detected:.2f} s after the outage "
          f"began; store_recovered {recovery:.2f} s after it ended (outage_s {outage_len}); "
          f"{waiting} journalled records all in {landed:.2f} s; {writer.stats.failures} "
          "failed attempts, no duplicate")
    return figures


def start_product(settings: Settings, asterisk: PbxHandle, policy: Policy = POLICY
                  ) -> Product:
    product = Product(settings, policy, make_roster(AGENTS, asterisk.agent_port))
    product.start()
    return product


@pytest.fixture
def settings(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Settings:
    """The database file in a directory of its own (the unwritable case takes its mode)."""
    (tmp_path / "db").mkdir()
    return replace(make_settings(tmp_path, asterisk, asterisk_root),
                   database_url=f"sqlite:///{tmp_path / 'db' / 'callflow.db'}")


def db_path(settings: Settings) -> Path:
    return Path(settings.database_url.removeprefix("sqlite:///"))


@pytest.mark.parametrize("kind", ["locked", "unwritable"])
def test_a_sqlite_outage_with_calls_going_on_is_seen_within_5s_and_loses_nothing(
        asterisk: PbxHandle, sipp: SippControl, settings: Settings, kind: str) -> None:
    product = start_product(settings, asterisk)
    try:
        db = db_path(settings)
        outage: Outage = SqliteLocked(db) if kind == "locked" else SqliteUnwritable(db)
        outage_with_calls(asterisk, sipp, product, outage, OUTAGE_S)
    finally:
        product.stop()


@pytest.mark.pg
def test_a_postgres_outage_with_calls_going_on_is_seen_and_loses_nothing(
        asterisk: PbxHandle, sipp: SippControl, settings: Settings, postgres_url: str,
        fresh_postgres_url: str) -> None:
    pg = replace(settings, database_url=fresh_postgres_url)
    product = start_product(pg, asterisk)
    try:
        database = make_url(fresh_postgres_url).database
        assert database is not None
        outage_with_calls(asterisk, sipp, product, PostgresRefusing(postgres_url, database),
                          PG_OUTAGE_S)
    finally:
        product.stop()


# --- (c): the engine dies during the outage ----------------------------------------------------


def test_an_engine_killed_during_an_outage_loses_no_finished_call(
        asterisk: PbxHandle, sipp: SippControl, settings: Settings, tmp_path: Path) -> None:
    tap = asterisk.tap
    roster = make_roster(AGENTS, asterisk.agent_port)
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    log = (tmp_path / "engine-child.log").open("w")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), child_config(settings, roster, ["1001"],
                                                  {"agents": {"acw_limit_s": 3.0}})],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=CHILD.parent)
    try:
        assert child.stdout is not None
        ready, _, _ = io_select.select([child.stdout], [], [], 60)
        assert ready and child.stdout.readline().strip() == "READY", (
            tmp_path / "engine-child.log").read_text()[-3000:]
        db = db_path(settings)
        with lasting(SqliteLocked(db)) as outage:
            down_at = time.monotonic()
            outage.start()
            t0 = tap.mark()
            caller = sipp.caller("100", "uac_call.xml", talk_ms=4000, caller_id="13700000103")
            call_id = tap.wait_event("DialBegin", 10, t0)["Uniqueid"]
            code, health = 0, {}
            while code != 503:
                assert time.monotonic() - down_at < DETECT_BOUND_S + 1, health
                code, health = healthz(settings)
                time.sleep(0.1)
            detected = time.monotonic() - down_at
            assert health["down"] == ["store"]
            assert caller.wait(60) == 0, caller.diagnostics()
            deadline = time.monotonic() + 10
            while not (journalled(settings, "call", uniqueid=call_id, phase="ended")
                       and journalled(settings, "agent_state", agent_id="1001", state="acw")):
                assert time.monotonic() < deadline, (
                    "the ended call or the agent's after-call work never reached the journal")
                time.sleep(0.1)
            assert journalled(settings, "alarm", kind="store_unavailable")
            child.send_signal(signal.SIGKILL)  # the engine dies; its journal stays
            assert child.wait(10) == -signal.SIGKILL
            left = len(journalled(settings, "call")) + len(journalled(settings, "agent_state"))
        # the store is back (the lock went); a new engine starts on the same state directory
        started = time.monotonic()
        product = start_product(settings, asterisk)
        took = time.monotonic() - started
        try:
            writer = product.service.writer
            assert writer is not None
            assert writer.stats.replayed > 0
            # the new engine writes its own records from its first second: drained, not zero
            product.wait_for(lambda: writer.stats.pending == 0, 5, "the writer to drain")
            check_call_times(product, asterisk, t0, call_id, "1001")
            with product.store.session(readonly=True) as s:
                states = [(r.state, r.started_at) for r in s.scalars(
                    select(StateRow).where(StateRow.agent_id == "1001")
                    .order_by(StateRow.started_at, StateRow.id))]
                assert len(states) == len(set(states))  # no state written twice
                assert ("on_call" in [s for s, _ in states]) and ("acw" in [s for s, _ in states])
                alarms = s.scalar(select(func.count()).select_from(AlarmRow).where(
                    AlarmRow.kind == "store_unavailable"))
                assert alarms == 1
            print(f"\nkilled mid-outage: store_unavailable in /healthz {detected:.2f} s after "
                  f"the lock; {left} call/agent records in the journal at the death; the new "
                  f"engine wrote {writer.stats.replayed} journalled records before starting "
                  f"its features (start took {took:.2f} s)")
        finally:
            product.stop()
        assert not list((settings.state_dir / "store-journal").glob("seg-*.journal"))
        assert stat.S_IMODE((settings.state_dir / "store-journal").stat().st_mode) == 0o700
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
        log.close()
