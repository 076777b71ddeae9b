"""AMI ingest: the adapter (ami/client.py) vs a bare asyncio parser vs raw asterisk-ami.

The stream is the captured call of tests/fixtures/ami/call_playback.txt (27 real
Asterisk 22 events: Newchannel, VarSet, TestEvent, OriginateResponse, Hangup...)
repeated to ``--events`` events. A separate server process (so it does not share
this process's GIL) sends Asterisk's banner, answers the Login, then writes the
whole stream at once and answers Pings; each run is a fresh connection.

Figures, each the median of ``--runs`` runs, from connect to the last event
delivered:
- adapter: ``AmiClient`` as the product uses it: an ``asyncio.Protocol`` on the loop
  (issue 20; it was a reader thread with a hand-off), our parser with every check
  (malformed frames, glued frames, suspect shapes), one batch per chunk to a
  subscriber counting events;
- bare asyncio: an ``asyncio.Protocol`` on the loop doing the same framing and
  ``Key: value`` parsing into a dict, no checks (the upper bound for Python);
- asterisk-ami: its own ``AMIClient`` (reader thread, 64 KiB reads, one listener
  call per event, no hand-off to a loop: not usable as is, for scale only);
- panoramisk (bench-only dependency, ``pip install panoramisk``): its asyncio
  ``Manager`` with a ``*`` event callback; skipped when not installed.

The goal (issue 20) is adapter >= 0.8x bare. ``--json PATH`` writes the rows for
``make bench`` (figure, ours, peer, peer_value, ratio, unit, goal, pass).

Usage: .venv/bin/python bench/bench_ami.py [--events 200000] [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from asterisk.ami import AMIClient

from callflow.ami.client import AmiClient, AmiMessage

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ami"
CAPTURE = FIXTURES / "call_playback.txt"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
USER, SECRET = "bench", "bench-secret"
FULLY_BOOTED = (b"Event: FullyBooted\r\nPrivilege: system,all\r\nTimestamp: 1700000000.000000\r\n"
                b"Status: Fully Booted\r\nUptime: 10\r\nLastReload: 10\r\n\r\n")


# -- the server (child process) ----------------------------------------------------------


def build_stream(events: int, one_call: bool = False) -> bytes:
    """The captured call's events, repeated to ``events``. As production sees them, by
    default: each repetition is a new call (its own uniqueids and channel names) and each
    event carries a ``Timestamp:`` line after ``Privilege:`` (the product's manager.conf
    sets ``timestampevents = yes``). ``one_call`` replays the very same bytes (the stream
    of earlier runs: a parser that remembers lines sees nothing new after the first call).
    """
    frames = [f for f in CAPTURE.read_bytes().split(b"\r\n\r\n") if f.startswith(b"Event: ")]
    out: list[bytes] = []
    n = 0
    for call in range(events // len(frames) + 1):
        for frame in frames:
            if n == events:
                return b"".join(out)
            if not one_call:
                frame = (frame.replace(b"cap-call-", b"cap-%d-call-" % call)
                         .replace(b"-00000000;", b"-%08x;" % call))
                head, sep, rest = frame.partition(b"\r\n")
                if rest.startswith(b"Privilege: "):
                    privilege, _, rest = rest.partition(b"\r\n")
                    head += b"\r\n" + privilege
                frame = head + b"\r\nTimestamp: %d.%06d" % (1700000000 + n // 1000,
                                                              n % 1000 * 1000) + sep + rest
            out.append(frame + b"\r\n\r\n")
            n += 1
    return b"".join(out)


def serve(events: int, one_call: bool) -> None:
    stream = build_stream(events, one_call)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_session, args=(conn, stream), daemon=True).start()


def _session(conn: socket.socket, stream: bytes) -> None:
    with conn:
        conn.sendall(BANNER)
        buf = b""
        logged_in = False
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            frame, buf = buf.split(b"\r\n\r\n", 1)
            action = dict(line.split(": ", 1) for line in frame.decode().split("\r\n")
                          if ": " in line)
            name, action_id = action.get("Action", "").lower(), action.get("ActionID", "")
            if name == "login" and not logged_in:
                logged_in = True
                # as Asterisk 22 once booted (main/manager.c action_login): FullyBooted
                # right after the reply; without it the adapter's resync waits for it
                conn.sendall(f"Response: Success\r\nActionID: {action_id}\r\n"
                             "Message: Authentication accepted\r\n\r\n".encode()
                             + FULLY_BOOTED + stream)
            elif name == "ping":
                conn.sendall(f"Response: Success\r\nActionID: {action_id}\r\nPing: Pong\r\n"
                             "\r\n".encode())
            elif name == "logoff":
                conn.sendall(f"Response: Goodbye\r\nActionID: {action_id}\r\n\r\n".encode())
                return


# -- the three readers ----------------------------------------------------------------------


async def run_adapter(port: int, events: int) -> tuple[float, dict[str, float]]:
    done = asyncio.Event()
    count = 0

    def on_batch(batch: Sequence[AmiMessage]) -> None:
        nonlocal count
        count += len(batch)
        if count >= events:
            done.set()

    client = AmiClient("127.0.0.1", port, USER, SECRET, action_timeout=30, ping_timeout=30,
                       ping_interval=5)
    client.subscribe(on_batch)
    started = time.perf_counter()
    await client.start()
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    stats = client.stats
    await client.stop()
    return events / elapsed, stats


class BareProtocol(asyncio.Protocol):
    """What a loop-only reader costs: framing + ``Key: value`` parsing, nothing else."""

    def __init__(self, events: int, done: asyncio.Future[None]) -> None:
        self.events, self.done = events, done
        self.buf = b""
        self.count = 0
        self.banner = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(f"Action: Login\r\nActionID: 1\r\nUsername: {USER}\r\n"
                        f"Secret: {SECRET}\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.banner:
            line, sep, buf = buf.partition(b"\r\n")
            if not sep:
                self.buf = line
                return
            self.banner = True
        *frames, self.buf = buf.split(b"\r\n\r\n")
        for frame in frames:
            fields: dict[str, str | list[str]] = {}
            for line in frame.decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(": ")
                old = fields.get(key)
                if old is None:
                    fields[key] = value
                elif isinstance(old, list):
                    old.append(value)
                else:
                    fields[key] = [old, value]
            if "Event" in fields:
                self.count += 1
        if self.count >= self.events and not self.done.done():
            self.done.set_result(None)


async def run_bare(port: int, events: int) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    started = time.perf_counter()
    transport, _ = await loop.create_connection(lambda: BareProtocol(events, done),
                                                "127.0.0.1", port)
    await asyncio.wait_for(done, 120)
    elapsed = time.perf_counter() - started
    transport.close()
    return events / elapsed


async def run_panoramisk(port: int, events: int) -> float:
    from panoramisk import Manager  # type: ignore[import-untyped]

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0

    def on_event(manager: object, message: object) -> None:
        nonlocal count
        count += 1
        if count >= events and not done.done():
            done.set_result(None)

    manager = Manager(host="127.0.0.1", port=port, username=USER, secret=SECRET,
                      ping_delay=30, reconnect_timeout=30, loop=loop)
    manager.register_event("*", on_event)
    started = time.perf_counter()
    await manager.connect()
    await asyncio.wait_for(done, 300)
    elapsed = time.perf_counter() - started
    manager.close()
    return events / elapsed


def run_asterisk_ami(port: int, events: int) -> float:
    done = threading.Event()
    count = 0

    def on_event(source: object, event: object) -> None:
        nonlocal count
        count += 1
        if count >= events:
            done.set()

    client = AMIClient(port=port, timeout=30, buffer_size=64 * 1024)
    client.add_listener(on_event=on_event)
    started = time.perf_counter()
    client.login(USER, SECRET)
    if not done.wait(300):
        raise RuntimeError(f"asterisk-ami delivered {count} of {events} events")
    elapsed = time.perf_counter() - started
    client.finished.set()
    client._socket.shutdown(socket.SHUT_RDWR)
    client._thread.join(5)
    return events / elapsed


def median_of(runs: int, measure: Callable[[], float],
              events: int) -> tuple[float, list[float], float]:
    """Median events/s, every run's figure, and the median CPU microseconds per event.

    CPU time (this process, all threads) is the steadier figure on a shared machine:
    wall-clock rates move with whatever else runs on the 2 cores.
    """
    figures, cpu = [], []
    for _ in range(runs):
        started = time.process_time()
        figures.append(measure())
        cpu.append((time.process_time() - started) / events * 1e6)
    return statistics.median(figures), figures, statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-asterisk-ami", action="store_true")
    parser.add_argument("--one-call", action="store_true",
                        help="replay the same call's bytes (no new ids, no Timestamp lines)")
    parser.add_argument("--json", type=Path, help="write the rows for make bench here")
    args = parser.parse_args()
    if args.serve:
        serve(args.events, args.one_call)
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--events", str(args.events),
                               *(["--one-call"] if args.one_call else [])],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        stream_bytes = len(build_stream(args.events, args.one_call))
        kind = "one call replayed" if args.one_call else "a new call each 27, timestamped"
        print(f"stream: {args.events} events from {CAPTURE.name}, {kind} "
              f"({stream_bytes / args.events:.0f} bytes/event, {stream_bytes / 1e6:.1f} MB); "
              f"median of {args.runs} runs")
        adapter_stats: list[dict[str, float]] = []

        def adapter() -> float:
            rate, stats = asyncio.run(run_adapter(port, args.events))
            adapter_stats.append(stats)
            return rate

        bare, bare_runs, bare_cpu = median_of(
            args.runs, lambda: asyncio.run(run_bare(port, args.events)), args.events)
        ours, our_runs, our_cpu = median_of(args.runs, adapter, args.events)
        print(f"bare asyncio parser      {bare:>10,.0f} events/s  {bare_cpu:5.1f} us CPU/event"
              f"   runs {_fmt(bare_runs)}")
        print(f"adapter (ami/client.py)  {ours:>10,.0f} events/s  {our_cpu:5.1f} us CPU/event"
              f"   runs {_fmt(our_runs)}")
        last = adapter_stats[-1]
        print(f"  adapter/bare: {ours / bare:.2f} by rate, {bare_cpu / our_cpu:.2f} by CPU; "
              f"last run: {last['batches']:.0f} batches (mean "
              f"{last['events'] / max(last['batches'], 1):.0f} events each), "
              f"{last['reads']:.0f} reads, max lag {last['max_lag'] * 1000:.0f} ms")
        stream_kind = "one call" if args.one_call else "new calls, timestamped"
        rows = [_row(f"AMI ingest, events/s ({args.events // 1000}k events, {stream_kind})",
                     ours, "bare asyncio parser", bare, "events/s", ">= 0.8x", 0.8)]
        if not args.skip_asterisk_ami:
            raw, raw_runs, raw_cpu = median_of(
                args.runs, lambda: run_asterisk_ami(port, args.events), args.events)
            print(f"asterisk-ami AMIClient   {raw:>10,.0f} events/s  {raw_cpu:5.1f} us CPU/event"
                  f"   runs {_fmt(raw_runs)}  (its reader thread alone, no hand-off to a loop)")
            rows.append(_row("AMI ingest, events/s", ours, "asterisk-ami reader thread", raw,
                             "events/s", ">= 1.0x", 1.0))
        if importlib.util.find_spec("panoramisk") is not None:
            pano, pano_runs, pano_cpu = median_of(
                args.runs, lambda: asyncio.run(run_panoramisk(port, args.events)), args.events)
            print(f"panoramisk Manager       {pano:>10,.0f} events/s  {pano_cpu:5.1f} us CPU/event"
                  f"   runs {_fmt(pano_runs)}")
            rows.append(_row("AMI ingest, events/s", ours, "panoramisk", pano, "events/s",
                             ">= 1.0x", 1.0))
        else:
            print("panoramisk: not installed (pip install panoramisk), skipped")
        for row in rows:
            print(f"  {row['figure']}: {row['ratio']:.2f}x {row['peer']} "
                  f"(goal {row['goal']}: {'pass' if row['pass'] else 'FAIL'})")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        server.terminate()
        server.wait(5)


def _row(figure: str, ours: float, peer: str, peer_value: float, unit: str, goal: str,
         at_least: float) -> dict[str, object]:
    """One row of the shared bench table (higher is better here)."""
    ratio = ours / peer_value
    return {"figure": figure, "ours": round(ours, 1), "peer": peer,
            "peer_value": round(peer_value, 1), "ratio": round(ratio, 3), "unit": unit,
            "goal": goal, "pass": ratio >= at_least}


def _fmt(figures: list[float]) -> str:
    return " ".join(f"{f / 1000:.0f}k" for f in figures)



if __name__ == "__main__":
    main()
