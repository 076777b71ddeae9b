"""Engine timers: p99 lateness with 300 concurrent calls, ours vs a bare ``call_later`` loop.

Each of ``--calls`` concurrent calls keeps the timers a live call has: a ring timer
(every 5 s, one ring at the ``cn`` cadence), a queue announcement (every 20 s), a hold
reminder (every 30 s) and an after-call-work end (every 10 s), each first due at a
random offset, so fires are spread like real traffic, not in lock step.

- ours: the product's timer path: ``Runtime.execute([StartTimer])`` arms the loop timer,
  ``Runtime._timer_fired`` routes it to its owner (``own_timers``), and the owner does
  what an engine timer does: it executes effects, a board message through
  ``edge_adapters`` into the real ``EventHub`` (with ``--subscribers`` readers draining
  it, as websocket senders do), a record for the journal, and the next timer. The
  service's GC set-up (``callflow.gc_tuning``) is applied, as ``callflow run`` does.
- bare asyncio: ``loop.call_at`` with the same schedule; the callback re-arms, no more.

Lateness = the loop time the callback ran at minus the time it was due. Each runs in its
own process (a fresh interpreter, one loop), ``--rounds`` alternating rounds; figures
are medians of each round's p99. Goal: ours < 50 ms.

    .venv/bin/python bench/bench_timers.py [--calls 300] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import statistics
from pathlib import Path
from typing import Any

#: (kind, period s): the timers a call in progress keeps
SCHEDULE = (("ring", 5.0), ("announce", 20.0), ("hold_reminder", 30.0), ("acw", 10.0))
GOAL_MS = 50.0


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000 if ordered else float("nan")


async def _bare(calls: int, duration: float, seed: int) -> list[float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    late: list[float] = []
    end = loop.time() + duration

    def fire(due: float, period: float) -> None:
        late.append(loop.time() - due)
        if due + period < end:
            loop.call_at(due + period, fire, due + period, period)

    start = loop.time()
    for _ in range(calls):
        for _kind, period in SCHEDULE:
            due = start + rng.uniform(0, period)
            loop.call_at(due, fire, due, period)
    await asyncio.sleep(duration + 0.5)
    return late


async def _ours(calls: int, duration: float, seed: int, subscribers: int) -> list[float]:
    from callflow.agents.roster import Roster, RosterAgent
    from callflow.engine.clock import RealClock
    from callflow.engine.effects import Persist, Publish, StartTimer
    from callflow.engine.policy import Policy
    from callflow.gc_tuning import tune_after_startup
    from callflow.runtime.core import Runtime
    from callflow.service import edge_adapters
    from callflow.stream.hub import EventHub

    clock = RealClock()
    hub = EventHub()
    journal: list[tuple[str, dict[str, Any]]] = []

    def persist(kind: str, data: dict[str, Any]) -> None:
        journal.append((kind, data))
        if len(journal) > 10_000:
            journal.clear()

    roster = Roster(tuple(RosterAgent(str(1000 + i), f"Agent {i}", f"agent{1000 + i}")
                          for i in range(calls)))
    runtime = Runtime(Policy.defaults(), clock, roster,
                      edge_adapters(clock, persist=persist, publish=hub.publish))
    late: list[float] = []
    due_at: dict[str, tuple[float, float]] = {}

    def fired(key: str) -> None:
        now = clock.now()
        due, period = due_at.pop(key)
        late.append(now - due)
        _, call, kind = key.split(":")
        effects: list[Any] = [
            Publish("board", {"type": "timer", "call_id": call, "kind": kind, "due": due}),
            Persist("timer", {"call_id": call, "kind": kind, "at": now})]
        if due + period < end:
            due_at[key] = (due + period, period)
            effects.append(StartTimer(key, due + period))
        runtime.execute(effects)

    runtime.own_timers("bench", fired)

    async def drain() -> None:
        async for _ in hub.subscribe({"board"}):
            pass

    readers = [asyncio.create_task(drain()) for _ in range(subscribers)]
    tune_after_startup()
    rng = random.Random(seed)
    start = clock.now()
    end = start + duration  # read by ``fired`` (bound late): the same window as the bare loop
    first = []
    for n in range(calls):
        for kind, period in SCHEDULE:
            key = f"bench:call{n}:{kind}"
            due = start + rng.uniform(0, period)
            due_at[key] = (due, period)
            first.append(StartTimer(key, due))
    runtime.execute(first)
    await asyncio.sleep(duration + 0.5)
    hub.close()
    for reader in readers:
        reader.cancel()
    return late


def _run(kind: str, calls: int, duration: float, seed: int, subscribers: int,
         conn: Any) -> None:
    if kind == "ours":
        late = asyncio.run(_ours(calls, duration, seed, subscribers))
    else:
        late = asyncio.run(_bare(calls, duration, seed))
    conn.send(late)


def one_run(kind: str, args: argparse.Namespace, seed: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_run, daemon=True,
                       args=(kind, args.calls, args.duration, seed, args.subscribers, child))
    proc.start()
    try:
        if not parent.poll(args.duration + 60):
            raise RuntimeError(f"{kind} timers did not report")
        late: list[float] = parent.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
    return {"p99_ms": p99(late), "p50_ms": statistics.median(late) * 1000,
            "max_ms": max(late) * 1000, "fires": len(late)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--subscribers", type=int, default=50,
                        help="hub readers draining the board topic in ours")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"engine timers: {args.calls} calls x {len(SCHEDULE)} timers, {args.duration:g} s, "
          f"{args.rounds} alternating rounds", flush=True)
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "ours": []}
    for n in range(args.rounds):
        for kind in runs:
            r = one_run(kind, args, seed=n)
            runs[kind].append(r)
            print(f"  round {n + 1} {kind:<5} {r['fires']:.0f} fires, lateness p50 "
                  f"{r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms max {r['max_ms']:.1f} ms",
                  flush=True)
    med = {kind: statistics.median(r["p99_ms"] for r in rs) for kind, rs in runs.items()}
    ratio = med["ours"] / med["bare"] if med["bare"] > 0 else float("inf")
    ok = med["ours"] < GOAL_MS
    print(f"p99 lateness: ours {med['ours']:.2f} ms, bare call_later {med['bare']:.2f} ms "
          f"(ratio {ratio:.2f}); goal < {GOAL_MS:g} ms: {'pass' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps([{
            "figure": f"engine timer lateness p99, {args.calls} calls",
            "ours": round(med["ours"], 3),
            "peer": "asyncio call_later", "peer_value": round(med["bare"], 3),
            "ratio": round(ratio, 3), "unit": "ms", "goal": f"< {GOAL_MS:g} ms", "pass": ok}],
            indent=1))


if __name__ == "__main__":
    main()
