"""Board fan-out: engine event -> every websocket client, ours vs bare ``websockets``.

The yardstick of issue 20. One server process at a time publishes ``--rate`` board
changes a second for ``--duration`` seconds to ``--clients`` websocket clients, which
run in ``--client-procs`` other processes (so the server's loop is measured alone):

- ours: the product as it runs: ``EventHub.publish`` -> ``/ws/events`` of the FastAPI
  app (``api.app.create_app``, auth by bearer token) served by uvicorn with
  ``server_config``, the frames encoded by ``FrameEncoder``, the service's GC set-up
  (``callflow.gc_tuning``);
- bare_loop / bare_broadcast / bare_queue: a ``websockets`` server sending the same
  bytes, serialised once per event: ``for ws in clients: await ws.send(frame)``,
  ``websockets.broadcast(clients, frame)``, and a queue plus a sender task per client.

Each event carries its scheduled time (a stalled server loop is counted, not hidden);
a client records ``arrival - scheduled`` for every event and checks that the sequence
numbers arrive one by one. Figures: p99 over every delivery of a run; per server the
median over ``--rounds`` alternating rounds; ratio = ours / the best bare style. The
"busy machine" variant repeats the last load with a CPU burner process running, ours
against the bare style that was best at that load. Nothing lost = every client got
every seq (ours may send a snapshot instead of deltas to a client that falls behind:
counted and shown, and a failure at these loads).

Each run also prints the server's CPU time per delivery (process time over the run's
window / deliveries): it moves far less than wall-clock latency on a shared machine and
says where the time goes (``BENCH_BOARD_PROFILE=/tmp/p`` adds a cProfile per server;
``BENCH_BOARD_PIN=1`` pins the server to CPU 0 and the clients to the other CPUs).

    .venv/bin/python bench/bench_board.py                 # both loads + busy: 9 min at load 9
    .venv/bin/python bench/bench_board.py --duration 20   # the issue's 20 s windows
    .venv/bin/python bench/bench_board.py --gc-off-too    # also ours without gc set-up
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import logging
import multiprocessing as mp
import os
import re
import secrets
import socket
import statistics
import sys
import time
from array import array
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BARE = ("bare_loop", "bare_broadcast", "bare_queue")
GOAL_RATIO = 1.2
#: a client stops waiting this long after the run's last event was due; an event not
#: delivered by then counts as lost and, in the p99, as this late
LATE_S = 5.0
SEQ = re.compile(rb'"seq":(\d+)')
T = re.compile(rb'"t":([0-9.]+)')


def board_payload(t: float, n: int) -> dict[str, Any]:
    """An agent change as the board gets it (the shape of agents.state.agent_view)."""
    return {"t": t, "type": "agent", "agent_id": f"{1000 + n % 150}", "name": f"Agent {n % 150}",
            "state": ("ready", "ringing", "talking", "acw")[n % 4], "reason": None,
            "since": t - 12.5, "since_epoch": t - 12.5, "queue": "support", "skills": ["en"],
            "calls_today": n % 40, "prev_state": "ready", "prev_reason": None, "by": "engine",
            "cause": "call_offered"}


def bare_frame(seq: int, payload: dict[str, Any]) -> str:
    return json.dumps({"v": 1, "type": "event", "seq": seq, "topic": "board",
                       "payload": payload}, separators=(",", ":"))


# ---- servers (one process per run) ----------------------------------------------------------


class GcWatch:
    """Times each garbage collection by generation (gc.callbacks), in the server."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t0 = 0.0
        self._cpu0 = time.process_time()
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._t0) * 1000)

    def reset(self) -> None:
        for pauses in self.pauses.values():
            pauses.clear()
        self._cpu0 = time.process_time()

    def summary(self) -> dict[str, float]:
        g2 = self.pauses[2]
        return {"cpu_s": time.process_time() - self._cpu0,
                "gen2_count": len(g2), "gen2_max_ms": max(g2, default=0.0),
                "gen0_1_max_ms": max(self.pauses[0] + self.pauses[1], default=0.0)}


