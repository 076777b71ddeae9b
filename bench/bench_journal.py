"""The store journal's cost: what ``put`` costs the loop, and fsync batching.

Every record is appended to the journal (one ``write`` on the loop thread) and fsync'd
by the writer's sync thread before it may go to the database; records written within
``store.fsync_window_ms`` share one fsync. This prints, for several windows:

* ``put`` on the caller's thread (the event loop): median and p99 in microseconds;
* fsyncs per record, and the latency from ``put`` to "may be written" (fsync'd);
* under a burst (records put back to back) and at a paced rate (records spread out,
  as a contact centre produces them: a few hundred a second at most);

then, with a real SQLite store, records per second end to end (journal + database,
exactly-once mark included) against the old path (one transaction per record, no
journal).

    .venv/bin/python bench/bench_journal.py --records 2000 --rate 200
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from callflow.engine.policy import StorePolicy
from callflow.store import records, repo
from callflow.store.applied import StoreSink
from callflow.store.db import open_store
from callflow.store.journal import Journal
from callflow.store.writer import PersistQueue


def call_record(i: int) -> dict[str, Any]:
    """A record shaped like the core's call rows (engine/calls.py ``call_record``)."""
    return {
        "uniqueid": f"1733900000.{i}", "direction": "inbound", "channel": f"PJSIP/trunk-{i:08x}",
        "caller_number": "13800000000", "did": "95500", "queue": "general", "agent_id": "1001",
        "phase": "ended", "entered_at": "2026-12-10T09:00:00.123000+00:00",
        "ring_started_at": "2026-12-10T09:00:02.500000+00:00",
        "answered_at": "2026-12-10T09:00:07.250000+00:00",
        "ended_at": "2026-12-10T09:03:01.000000+00:00", "answer_ring": 1, "total_wait_s": 7.1,
        "late": False, "outcome": "answered", "hangup_cause": 16, "released_by": "caller",
        "ending": "caller_released", "transfer_count": 0, "incomplete_reason": None,
        "greeting": "normal", "repeat_caller": False,
        "offers": [{"agent_id": "1001", "started_at": "2026-12-10T09:00:02.500000+00:00",
                    "ended_at": "2026-12-10T09:00:07.250000+00:00", "result": "answered",
                    "ring_s": 4.75, "left_at": None, "joined": False}],
    }


