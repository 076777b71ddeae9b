"""The store writer's CPU per call (issue 20): one call's journal records, as the engine
emits them, through ``apply_batch`` on SQLite, many times; CPU via ``time.process_time``.

A call here is 18 records in 5 bursts (entered; offered; answered; ended with its
release, ACW, four verdicts and an event; wrapped up), about what the end-to-end
profile counted (~17.8 records in ~4-5 transactions). ``--single`` writes every record
as a batch of its own (an idle engine: each record goes in as soon as it is fsync'd);
``--once`` writes each through ``apply_once`` (the path a batch of one took before).

    .venv/bin/python bench/bench_store_writer.py --calls 300 [--single|--once] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from callflow.store import repo
from callflow.store.applied import Pending, apply_batch, apply_once
from callflow.store.db import Store, open_store

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--single", action="store_true", help="every record a batch of one")
    ap.add_argument("--once", action="store_true", help="every record through apply_once")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.run(repo.upsert_agent, "1001", name="Agent 1001", extension="agent1001")
        run(store, 20, 0, args.single, args.once)  # warm-up: statement caches, pages
        per_call = [run(store, args.calls, 100 + i * args.calls, args.single, args.once)
                    for i in range(args.repeat)]
        store.close()
    shape = ("apply_once each" if args.once else "batches of one" if args.single
             else "5 bursts")
    print(f"store writer, 18 records/call in {shape}: CPU per call "
          f"median {statistics.median(per_call) * 1000:.2f} ms "
          f"(runs: {', '.join(f'{x * 1000:.2f}' for x in per_call)} ms)")


if __name__ == "__main__":
    main()