async def _ticker(rate: float, total: int, emit: Any) -> None:
    """Call ``emit(seq, scheduled_time)`` at absolute times: lateness is not forgiven."""
    start = time.time() + 0.2
    for seq in range(1, total + 1):
        due = start + (seq - 1) / rate
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        emit(seq, due)


def _listen() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


async def _serve_ours(sock: socket.socket, token: str, clients: int, rate: float,
                      total: int, gc_tune: bool, conn: Any) -> None:
    import uvicorn

    import callflow.cli  # noqa: F401  every module `callflow run` loads: the heap the GC walks
    from callflow.api.app import ApiDeps, create_app, server_config
    from callflow.gc_tuning import tune_after_startup
    from callflow.stream.hub import EventHub

    async def health() -> dict[str, Any]:
        return {}

    hub = EventHub()
    app = create_app(ApiDeps(hub=hub, health=health, api_token=token))
    server = uvicorn.Server(server_config(app, "127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    if gc_tune:
        tune_after_startup()
    watch = GcWatch()
    conn.send(sock.getsockname()[1])
    while hub.stats()["subscribers"] < clients:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    watch.reset()
    await _ticker(rate, total, lambda seq, t: hub.publish("board", board_payload(t, seq)))
    await asyncio.sleep(1.0)
    conn.send(watch.summary())
    server.should_exit = True
    await asyncio.wait_for(serving, 10)


async def _serve_bare(style: str, sock: socket.socket, clients: int, rate: float, total: int,
                      conn: Any) -> None:
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    connected: set[ServerConnection] = set()
    queues: dict[ServerConnection, asyncio.Queue[str]] = {}

    async def handler(ws: ServerConnection) -> None:
        connected.add(ws)
        try:
            if style == "bare_queue":
                queue: asyncio.Queue[str] = asyncio.Queue()
                queues[ws] = queue
                while True:
                    await ws.send(await queue.get())
            else:
                await ws.wait_closed()
        finally:
            connected.discard(ws)
            queues.pop(ws, None)

    pending: set[asyncio.Task[None]] = set()

    async def send_all(frame: str) -> None:
        for ws in list(connected):
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(frame)

    def emit(seq: int, t: float) -> None:
        frame = bare_frame(seq, board_payload(t, seq))
        if style == "bare_broadcast":
            websockets.broadcast(connected, frame)
        elif style == "bare_queue":
            for queue in queues.values():
                queue.put_nowait(frame)
        else:
            task = asyncio.create_task(send_all(frame))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async with serve(handler, sock=sock, compression=None, max_queue=None):
        watch = GcWatch()
        conn.send(sock.getsockname()[1])
        while len(connected) < clients:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        watch.reset()
        await _ticker(rate, total, emit)
        await asyncio.sleep(1.0)
        conn.send(watch.summary())


def _pin(server: bool) -> None:
    """``BENCH_BOARD_PIN=1``: the server on CPU 0, the client processes on the others, for
    every kind alike, so a server's fan-out and the clients' reads of it never take turns
    on one core (how they interleave otherwise differs between servers; off by default)."""
    cpus = os.cpu_count() or 1
    if os.environ.get("BENCH_BOARD_PIN") == "1" and cpus > 1:
        os.sched_setaffinity(0, {0} if server else set(range(1, cpus)))


def _server_main(kind: str, token: str, clients: int, rate: float,
                 total: int, gc_tune: bool, conn: Any) -> None:
    # A client that gave up (a run past its deadline) is the figure, not a traceback each.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    _pin(server=True)
    sock = _listen()
    profile = os.environ.get("BENCH_BOARD_PROFILE")
    if profile:  # where the server's time goes: BENCH_BOARD_PROFILE=/tmp/prof
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    if kind == "ours":
        asyncio.run(_serve_ours(sock, token, clients, rate, total, gc_tune, conn))
    else:
        asyncio.run(_serve_bare(kind, sock, clients, rate, total, conn))
    if profile:
        profiler.disable()
        profiler.dump_stats(f"{profile}.{kind}")


# ---- clients (raw websocket frames: cheap enough that the server is what is measured) -------


class _Client(asyncio.Protocol):
    """One websocket client: handshake, then frames; records lateness and checks seqs."""

    def __init__(self, lat: array, total: int, done: asyncio.Future[None] | None,
                 left: list[int]) -> None:
        self.lat = lat
        self.total = total
        self.left = left
        self.done = done
        self.buf = bytearray()
        self.upgraded = False
        self.expect = 0  # 0: until the first event or snapshot
        self.got = 0
        self.gaps = 0
        self.snapshots = 0
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.connected.set_exception(RuntimeError(bytes(buf[:80]).decode()))
                return
            del buf[:end + 4]
            self.upgraded = True
            self.connected.set_result(None)
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if n - pos < head + length:
                break
            body = bytes(buf[pos + head:pos + head + length])
            pos += head + length
            if opcode == 0x1:
                self._text(body, now)
            elif opcode == 0x9:  # ping: a masked pong (mask key 0 leaves the bytes as they are)
                assert self.transport is not None and len(body) < 126
                self.transport.write(bytes([0x8A, 0x80 | len(body)]) + b"\0\0\0\0" + body)
        del buf[:pos]

    def _text(self, body: bytes, now: float) -> None:
        m = SEQ.search(body)
        if m is None:
            return
        seq = int(m.group(1))
        if body.startswith(b'{"v":1,"type":"snapshot"'):
            if seq > 0:
                self.snapshots += 1
            self.expect = seq + 1
        else:
            if self.expect and seq != self.expect:
                self.gaps += 1
            self.expect = seq + 1
            self.got += 1
            t = T.search(body, m.end())
            if t is not None:
                self.lat.append(now - float(t.group(1)))
        if seq >= self.total and not self.finished:
            self.finished = True
            self.left[0] -= 1
            if self.left[0] == 0 and self.done is not None and not self.done.done():
                self.done.set_result(None)


async def _clients(port: int, token: str, count: int, total: int, deadline_s: float,
                   conn: Any) -> None:
    loop = asyncio.get_running_loop()
    lat: array = array("d")
    done: asyncio.Future[None] = loop.create_future()
    left = [count]
    clients: list[_Client] = []
    gate = asyncio.Semaphore(50)

    async def connect() -> None:
        async with gate:
            client = _Client(lat, total, done, left)
            await loop.create_connection(lambda: client, "127.0.0.1", port)
            key = base64.b64encode(os.urandom(16)).decode()
            assert client.transport is not None
            client.transport.write(
                f"GET /ws/events?topics=board HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            await client.connected
            clients.append(client)

    await asyncio.gather(*(connect() for _ in range(count)))
    conn.send("connected")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done, deadline_s)
    conn.send({"lat": lat.tobytes(), "got": sum(c.got for c in clients),
               "gaps": sum(c.gaps for c in clients),
               "snapshots": sum(c.snapshots for c in clients),
               "short": sum(1 for c in clients if not c.finished)})
    for client in clients:
        if client.transport is not None:
            client.transport.close()


def _clients_main(port: int, token: str, count: int, total: int, deadline_s: float,
                  conn: Any) -> None:
    _pin(server=False)
    asyncio.run(_clients(port, token, count, total, deadline_s, conn))


def _burn(stop: Any) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def _full_collection_ms() -> float:
    pauses = []
    for _ in range(5):
        t0 = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - t0) * 1000)
    return statistics.median(pauses)


