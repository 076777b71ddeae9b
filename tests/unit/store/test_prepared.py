"""The writer's prepared statements (store/prepared.py) write what SQLAlchemy writes.

Differential: the same random journal records (hostile ones included: naive and
zoned times, unknown agents, time running back, unfinished offers, odd text and JSON)
go through ``apply_batch`` twice into the same empty database, once on the DBAPI
cursor (the fast path; a batch of prepared kinds on a bare connection) and once with
every prepared statement run by SQLAlchemy's ``Connection.execute`` and every batch in
a Session (the strict path: the writer as it was); every row of every table must be the same
bytes (SQLite: the stored values and their storage classes; PostgreSQL: each column as
text), and every refused batch refused with the same error. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from callflow.errors import StoreError, StoreUnavailable
from callflow.store import records, repo
from callflow.store.applied import Pending, apply_batch, apply_once
from callflow.store.db import Store
from callflow.store.models import Base
from callflow.store.prepared import Prepared

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # a DST change in Europe that night
AGENTS = ("1001", "1002")
#: bookkeeping columns stamped with the wall clock: compared by their format only
CLOCK_COLUMNS = {"created_at", "updated_at", "applied_at"}
TEXTS = ["", "ok", "O'Brien", 'say "hi"', "%s", "%(v_at)s", "?", "; DROP TABLE calls; --",
         "Zoë ✓ 電話", "line\nbreak", "tab\t", "\\", "x" * 200]


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS)


def _time(rng: random.Random, t: datetime, hostile: bool) -> Any:
    """A time as the core writes it: epoch, ISO with a zone, rarely naive (refused)."""
    shape = rng.random()
    if hostile and shape < 0.005:
        return t.replace(tzinfo=None).isoformat()  # naive: the store refuses it
    if shape < 0.5:
        return t.timestamp() + rng.choice([0, 0.5, 1e-6, 0.123456789])
    zone = timezone(timedelta(minutes=rng.choice([0, 60, 120, -330, 345])))
    return t.astimezone(zone).isoformat()


def _json(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth < 2 and pick < 0.25:
        return {_text(rng) or "k": _json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 2 and pick < 0.4:
        return [_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([None, True, False, 0, -1, 2**53 + 1, 1.5, -0.0, 1e300,
                       _text(rng), _text(rng)])


def _offers(rng: random.Random, t: datetime) -> list[dict[str, Any]]:
    out = []
    for i in range(rng.randint(0, 3)):
        start = t + timedelta(seconds=5 * i + rng.randint(0, 3))
        offer: dict[str, Any] = {"agent_id": rng.choice(AGENTS),
                                 "started_at": _time(rng, start, True)}
        if rng.random() < 0.6:
            offer["ended_at"] = _time(rng, start + timedelta(seconds=rng.randint(0, 20)),
                                      True)
            if rng.random() < 0.95:  # else a finished offer without result: refused
                offer["result"] = rng.choice(["answered", "no_answer", "declined"])
        if rng.random() < 0.2:
            offer["left_at"] = _time(rng, start + timedelta(seconds=30), True)
        out.append(offer)
    return out


def _call(rng: random.Random, uid: str, t: datetime) -> dict[str, Any]:
    data: dict[str, Any] = {"uniqueid": uid}
    if rng.random() < 0.97:  # else no direction: a new row refuses it (NOT NULL)
        data["direction"] = rng.choice(["inbound", "outbound"])
    choices: dict[str, Any] = {
        "caller_number": lambda: rng.choice([None, "+4930123", _text(rng)[:64]]),
        "did": lambda: "800", "queue": lambda: rng.choice(["sales", None]),
        "agent_id": lambda: rng.choice([*AGENTS, None]),
        "entered_at": lambda: _time(rng, t, True),
        "routed_at": lambda: _time(rng, t + timedelta(seconds=1), True),
        "menu": lambda: rng.choice([True, False]),
        "ring_started_at": lambda: _time(rng, t + timedelta(seconds=5), True),
        "answered_at": lambda: rng.choice([None, _time(rng, t + timedelta(seconds=9), True)]),
        "ended_at": lambda: _time(rng, t + timedelta(seconds=200), True),
        "answer_ring": lambda: rng.choice([None, 0, 3]),
        "total_wait_s": lambda: rng.choice([None, 0.0, 9.25, 1 / 3]),
        "late": lambda: rng.choice([True, False]),
        "outcome": lambda: rng.choice(["answered", "abandoned", None]),
        "hangup_cause": lambda: rng.choice([16, 17, None]),
        "released_by": lambda: rng.choice(["caller", "agent", "bogus", None]),
        "greeting": lambda: rng.choice(["normal", "apology", None, "full"]),  # full: refused
        "transfer_count": lambda: rng.randint(0, 2),
        "incomplete_reason": lambda: rng.choice([None, _text(rng)[:200]]),
    }
    for key in rng.sample(sorted(choices), rng.randint(0, len(choices))):
        data[key] = choices[key]()
    if rng.random() < 0.6:
        data["offers"] = _offers(rng, t)
    return data


def _record(rng: random.Random, uid: str, t: datetime, clock: dict[str, datetime]
            ) -> tuple[str, dict[str, Any]]:
    kind = rng.choice(["call", "call", "call", "agent_state", "agent_state", "verdict",
                       "verdict", "event", "wrapup", "wrapup_missing", "call_release",
                       "call_fallback_served", "alarm"])
    if kind == "alarm":  # an ORM writer: its batch goes through a Session
        return kind, {"kind": "ring_no_answer", "std": "STD-008", "detail": _json(rng),
                      "raised_at": _time(rng, t, True)}
    if kind == "call":
        return kind, _call(rng, uid, t)
    if kind == "agent_state":
        agent = rng.choice([*AGENTS, "9999"]) if rng.random() < 0.05 else rng.choice(AGENTS)
        step = timedelta(seconds=rng.choice([-3, 0, 1, 7]))  # -3: time runs back: refused
        at = clock[agent] = clock.get(agent, t) + step
        data: dict[str, Any] = {"agent_id": agent, "at": _time(rng, at, True),
                                "state": rng.choice(["ready", "ringing", "on_call", "acw"])}
        for key, value in (("reason", _text(rng)[:64]), ("call_uniqueid", uid),
                           ("acw_extended", rng.choice([True, False, None, 1]))):
            if rng.random() < 0.5:
                data[key] = value
        return kind, data
    if kind == "verdict":
        return kind, {"call_uniqueid": uid, "rule": rng.choice(["STD-006", "STD-008"]),
                      "key": rng.choice(["", "1", "2"]), "outcome": rng.choice(["pass", "fail"]),
                      "measured": rng.choice([None, 4.0, 1e-9]), "limit": rng.choice([None, 20]),
                      "unit": "s", "agent_id": rng.choice([*AGENTS, None]),
                      "queue": _text(rng)[:64],
                      "at": rng.choice([t.timestamp() + 0.25, t.timestamp(), 1e9]),
                      "detail": _text(rng)}
    if kind == "event":
        return rng.choice(["call_answered", "queue_entered", "x" * 48]), {
            "call_uniqueid": rng.choice([uid, None]), "at": _time(rng, t, True),
            **{_text(rng) or "k": _json(rng) for _ in range(rng.randint(0, 4))}}
    if kind == "wrapup":
        return kind, {"call_uniqueid": uid, "agent_id": rng.choice(AGENTS),
                      "disposition": rng.choice(["resolved", "callback"]),
                      "notes": _text(rng), "by": rng.choice(["agent", ""]),
                      "at": _time(rng, t + timedelta(seconds=230), True)}
    if kind == "wrapup_missing":
        return kind, {"call_uniqueid": uid, "agent_id": rng.choice(AGENTS),
                      "at": _time(rng, t + timedelta(seconds=240), True)}
    if kind == "call_release":
        data = {"uniqueid": uid, "release_compliant": rng.choice([True, False]),
                "release_procedure": rng.choice(["caller_first", "agent_closing"])}
        if rng.random() < 0.5:
            data["closing_at"] = _time(rng, t + timedelta(seconds=190), True)
        if rng.random() < 0.3:
            data["outcome"] = rng.choice(["silent", "nuisance"])
        if rng.random() < 0.5:
            data["released_by"] = rng.choice(["caller", "agent", "system", "nobody"])
        return kind, data
    return kind, {"uniqueid": uid}


def journal(seed: int, calls: int) -> list[list[Pending]]:
    """Random records of ``calls`` calls in random bursts, as the writer batches them."""
    rng = random.Random(seed)
    clock: dict[str, datetime] = {}
    records: list[Pending] = []
    for n in range(calls):
        uid = f"{seed}-{n}.{rng.randint(1, 9)}"
        t = T0 + timedelta(minutes=7 * n)
        for _ in range(rng.randint(3, 12)):
            kind, data = _record(rng, uid, t, clock)
            data = json.loads(json.dumps(data))  # as the journal gives it back
            records.append(Pending(f"r{len(records)}", 1 + len(records) // 40, kind, data))
        if rng.random() < 0.1:  # a replayed record: skipped, nothing written twice
            records.append(rng.choice(records))
    bursts: list[list[Pending]] = []
    while records:
        size = rng.choice([1, 1, 2, 3, 5, 8])
        bursts.append(records[:size])
        records = records[size:]
    return bursts


def _unclocked(message: str) -> str:
    """PostgreSQL's refusals show the failing row, wall-clock stamps included."""
    return re.sub(r"20\d\d-(?!03-29)\d\d-\d\d \d\d:\d\d:[\d.]+\+00", "<clock>", message)