class TimingSink:
    """Notes when each record may be written (it was fsync'd); writes nothing."""

    def __init__(self) -> None:
        self.ready_at: dict[str, float] = {}

    def applied_among(self, ids: Iterable[str]) -> set[str]:
        return set()

    def apply_once(self, record_id: str, segment: int, kind: str, data: dict[str, Any],
                   before_commit: Callable[[], None]) -> bool:
        self.ready_at[record_id] = time.perf_counter()
        return True

    def mark_applied(self, record_id: str, segment: int) -> None:
        pass

    def forget_below(self, segment: int) -> int:
        return 0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def journal_run(window_ms: float, n: int, rate: float | None) -> dict[str, float]:
    """``n`` records through a journal with a timing sink; ``rate`` None: a burst."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        rules = StorePolicy(fsync_window_ms=window_ms)
        sink = TimingSink()
        journal = Journal(Path(tmp) / "journal", segment_bytes=rules.journal_segment_bytes)
        queue = PersistQueue(sink, journal, Path(tmp) / "dead", rules)
        put_us: list[float] = []
        put_at: dict[str, float] = {}
        gap = 1 / rate if rate else 0.0
        start = time.perf_counter()
        for i in range(n):
            if gap:
                delay = start + i * gap - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.perf_counter()
            queue.put("call", call_record(i))
            t1 = time.perf_counter()
            put_us.append((t1 - t0) * 1e6)
            put_at[f"{journal.generation}.{i + 1}"] = t0
        assert queue.flush(60)
        elapsed = time.perf_counter() - start
        fsyncs = queue.stats.fsyncs
        queue.close()
        ready_ms = [(sink.ready_at[k] - put_at[k]) * 1000 for k in put_at]
        return {"put_med_us": statistics.median(put_us), "put_p99_us": pct(put_us, 99),
                "fsyncs": fsyncs, "per_record": fsyncs / n, "ready_med_ms":
                statistics.median(ready_ms), "ready_p99_ms": pct(ready_ms, 99),
                "records_s": n / elapsed}


def baseline_put(n: int, rate: float | None) -> tuple[float, float]:
    """``put`` of the writer before the journal (a queue.Queue with a consumer thread):
    median and p99 in microseconds, for comparison."""
    items: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def consume() -> None:
        while items.get() is not None:
            pass

    consumer = threading.Thread(target=consume)
    consumer.start()
    gap = 1 / rate if rate else 0.0
    put_us = []
    start = time.perf_counter()
    for i in range(n):
        if gap:
            delay = start + i * gap - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t0 = time.perf_counter()
        items.put(call_record(i))
        put_us.append((time.perf_counter() - t0) * 1e6)
    items.put(None)
    consumer.join()
    return statistics.median(put_us), pct(put_us, 99)


def fsync_cost(n: int = 200) -> float:
    """One fdatasync of a small append, in ms (the disk's price of a group commit)."""
    with tempfile.TemporaryDirectory(prefix="bench-fsync-") as tmp:
        path = Path(tmp) / "f"
        with path.open("ab") as fh:
            times = []
            for _ in range(n):
                fh.write(b"x" * 900 + b"\n")
                fh.flush()
                t0 = time.perf_counter()
                os.fdatasync(fh.fileno())
                times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def store_run(n: int, journal_on: bool) -> float:
    """Records per second into a real SQLite store: through the journal, or the old way."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = open_store(f"sqlite:///{tmp}/cf.db")
        store.run(repo.upsert_agent, "1001", name="Agent 1001", extension="agent1001")
        rules = StorePolicy()
        data = [call_record(i) for i in range(n)]
        t0 = time.perf_counter()
        if journal_on:
            journal = Journal(Path(tmp) / "journal", segment_bytes=rules.journal_segment_bytes)
            queue = PersistQueue(StoreSink(store, journal.journal_id), journal,
                                 Path(tmp) / "dead", rules)
            for d in data:
                queue.put("call", d)
            assert queue.flush(120)
            elapsed = time.perf_counter() - t0
            assert queue.stats.dead_letters == 0
            queue.close()
        else:
            done = threading.Event()

            def old_writer() -> None:
                try:
                    for d in data:
                        records.write(store, "call", d)
                finally:
                    done.set()

            threading.Thread(target=old_writer).start()
            done.wait()
            elapsed = time.perf_counter() - t0
        store.close()
        return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="paced records per second")
    parser.add_argument("--windows", default="0,2,10", help="fsync windows to try, ms")
    parser.add_argument("--store-records", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the rows for make bench here")
    args = parser.parse_args()
    print(f"one fdatasync of a small append: {fsync_cost():.3f} ms (median of 200)")
    header = (f"{'arrivals':<14}{'window':>7}{'put med':>9}{'put p99':>9}{'fsyncs':>8}"
              f"{'/record':>9}{'ready med':>11}{'ready p99':>11}{'rec/s':>9}")
    print(header)
    for label, rate in (("burst", None), (f"{args.rate:g}/s paced", args.rate)):
        n = args.records if rate is None else int(min(args.records, args.rate * 5))
        med, p99 = baseline_put(n, rate)
        print(f"{label:<14}{'none':>7}{med:>7.1f}us{p99:>7.1f}us   (no journal: the old queue)")
        for window in (float(w) for w in args.windows.split(",")):
            r = journal_run(window, n, rate)
            print(f"{label:<14}{window:>5g}ms{r['put_med_us']:>7.1f}us{r['put_p99_us']:>7.1f}us"
                  f"{r['fsyncs']:>8.0f}{r['per_record']:>9.3f}{r['ready_med_ms']:>9.2f}ms"
                  f"{r['ready_p99_ms']:>9.2f}ms{r['records_s']:>9.0f}")
    n = args.store_records
    old = store_run(n, journal_on=False)
    new = store_run(n, journal_on=True)
    print(f"SQLite end to end, {n} call records: old path (no journal) {old:.0f} rec/s; "
          f"journal + exactly-once mark {new:.0f} rec/s ({new / old:.2f}x)")
    if args.json:  # the shared bench table (make bench): the journal's price in throughput
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{
            "figure": f"store: SQLite call records/s, {n} records", "ours": round(new, 1),
            "peer": "no journal (one transaction a record)", "peer_value": round(old, 1),
            "ratio": round(new / old, 3), "unit": "records/s", "goal": ">= 1.0x",
            "pass": new >= old}], indent=1) + "\n")


if __name__ == "__main__":
    main()