def _gc_probe(conn: Any) -> None:
    """A full collection's pause in a process that loaded what ``callflow run`` loads, before
    and after the service's GC set-up (the stalls issue 20 found were gen-2 collections)."""
    import callflow.cli  # noqa: F401
    from callflow.api.app import ApiDeps, create_app
    from callflow.engine.policy import Policy
    from callflow.gc_tuning import tune_after_startup
    from callflow.stream.hub import EventHub

    async def health() -> dict[str, Any]:
        return {}

    keep = (create_app(ApiDeps(hub=EventHub(), health=health, api_token=secrets.token_urlsafe(32))),
            Policy.defaults())
    before = _full_collection_ms()
    tracked = len(gc.get_objects())
    tune_after_startup()
    conn.send({"before_ms": before, "after_ms": _full_collection_ms(), "tracked": tracked,
               "kept": len(keep)})


def gc_row(rounds: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    results = []
    for _ in range(rounds):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_gc_probe, args=(child,), daemon=True)
        proc.start()
        results.append(parent.recv())
        proc.join(5)
    before = statistics.median(r["before_ms"] for r in results)
    after = statistics.median(r["after_ms"] for r in results)
    print(f"full GC pause after start-up ({results[0]['tracked']} tracked objects): "
          f"{before:.1f} ms without the set-up, {after:.3f} ms with gc.freeze()", flush=True)
    return {"figure": "full GC pause after start-up (gc.freeze)", "ours": round(after, 3),
            "peer": "no GC set-up", "peer_value": round(before, 2),
            "ratio": round(after / before, 4) if before else 0.0, "unit": "ms",
            "goal": "< 5 ms", "pass": after < 5.0}


