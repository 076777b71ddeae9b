"""The store writer's CPU per call (issue 20): one call's journal records, as the engine
emits them, through ``apply_batch`` on SQLite, many times; CPU via ``time.process_time``.

A call here is 18 records in 5 bursts (entered; offered; answered; ended with its
release, ACW, four verdicts and an event; wrapped up), about what the end-to-end
profile counted (~17.8 records in ~4-5 transactions). ``--single`` writes every record
as a batch of its own (an idle engine: each record goes in as soon as it is fsync'd);
``--once`` writes each through ``apply_once`` (the path a batch of one took before).

``--compare`` alternates, in one process, rounds of three ways of writing the same
records (figures on a shared box drift; back to back they compare): ``cursor`` (the
prepared statements on the DBAPI cursor, batches of prepared kinds on a bare
connection: what runs), ``session`` (the same statements, every batch in a Session),
``sqlalchemy`` (every prepared statement through SQLAlchemy's ``Connection.execute``,
every batch in a Session: the statements as the writer ran them before, issue 20).

    .venv/bin/python bench/bench_store_writer.py --calls 300 [--single|--once] [--repeat 3]
    .venv/bin/python bench/bench_store_writer.py --compare --calls 100 --repeat 5
    .venv/bin/python bench/bench_store_writer.py --json rows.json   # make bench's rows
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from callflow.store import records, repo
from callflow.store.applied import Pending, apply_batch, apply_once
from callflow.store.db import Store, open_store
from callflow.store.prepared import Executor, Prepared, connection_of

T0 = 1_800_000_000.0
_ids = itertools.count(1)


def call_bursts(n: int, agent: str) -> list[list[tuple[str, dict[str, Any]]]]:
    """The records of call ``n`` (answered by ``agent``), in the bursts the engine
    writes them."""
    uid = f"bench-{n}.1"
    t = T0 + n * 600
    offer = {"agent_id": agent, "started_at": t + 5}
    answered = {**offer, "ended_at": t + 9, "result": "answered"}
    base = {"uniqueid": uid, "direction": "inbound", "caller_number": "+4930123456",
            "did": "800", "queue": "sales"}
    verdicts = [("verdict", {"call_uniqueid": uid, "rule": rule, "key": "", "outcome": "pass",
                             "measured": 4.0, "limit": 20.0, "unit": "s", "agent_id": agent,
                             "queue": "sales", "at": t + 200, "detail": ""})
                for rule in ("STD-006", "STD-008", "STD-009", "STD-110")]
    return [
        [("call", {**base, "entered_at": t, "routed_at": t + 1, "menu": False}),
         ("queue_entered", {"call_uniqueid": uid, "at": t + 1, "queue": "sales"})],
        [("agent_state", {"agent_id": agent, "state": "ringing", "at": t + 5,
                          "call_uniqueid": uid}),
         ("call", {**base, "agent_id": agent, "ring_started_at": t + 5, "offers": [offer]})],
        [("call", {**base, "answered_at": t + 9, "answer_ring": 2, "late": False,
                   "offers": [answered]}),
         ("agent_state", {"agent_id": agent, "state": "on_call", "at": t + 9,
                          "call_uniqueid": uid}),
         ("call_answered", {"call_uniqueid": uid, "at": t + 9, "agent_id": agent})],
        [("call", {**base, "ended_at": t + 200, "outcome": "answered", "hangup_cause": 16,
                   "released_by": "caller", "total_wait_s": 9.0, "offers": [answered]}),
         ("call_release", {"uniqueid": uid, "release_compliant": True,
                           "release_procedure": "caller_first", "released_by": "caller"}),
         ("agent_state", {"agent_id": agent, "state": "acw", "at": t + 200,
                          "call_uniqueid": uid}),
         *verdicts,
         ("call_ended", {"call_uniqueid": uid, "at": t + 200, "cause": 16})],
        [("wrapup", {"call_uniqueid": uid, "agent_id": agent, "disposition": "resolved",
                     "notes": "ok", "by": "agent", "at": t + 230}),
         ("agent_state", {"agent_id": agent, "state": "ready", "at": t + 230}),
         ("acw_ended", {"call_uniqueid": uid, "at": t + 230, "agent_id": agent})],
    ]


def run(store: Store, calls: int, start: int, single: bool, once: bool = False) -> float:
    """CPU seconds per call over ``calls`` calls."""
    cpu = 0.0
    single = single or once
    for n in range(start, start + calls):
        for burst in call_bursts(n, "1001"):
            items = [Pending(f"bench:{next(_ids)}", 1, kind, data) for kind, data in burst]
            batches = [[item] for item in items] if single else [items]
            for batch in batches:
                t0 = time.process_time()
                if once:
                    item = batch[0]
                    apply_once(store, item.id, "bench", 1, item.kind, item.data)
                else:
                    apply_batch(store, "bench", batch)
                cpu += time.process_time() - t0
    return cpu / calls


def _sa_execute(self: Prepared, s: Executor, params: Mapping[str, Any]) -> Any:
    return connection_of(s).execute(self.statement, dict(params))  # type: ignore[call-overload]


def _sa_executemany(self: Prepared, s: Executor, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        connection_of(s).execute(self.statement,  # type: ignore[call-overload]
                                 [dict(r) for r in rows])


def _sa_rows(self: Prepared, s: Executor, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    conn: Connection = connection_of(s)
    return [tuple(r) for r in conn.execute(self.statement, dict(params))]  # type: ignore[call-overload]


@contextmanager
def way(name: str) -> Iterator[None]:
    """Write as ``name`` says (see the module's docstring), then put everything back."""
    saved = (Prepared.execute, Prepared.executemany, Prepared.rows, records.is_prepared)
    try:
        if name in ("session", "sqlalchemy"):
            records.is_prepared = lambda kind: False  # type: ignore[assignment]
        if name == "sqlalchemy":
            Prepared.execute = _sa_execute  # type: ignore[method-assign]
            Prepared.executemany = _sa_executemany  # type: ignore[method-assign]
            Prepared.rows = _sa_rows  # type: ignore[method-assign]
        yield
    finally:
        (Prepared.execute, Prepared.executemany, Prepared.rows,  # type: ignore[method-assign]
         records.is_prepared) = saved


def fresh_store(template: Path, target: Path) -> Store:
    """A copy of the migrated, empty database with its agent (every run starts alike)."""
    for part in target.parent.glob(target.name + "*"):
        part.unlink()
    shutil.copyfile(template, target)
    return open_store(f"sqlite:///{target}", migrate=False)


def measure(template: Path, calls: int, single: bool, once: bool = False) -> float:
    """CPU per call on a fresh copy of the database, after a warm-up."""
    store = fresh_store(template, template.with_name("run.db"))
    try:
        run(store, 20, 0, single, once)  # warm-up: statement caches, pages
        return run(store, calls, 100, single, once)
    finally:
        store.close()


def compare(template: Path, calls: int, repeat: int, single: bool,
            ways: Sequence[str] = ("cursor", "session", "sqlalchemy")) -> dict[str, float]:
    """Rounds of ``ways``, alternated; the median CPU per call of each (printed)."""
    got: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(repeat):
        for name in ways:
            with way(name):
                got[name].append(measure(template, calls, single))
    medians = {name: statistics.median(got[name]) for name in ways}
    base = medians["sqlalchemy"]
    for name in ways:
        med = medians[name]
        print(f"  {name:10s} median {med * 1000:.2f} ms/call ({base / med:.2f}x less than "
              f"sqlalchemy; runs {', '.join(f'{x * 1000:.2f}' for x in got[name])})")
    return medians


def json_rows(template: Path, calls: int, repeat: int) -> list[dict[str, object]]:
    """``make bench``'s rows: the writer as it runs against the same statements through
    SQLAlchemy's execute in a Session (the writer before issue 20's round), in bursts
    and as batches of one (an idle engine)."""
    rows: list[dict[str, object]] = []
    for single, shape in ((False, "5 bursts"), (True, "batches of one")):
        print(f"store writer, 18 records/call in {shape}:")
        med = compare(template, calls, repeat, single, ways=("cursor", "sqlalchemy"))
        ratio = med["cursor"] / med["sqlalchemy"]
        rows.append({"figure": f"store writer CPU per call (18 records in {shape}, SQLite)",
                     "ours": round(med["cursor"] * 1000, 2),
                     "peer": "SQLAlchemy execute in a Session",
                     "peer_value": round(med["sqlalchemy"] * 1000, 2),
                     "ratio": round(ratio, 3), "unit": "ms/call", "goal": "<= 1.0x",
                     "pass": ratio <= 1.0})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--single", action="store_true", help="every record a batch of one")
    ap.add_argument("--once", action="store_true", help="every record through apply_once")
    ap.add_argument("--compare", action="store_true", help="cursor/session/sqlalchemy, alternated")
    ap.add_argument("--json", type=Path, help="write make bench's rows here (cursor vs "
                    "sqlalchemy, bursts and batches of one; --calls 100 unless given)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.db"
        store = open_store(f"sqlite:///{template}")
        store.run(repo.upsert_agent, "1001", name="Agent 1001", extension="agent1001")
        store.close()
        shape = ("apply_once each" if args.once else "batches of one" if args.single
                 else "5 bursts")
        if args.json is not None:
            calls = args.calls if args.calls != 300 else 100
            args.json.write_text(json.dumps(json_rows(template, calls, args.repeat), indent=1))
            return
        if args.compare:
            print(f"store writer, 18 records/call in {shape}, {args.calls} calls x "
                  f"{args.repeat} rounds, alternated, each on a fresh database:")
            compare(template, args.calls, args.repeat, args.single)
            return
        per_call = [measure(template, args.calls, args.single, args.once)
                    for _ in range(args.repeat)]
    print(f"store writer, 18 records/call in {shape}: CPU per call "
          f"median {statistics.median(per_call) * 1000:.2f} ms "
          f"(runs: {', '.join(f'{x * 1000:.2f}' for x in per_call)} ms)")


if __name__ == "__main__":
    main()