def apply_all(store: Store, bursts: Sequence[Sequence[Pending]]) -> list[Any]:
    """Each burst as the writer does: the batch, and if refused, one record at a time."""
    outcome: list[Any] = []
    for batch in bursts:
        try:
            outcome.append(apply_batch(store, "j1", batch))
            continue
        except Exception as exc:  # the writer's rule: any error refuses the batch
            outcome.append(("refused", type(exc).__name__, _unclocked(str(exc))))
        for item in batch:
            try:
                outcome.append(apply_once(store, item.id, "j1", item.segment, item.kind,
                                          item.data))
            except Exception as exc:
                outcome.append(("dead", type(exc).__name__, _unclocked(str(exc))))
    return outcome


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table as stored: SQLite's values with their storage classes,
    PostgreSQL's columns as text; wall-clock stamps by their format only."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            names = [c.name for c in table.columns]
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            if store.dialect == "sqlite":
                cols = ", ".join(f'"{n}", typeof("{n}")' for n in names)
            else:
                cols = ", ".join(f'"{n}"::text' for n in names)
            rows = conn.exec_driver_sql(
                f'SELECT {cols} FROM "{table.name}" ORDER BY {order}').all()
            width = 2 if store.dialect == "sqlite" else 1
            out[table.name] = [tuple(_mask(store.dialect, names[i // width], v)
                                     for i, v in enumerate(row)) for row in rows]
    return out


def _mask(dialect: str, column: str, value: Any) -> Any:
    """A wall-clock stamp's shape (PostgreSQL's text drops trailing zeros of the
    fraction, so there only the shape without the fraction)."""
    if column in CLOCK_COLUMNS and isinstance(value, str):
        if dialect == "postgresql":
            value = re.sub(r"\.\d+", "", value)
        return re.sub(r"\d", "9", value)
    return value


def empty(store: Store) -> None:
    """Back to an empty database with the agents, ids starting again at 1."""
    tables = [t.name for t in Base.metadata.sorted_tables]
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            for name in reversed(tables):
                conn.exec_driver_sql(f'DELETE FROM "{name}"')
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    for agent in AGENTS:
        store.run(repo.upsert_agent, agent, name=f"Agent {agent}", extension=f"a{agent}")


def _conn(s: Session | Connection) -> Connection:
    return s.connection() if isinstance(s, Session) else s


def _sa_execute(self: Prepared, s: Session | Connection, params: Mapping[str, Any]) -> Any:
    return _conn(s).execute(self.statement, dict(params))  # type: ignore[call-overload]


def _sa_executemany(self: Prepared, s: Session | Connection,
                    rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        _conn(s).execute(self.statement, [dict(r) for r in rows])  # type: ignore[call-overload]


def _sa_rows(self: Prepared, s: Session | Connection, params: Mapping[str, Any]
             ) -> list[tuple[Any, ...]]:
    result = _conn(s).execute(self.statement, dict(params))  # type: ignore[call-overload]
    return [tuple(r) for r in result]


def strict_path(patch: pytest.MonkeyPatch) -> None:
    """Every prepared statement run by SQLAlchemy's ``Connection.execute`` instead, and
    every batch in a Session (no batch on a bare connection): the writer as it was."""
    patch.setattr(records, "is_prepared", lambda kind: False)
    patch.setattr(Prepared, "execute", _sa_execute)
    patch.setattr(Prepared, "executemany", _sa_executemany)
    patch.setattr(Prepared, "rows", _sa_rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_cursor_path_writes_the_bytes_sqlalchemy_writes(store: Store, seed: int) -> None:
    bursts = journal(seed, 40)
    empty(store)
    fast_outcome = apply_all(store, bursts)
    fast = dump(store)
    empty(store)
    with pytest.MonkeyPatch.context() as patch:
        strict_path(patch)
        strict_outcome = apply_all(store, bursts)
    assert fast_outcome == strict_outcome
    assert dump(store) == fast
    # the records did write rows, and some were refused (the test covers both)
    assert len(fast["calls"]) > 10 and len(fast["call_events"]) > 10
    assert len(fast["agent_states"]) > 5 and len(fast["call_verdicts"]) > 5
    assert any(isinstance(o, tuple) and o[0] == "dead" for o in fast_outcome)
    in_session = [any(not records.is_prepared(i.kind) for i in b) for b in bursts]
    assert any(in_session) and not all(in_session)  # both ways of writing a batch
    assert sum(o is True or (isinstance(o, list) and all(o)) for o in fast_outcome) > 20
    assert any(o is False or (isinstance(o, list) and False in o)  # a replay skipped
               for o in fast_outcome)


def test_a_refused_value_leaves_as_sqlalchemy_would(store: Store) -> None:
    empty(store)
    naive = [Pending("n1", 1, "agent_state", {"agent_id": "1001", "state": "ready",
                                                "at": "2026-01-05T09:00:00"})]
    unknown = [Pending("u1", 1, "agent_state", {"agent_id": "9999", "state": "ready",
                                                  "at": 1_800_000_000.0})]
    fast = []
    for batch in (naive, unknown):
        with pytest.raises(StoreError) as caught:
            apply_batch(store, "j1", batch)
        fast.append(str(caught.value))
    assert "naive datetime" in fast[0]
    with pytest.MonkeyPatch.context() as patch:
        strict_path(patch)
        for batch, message in zip((naive, unknown), fast, strict=True):
            with pytest.raises(StoreError) as caught:
                apply_batch(store, "j1", batch)
            assert str(caught.value) == message
    assert dump(store)["agent_states"] == [] and dump(store)["journal_applied"] == []


def test_a_statement_is_compiled_once_per_dialect(store: Store) -> None:
    empty(store)
    batch = [Pending("c1", 1, "call", {"uniqueid": "c1", "direction": "inbound"})]
    apply_batch(store, "j1", batch)
    from callflow.store.call_rows import _call_update
    prepared = _call_update(("direction",))
    compiled = prepared.compiled(store.engine.dialect)
    apply_batch(store, "j1", [Pending("c2", 1, "call", {"uniqueid": "c1",
                                                          "direction": "outbound"})])
    assert prepared.compiled(store.engine.dialect) is compiled


def test_sqlite_stores_times_as_sqlalchemy_does(store: Store) -> None:
    if store.dialect != "sqlite":
        pytest.skip("SQLite's storage format")
    empty(store)
    apply_batch(store, "j1", [Pending("c1", 1, "call", {
        "uniqueid": "c1", "direction": "inbound", "menu": True,
        "entered_at": "2026-03-29T03:30:00.5+02:00"})])
    path = store.engine.url.database
    assert path is not None
    with sqlite3.connect(path) as raw:
        row = raw.execute("SELECT entered_at, menu FROM calls").fetchone()
    assert row == ("2026-03-29 01:30:00.500000", 1)


def test_a_driver_error_leaves_as_it_does_through_sqlalchemy(store: Store) -> None:
    """A statement the database cannot run (its table is gone) fails the same way on
    both paths: the same class of StoreError (unavailable or refused), the same words."""
    empty(store)
    batch = [Pending("e1", 1, "queue_entered", {"at": 1_800_000_000.0, "queue": "q"})]
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE call_events RENAME TO call_events_away")
    try:
        with pytest.raises(StoreError) as fast:
            apply_batch(store, "j1", batch)
        with pytest.MonkeyPatch.context() as patch, pytest.raises(StoreError) as strict:
            strict_path(patch)
            apply_batch(store, "j1", batch)
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE call_events_away RENAME TO call_events")
    assert type(fast.value) is type(strict.value)
    assert str(fast.value) == str(strict.value)
    assert "call_events" in str(fast.value)
    assert apply_batch(store, "j1", batch) == [True]


def test_a_lost_connection_is_unavailable_and_the_next_write_goes_in(store: Store) -> None:
    """PostgreSQL: the server ends the writer's connection mid-transaction; the write
    fails as unavailable (the writer retries it) and the pool gives a new connection."""
    if store.dialect != "postgresql":
        pytest.skip("a server-side disconnect")
    empty(store)
    with pytest.raises(StoreUnavailable), store.session() as s:
        pid = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with store.engine.begin() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
        repo.append_event(s, "queue_entered", T0, {"queue": "q"})
    batch = [Pending("e2", 1, "queue_entered", {"at": 1_800_000_000.0, "queue": "q"})]
    assert apply_batch(store, "j1", batch) == [True]
    assert len(dump(store)["call_events"]) == 1