# ---- one run, rounds, report ------------------------------------------------------------------


def p99(values: array) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000 if ordered else float("nan")


def one_run(kind: str, clients: int, rate: float, duration: float, procs: int,
            gc_tune: bool = True) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    total = int(rate * duration)
    token = secrets.token_urlsafe(32)
    srv_parent, srv_child = ctx.Pipe()
    server = ctx.Process(target=_server_main, daemon=True,
                         args=(kind, token, clients, rate, total, gc_tune, srv_child))
    server.start()
    client_procs = []
    try:
        if not srv_parent.poll(60):
            raise RuntimeError(f"{kind} server did not start")
        port = srv_parent.recv()
        pipes = []
        shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
        for share in shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_clients_main, daemon=True,
                               args=(port, token, share, total, duration + LATE_S, child))
            proc.start()
            client_procs.append(proc)
            pipes.append(parent)
        for pipe in pipes:
            if not pipe.poll(120):
                raise RuntimeError(f"{kind}: clients did not connect")
            pipe.recv()
        results = []
        for pipe in pipes:
            if not pipe.poll(duration + 30):
                raise RuntimeError(f"{kind}: clients did not report")
            results.append(pipe.recv())
        gcs = srv_parent.recv() if srv_parent.poll(15) else {}
    finally:
        for proc in [*client_procs, server]:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    lat: array = array("d")
    for r in results:
        lat.frombytes(r["lat"])
    expected = total * clients
    got = sum(r["got"] for r in results)
    lat.extend([LATE_S] * max(0, expected - got))
    cpu_us = gcs.get("cpu_s", 0.0) / max(got, 1) * 1e6
    return {"cpu_us": cpu_us, "p99_ms": p99(lat),
            "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
            "lost": expected - got, "gaps": sum(r["gaps"] for r in results),
            "snapshots": sum(r["snapshots"] for r in results), **gcs}


