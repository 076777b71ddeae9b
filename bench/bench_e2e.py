"""End to end on real Asterisk: the engine's CPU against Asterisk's at rising call rates.

Run as a user would: a fresh state dir, ``callflow setup``, ``callflow run`` (Asterisk
22 + engine + API), then for each rate ``callflow demo``: SIPp softphones REGISTER for
``--agents`` agents who log in at their desktops and answer after ``--ring`` s (RTP
flows both ways: SIPp echoes the media), SIPp callers dial the inbound DID at the rate
and hang up ``--patience`` s after Asterisk took the call (the agent's talk limit is
longer, so the caller hangs up first). While the callers call, the CPU time of the
``callflow run`` process and of Asterisk's is read from /proc/<pid>/stat over the
steady part of the step (from ``--patience`` s after the first caller to the stop).

Checked at each step: one call record per call placed. SIPp numbers its callers 1..n
(the caller number is ``1380000<n>``), so the step's inbound records must carry exactly
those numbers, once each, every one ended.

Printed per rate: engine and Asterisk CPU (% of one core), their ratio (goal: engine
<= 0.2x Asterisk, issue 20), and from the highest rate's CPU per call/s, the rate at
which each would fill a core (the engine must not be the first). ``--json PATH``
writes the rows for ``make bench``. One run takes about ``len(rates) * (step + patience
+ 20)`` s plus ~30 s of set-up: under 5 minutes with the defaults.

    .venv/bin/python bench/bench_e2e.py [--rates 0.5,1,2] [--step-s 40] [--agents 24]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CALLFLOW = str(Path(sys.executable).with_name("callflow"))
CALLER_PREFIX = "1380000"  # callflow/demo/runner.py DemoOptions.caller_prefix
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Deployment:
    """``callflow setup`` + ``callflow run`` in a state dir of their own."""

    def __init__(self, state: Path, port_base: int, agents: int) -> None:
        self.state = state
        self.env = {**os.environ, "CALLFLOW_STATE_DIR": str(state),
                    "CALLFLOW_PORT_BASE": str(port_base)}
        self.env.setdefault("CALLFLOW_ASTERISK_ROOT", str(REPO / "build" / "asterisk-root"))
        self.api_port = port_base + 800  # callflow/settings.py Ports.from_base
        self.agents = agents
        self.run: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from callflow.pbx.roster import write_default_roster

        write_default_roster(self.state / "agents.toml", count=self.agents)
        subprocess.run([CALLFLOW, "setup"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        log = (self.state / "run.log").open("wb")
        self.run = subprocess.Popen([CALLFLOW, "run", "--stop-pbx"], env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.run.poll() is not None:
                raise SystemExit(f"callflow run exited ({self.run.returncode}); the end of "
                                 f"its log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz",
                                            timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"callflow run not healthy within 90 s; the end of its log:\n"
                         f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of ``callflow run``'s log: the state dir is removed when the bench ends."""
        try:
            return "\n".join((self.state / "run.log").read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    @property
    def asterisk_pid(self) -> int:
        pidfile = next(self.state.rglob("asterisk.pid"))
        return int(pidfile.read_text().strip())

    def stop(self) -> None:
        if self.run is not None and self.run.poll() is None:
            self.run.send_signal(signal.SIGINT)
            try:
                self.run.wait(30)
            except subprocess.TimeoutExpired:
                self.run.kill()
                self.run.wait(5)

    def counters(self) -> dict[str, float]:
        """The engine's own counters from ``/healthz``: AMI events read, records written,
        their transactions and fsyncs (what a call costs in work, whatever the CPU)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz",
                                        timeout=5) as reply:
                health = json.load(reply)
        except (OSError, ValueError):
            return {}
        parts = health.get("components", {})
        ami, store = parts.get("ami", {}), parts.get("store", {})
        return {"ami_events": ami.get("events", 0), "records": store.get("records_put", 0),
                "transactions": store.get("transactions", 0), "fsyncs": store.get("fsyncs", 0)}

    def last_call_id(self) -> int:
        with sqlite3.connect(self.state / "callflow.db") as db:
            return int(db.execute("SELECT coalesce(max(id), 0) FROM calls").fetchone()[0])

    def records_since(self, call_id: int) -> list[tuple[str, str | None]]:
        with sqlite3.connect(self.state / "callflow.db") as db:
            return list(db.execute(
                "SELECT caller_number, ended_at FROM calls WHERE id > ? AND direction = "
                "'inbound' AND caller_number LIKE ?", (call_id, CALLER_PREFIX + "%")))


IDLE_LEAVES = ("_worker (concurrent/futures/thread.py", "Condition.wait (", ".select (selectors.py",
               "Event.wait (", "_wait_for_tstate_lock")
"""Leaf frames of a thread that waits (py-spy's raw stacks count some of them as busy)."""
AREAS = (("store (SQLAlchemy writer, journal)", ("store/", "sqlalchemy/")),
         ("AMI ingest (ami/)", ("ami/",)), ("FastAGI flows (dialplan/)", ("dialplan/",)),
         ("core + runtime", ("runtime/", "engine/", "agents/")),
         ("API, board, stream, desktop", ("api/", "board/", "stream/", "desktop/", "uvicorn/",
                                          "starlette/", "websockets/", "fastapi/")),
         ("asyncio loop itself", ("asyncio/",)))


def profile_summary(path: Path) -> str:
    """Where the engine's busy samples went, by area (the first area a stack touches)."""
    counts: dict[str, int] = {}
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE_LEAVES):
            continue
        busy += int(n)
        area = next((name for name, marks in AREAS
                     if any(m in stack for m in marks)), "other")
        counts[area] = counts.get(area, 0) + int(n)
    if not busy:
        return "no busy samples"
    return ", ".join(f"{name} {n / busy * 100:.0f} %"
                     for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def step(dep: Deployment, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """One rate: the demo's callers for ``--step-s``; CPU over the steady part."""
    before = dep.last_call_id()
    cmd = [CALLFLOW, "demo", "--agents", str(args.agents), "--rate", f"{rate * 60:g}",
           "--duration", str(args.step_s), "--ring", str(args.ring), "--wrap", "1",
           "--patience", str(args.patience), "--talk", str(args.patience + 20),
           "--max-callers", str(int(rate * args.patience * 2) + 5)]
    demo = subprocess.Popen(cmd, env=dep.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    assert demo.stdout is not None and dep.run is not None
    engine, asterisk = dep.run.pid, dep.asterisk_pid
    window: dict[str, float] = {}
    counted: dict[str, float] = {}
    output: list[str] = []
    for line in demo.stdout:
        output.append(line)
        if "agents logged in" in line:
            time.sleep(args.patience)  # callers on the line, waiting and talking: steady
            window.update(t0=time.monotonic(), e0=cpu_seconds(engine),
                          a0=cpu_seconds(asterisk))
            counted = dep.counters()
            if args.profile:
                spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
                if spy:
                    # --gil: the samples of the thread running Python, i.e. where the
                    # Python CPU goes (threads waiting for the GIL or the CPU excluded)
                    subprocess.Popen([spy, "record", "-p", str(engine), "-f", "raw", "-r", "400",
                                      "--nonblocking", "--gil",
                                      "-d", str(int(args.step_s - args.patience)), "-o",
                                      str(args.profile.with_suffix(f".{rate:g}.txt"))],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif line.startswith("demo: stopping") and "t0" in window:
            window.update(t1=time.monotonic(), e1=cpu_seconds(engine), a1=cpu_seconds(asterisk))
            counted = {k: v - counted.get(k, 0) for k, v in dep.counters().items()}
    code = demo.wait()
    if code != 0 or "t1" not in window:
        raise SystemExit(f"callflow demo failed ({code}):\n{''.join(output[-20:])}")
    time.sleep(2)  # the journal writes the last records
    records = dep.records_since(before)
    numbers = [number for number, _ in records]
    placed = max((int(n[len(CALLER_PREFIX):]) for n in numbers), default=0)
    expected = {f"{CALLER_PREFIX}{n}" for n in range(1, placed + 1)}
    unended = sum(1 for _, ended in records if ended is None)
    one_each = len(numbers) == len(set(numbers)) == placed and set(numbers) == expected
    wall = window["t1"] - window["t0"]
    if counted.get("records"):
        per_call = rate * wall
        print(f"  per call over the window: {counted['ami_events'] / per_call:.0f} AMI events, "
              f"{counted['records'] / per_call:.1f} records; "
              f"{counted['records'] / max(1, counted['transactions']):.1f} records a "
              f"transaction, {counted['records'] / max(1, counted['fsyncs']):.1f} an fsync")
    if args.profile:
        spied = args.profile.with_suffix(f".{rate:g}.txt")
        deadline = time.monotonic() + 10
        while not spied.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        if spied.exists():
            print(f"  engine's busy time at {rate:g} calls/s (py-spy, {spied}): "
                  f"{profile_summary(spied)}")
    return {"rate": rate, "calls": placed, "records": len(records), "one_each": one_each,
            "unended": unended, "seconds": wall,
            "engine": (window["e1"] - window["e0"]) / wall,
            "asterisk": (window["a1"] - window["a0"]) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.5,1,2", help="calls a second, comma-separated")
    parser.add_argument("--step-s", type=float, default=40.0, help="seconds of callers a rate")
    parser.add_argument("--agents", type=int, default=24)
    parser.add_argument("--patience", type=float, default=8.0,
                        help="seconds a caller stays on the line (wait + talk)")
    parser.add_argument("--ring", type=float, default=1.0, help="seconds an agent's phone rings")
    parser.add_argument("--port-base", type=int,
                        # below Linux's ephemeral ports (32768-60999), which the board
                        # bench's thousands of client connections use just before
                        default=int(os.environ.get("CALLFLOW_TEST_PORT_BASE", "21000")) + 1000)
    parser.add_argument("--keep", action="store_true", help="keep the state dir (logs, db)")
    parser.add_argument("--idle-s", type=float, default=10.0,
                        help="seconds of CPU measured with no calls, before the first rate")
    parser.add_argument("--profile", type=Path,
                        help="py-spy the engine over each step's window into PATH.<rate>.txt")
    parser.add_argument("--json", type=Path, help="write the rows for make bench here")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="callflow-bench-e2e-"))
    dep = Deployment(state, args.port_base, args.agents)
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        dep.start()
        print(f"callflow run up ({args.agents} agents, state {state}); "
              f"{time.monotonic() - started:.0f} s")
        assert dep.run is not None
        engine, asterisk = dep.run.pid, dep.asterisk_pid
        t0, e0, a0 = time.monotonic(), cpu_seconds(engine), cpu_seconds(asterisk)
        time.sleep(args.idle_s)
        idle = time.monotonic() - t0
        print(f"  idle (no calls, no phones): engine {(cpu_seconds(engine) - e0) / idle * 100:.1f}"
              f" % of a core, Asterisk {(cpu_seconds(asterisk) - a0) / idle * 100:.1f} %")
        for rate in (float(r) for r in args.rates.split(",")):
            r = step(dep, rate, args)
            results.append(r)
            print(f"  {rate:g} calls/s: {r['calls']} calls, {r['records']} records "
                  f"({'one per call' if r['one_each'] else 'NOT one per call'}, "
                  f"{r['unended']} not ended); engine {r['engine'] * 100:.1f} % of a core, "
                  f"Asterisk {r['asterisk'] * 100:.1f} %: {r['engine'] / r['asterisk']:.2f}x "
                  f"over {r['seconds']:.0f} s", flush=True)
    finally:
        dep.stop()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)
    top = results[-1]
    engine_sat = top["rate"] / top["engine"]
    asterisk_sat = top["rate"] / top["asterisk"]
    print(f"a core is full at ~{engine_sat:.0f} calls/s for the engine, ~{asterisk_sat:.0f} "
          f"for Asterisk (from {top['rate']:g} calls/s, the highest rate tried): "
          f"{'Asterisk' if asterisk_sat < engine_sat else 'the ENGINE'} saturates first; "
          f"run took {time.monotonic() - started:.0f} s")
    rows = [{"figure": f"end to end, {r['rate']:g} calls/s: CPU, % of a core",
             "ours": round(r["engine"] * 100, 2), "peer": "Asterisk 22",
             "peer_value": round(r["asterisk"] * 100, 2),
             "ratio": round(r["engine"] / r["asterisk"], 3), "unit": "% of a core",
             "goal": "<= 0.2x, one record per call",
             "pass": r["engine"] / r["asterisk"] <= 0.2 and r["one_each"] and not r["unended"]}
            for r in results]
    rows.append({"figure": "end to end: calls/s that fill a core", "ours": round(engine_sat, 1),
                 "peer": "Asterisk 22", "peer_value": round(asterisk_sat, 1),
                 "ratio": round(engine_sat / asterisk_sat, 3), "unit": "calls/s",
                 "goal": ">= 1.0x (the engine does not saturate first)",
                 "pass": engine_sat >= asterisk_sat})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