def run_load(label: str, clients: int, rate: float, args: argparse.Namespace,
             kinds: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    active = list(kinds)
    for n in range(args.rounds):
        if n == 1:
            active = _contenders(runs)
        for kind in active:
            gc_tune = kind != "ours_gc_default"
            r = one_run("ours" if kind.startswith("ours") else kind, clients, rate,
                        args.duration, args.client_procs, gc_tune)
            runs[kind].append(r)
            gc_note = (f" gen2 {r.get('gen2_count', 0)}x max {r.get('gen2_max_ms', 0):.1f} ms"
                       f" gen0/1 max {r.get('gen0_1_max_ms', 0):.1f} ms"
                       f" server CPU {r['cpu_us']:.1f} us/delivery" if "gen2_count" in r else "")
            print(f"  {label} round {n + 1} {kind:<15} p50 {r['p50_ms']:6.1f} ms "
                  f"p99 {r['p99_ms']:6.1f} ms lost {r['lost']} gaps {r['gaps']} "
                  f"snapshots {r['snapshots']}{gc_note}", flush=True)
    return runs


def _contenders(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """After round 1, a bare style more than twice as late as the best bare style cannot be
    the peer: it is not run again (its one round still shows), which keeps a run short."""
    firsts = {kind: rs[0]["p99_ms"] for kind, rs in runs.items() if kind in BARE and rs}
    best = min(firsts.values(), default=0.0)
    dropped = [kind for kind, p in firsts.items() if p > 2 * best]
    if dropped:
        print(f"  (not run again, more than 2x the best bare p99 in round 1: {', '.join(dropped)})")
    return [kind for kind in runs if kind not in dropped]


def summarise(label: str, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {kind: statistics.median(r["p99_ms"] for r in rs) for kind, rs in runs.items()}
    bare = {kind: v for kind, v in med.items() if kind in BARE}
    if not bare or "ours" not in med:
        print(f"{label}: p99 medians " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
        return {}
    best = min(bare, key=lambda k: bare[k])
    lost = sum(r["lost"] + r["gaps"] + r["snapshots"] for r in runs["ours"])
    ratio = med["ours"] / bare[best]
    cpu = {kind: statistics.median(r["cpu_us"] for r in rs) for kind, rs in runs.items()}
    print(f"{label}: p99 medians " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items())
          + f"; ours / {best} = {ratio:.2f} (lost {lost}); server CPU per delivery "
          + ", ".join(f"{k} {v:.1f} us" for k, v in cpu.items()), flush=True)
    return {"figure": f"board fan-out p99, {label}", "ours": round(med["ours"], 2),
            "peer": f"websockets {best.removeprefix('bare_')}",
            "peer_value": round(bare[best], 2), "ratio": round(ratio, 3), "unit": "ms",
            "goal": f"<= {GOAL_RATIO}x, nothing lost", "pass": ratio <= GOAL_RATIO and lost == 0,
            "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of events per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--loads", default="200x70,1000x20", help="clients x changes/s, ...")
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-machine variant")
    parser.add_argument("--gc-off-too", action="store_true",
                        help="also run ours without the service's GC set-up (before/after)")
    parser.add_argument("--kinds", help="only these servers, e.g. ours,ours_gc_default")
    parser.add_argument("--json", type=Path, help="write the table rows here")
    args = parser.parse_args()
    loads = [tuple(map(float, load.split("x"))) for load in args.loads.split(",")]
    kinds: tuple[str, ...] = ("ours", *BARE)
    if args.gc_off_too:
        kinds = (*kinds, "ours_gc_default")
    if args.kinds:
        kinds = tuple(args.kinds.split(","))
    print(f"board fan-out: {args.duration:g} s per run, {args.rounds} rounds, clients in "
          f"{args.client_procs} processes, python {sys.version.split()[0]}", flush=True)
    rows = [gc_row(args.rounds)]
    best = "bare_broadcast"
    for clients, rate in loads:
        label = f"{int(clients)} clients x {rate:g}/s"
        row = summarise(label, run_load(label, int(clients), rate, args, kinds))
        if row:
            best = row.pop("best")
            rows.append(row)
    if not args.no_busy:
        clients, rate = loads[-1]
        label = f"{int(clients)} clients x {rate:g}/s, busy machine"
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        burner = ctx.Process(target=_burn, args=(stop,), daemon=True)
        burner.start()
        try:
            # ours against the style that was best at this load on the quiet machine
            row = summarise(label, run_load(label, int(clients), rate, args, ("ours", best)))
            if row:
                row.pop("best")
                rows.append(row)
        finally:
            stop.set()
            burner.join(5)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
