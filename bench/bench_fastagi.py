"""FastAGI throughput: callflow's server against a bare asyncio server and pyst2, same bytes.

Each server runs in its own process (one core each on a 2-core box); this process runs
N concurrent fake Asterisks over TCP. A session is a real environment block (captured
from Asterisk 22), then the same six lines from every server, byte for byte (checked
on each run): callflow's ``GET FULL VARIABLE <random word>`` after the environment
(dialplan/agi.py ``read_after_env``, the issue-15 check), ANSWER, STREAM FILE, GET
VARIABLE, SET VARIABLE, WAIT FOR DIGIT, each answered after ``--delay-ms`` (0 = at
once; real prompts take seconds). Servers:
- callflow: ``FastAgiServer`` with a route doing the five commands through ``AgiSession``;
- bare: ``asyncio.start_server`` writing the same lines and reading each reply line;
- pyst2 (the library callflow's AGI came from): its ``AGI`` class over the socket, one
  thread per session (its ``fastagi`` module cannot be imported on Python 3).

Figures, medians of ``--rounds`` alternating rounds, for each ``--delays`` value:
sessions/s (wall, connect to the server's close), p50/p99 session time and p99 time
to first command (connect to the first line from the server). Goals (issue 20):
callflow >= 0.95x bare sessions/s with and without delay, p99 time to first command
<= 1.5x bare. Also the server process's CPU time per session (/proc; the wall rates
are bounded by the driver, all fake Asterisks in one process, on a busy box), whose
ratio to bare's is the per-session cost the sessions/s goal stands for (<= 1.05x).
``--json PATH`` writes the rows for ``make bench``.

Also times pyst2's ``get_result``/``_get_agi_env`` against callflow's ``parse_reply``/
``parse_env_lines`` (why callflow stopped driving pyst2's parser; see dialplan/agi.py).

    .venv/bin/python bench/bench_fastagi.py --sessions 2000 --concurrency 200 --delays 0,20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import statistics
import time
import timeit
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "agi" / "inbound_hangup.jsonl"
REPLIES = {
    "ANSWER": "200 result=0\n",
    "STREAM FILE": "200 result=0 endpos=11360\n",
    "GET VARIABLE": "200 result=1 (13800000000)\n",
    "SET VARIABLE": "200 result=1\n",
    "WAIT FOR DIGIT": "200 result=49\n",
}
ENV_CHECK = "GET FULL VARIABLE "
"""callflow's server sends this once after the environment (dialplan/agi.py
``read_after_env``), answered at once; the bare server has no such check."""


def captured_env() -> bytes:
    """The environment block Asterisk 22 sent in the captured inbound session."""
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines()[1:]]
    env = []
    for event in lines:
        if "asterisk" in event:
            env.append(event["asterisk"])
            if event["asterisk"] == "\n":
                break
    return "".join(env).encode()


# ---- servers (each in its own process) ------------------------------------------------------


async def _callflow_server(ready: Any) -> None:
    from callflow.dialplan.agi import AgiSession
    from callflow.dialplan.server import FastAgiServer

    async def inbound(s: AgiSession) -> None:
        await s.answer()
        await s.stream_file("hello-world")
        await s.get_variable("CALLERID(num)")
        await s.set_variable("CALLFLOW_BENCH", "1")
        await s.wait_for_digit(1000)

    server = FastAgiServer("127.0.0.1", 0, {"inbound": inbound}, max_sessions=10_000)
    await server.start()
    ready.send(server.port)
    await asyncio.Event().wait()


COMMANDS = [b"ANSWER\n", b'STREAM FILE hello-world ""\n', b'GET VARIABLE "CALLERID(num)"\n',
            b"SET VARIABLE CALLFLOW_BENCH 1\n", b"WAIT FOR DIGIT 1000\n"]
"""The five commands as callflow's ``build_command_line`` writes them."""


async def _bare_server(ready: Any) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while (await r.readline()).strip():
                pass
            check = f"GET FULL VARIABLE {secrets.token_hex(8)}\n".encode()
            for command in (check, *COMMANDS):
                w.write(command)
                await w.drain()
                if not (await r.readline()).startswith(b"200"):
                    break
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    ready.send(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


def _pyst2_server(ready: Any) -> None:
    """pyst2's AGI over the socket, a thread per session, the same lines."""
    import socketserver

    import asterisk.agi as pyst2

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            agi = pyst2.AGI.__new__(pyst2.AGI)  # AGI() would install a signal handler
            agi.stdin = self.rfile
            agi.stdout = _TextOut(self.wfile)
            agi.stderr = _Null()
            agi._got_sighup = False
            agi.env = {}
            agi._get_agi_env()
            agi.execute("GET FULL VARIABLE", secrets.token_hex(8))
            agi.execute("ANSWER")
            agi.execute("STREAM FILE", "hello-world", '""')
            agi.execute("GET VARIABLE", '"CALLERID(num)"')
            agi.execute("SET VARIABLE", "CALLFLOW_BENCH", "1")
            agi.execute("WAIT FOR DIGIT", "1000")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    ready.send(server.server_address[1])
    server.serve_forever()


class _TextOut:
    """pyst2 writes str and flushes; the socket file takes bytes."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def write(self, text: str) -> None:
        self.raw.write(text.encode())

    def flush(self) -> None:
        self.raw.flush()


def _serve(kind: str, ready: Any) -> None:
    if kind == "pyst2":
        _pyst2_server(ready)
    else:
        asyncio.run(_callflow_server(ready) if kind == "callflow" else _bare_server(ready))


# ---- fake Asterisks ---------------------------------------------------------------------------


async def one_session(port: int, env: bytes, delay: float,
                      lines: list[bytes]) -> tuple[float, float]:
    """One call as Asterisk would place it: (session seconds, seconds to first command).

    Every line the server wrote goes to ``lines`` (the random word of the check
    replaced by ``*``), so the run can show the servers wrote the same bytes."""
    t0 = time.perf_counter()
    first = 0.0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env)
    commands = 0
    while raw := await reader.readline():
        if not first:
            first = time.perf_counter() - t0
        line = raw.decode()
        if line.startswith(ENV_CHECK):      # the check after the environment
            word = line.removeprefix(ENV_CHECK).strip()
            lines.append(raw.replace(word.encode(), b"*"))
            writer.write(f"200 result=1 ({word})\n".encode())
            continue
        lines.append(raw)
        reply = next(v for k, v in REPLIES.items() if line.startswith(k))
        if delay:
            await asyncio.sleep(delay)
        writer.write(reply.encode())
        commands += 1
    writer.close()
    await writer.wait_closed()
    if commands != len(REPLIES):
        raise RuntimeError(f"session ran {commands} commands")
    return time.perf_counter() - t0, first


async def drive(port: int, sessions: int, concurrency: int, delay: float) -> dict[str, Any]:
    env = captured_env()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    firsts: list[float] = []
    lines: list[bytes] = []

    async def gated(n: int) -> None:
        async with gate:
            took, first = await one_session(port, env, delay, lines if n == 0 else [])
            latencies.append(took)
            firsts.append(first)

    t0 = time.perf_counter()
    await asyncio.gather(*(gated(n) for n in range(sessions)))
    wall = time.perf_counter() - t0
    ordered, first_ordered = sorted(latencies), sorted(firsts)
    p99 = int(len(ordered) * 0.99) - 1
    return {"sess_per_s": sessions / wall, "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[p99] * 1000, "first_p99_ms": first_ordered[p99] * 1000,
            "lines": b"".join(lines)}


def run_kind(kind: str, sessions: int, concurrency: int, delay: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(kind, child), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        asyncio.run(drive(port, min(200, sessions), concurrency, delay))       # warm-up
        cpu0 = _cpu_seconds(proc.pid)
        result = asyncio.run(drive(port, sessions, concurrency, delay))
        result["cpu_us"] = (_cpu_seconds(proc.pid) - cpu0) / sessions * 1e6
        return result
    finally:
        proc.terminate()
        proc.join(5)


def _cpu_seconds(pid: int) -> float:
    """The server process's user + system CPU time (Linux /proc): what a session costs
    the server, which the shared box's load and the saturated driver hardly move."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- parsers ---------------------------------------------------------------------------------


class _Null:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def readline(self) -> str:
        return self.lines.pop(0) + "\n" if self.lines else ""


def parser_micro() -> list[tuple[str, float, float]]:
    """pyst2's get_result/_get_agi_env (signal-free instance) against callflow's parsers."""
    import asterisk.agi as pyst2

    from callflow.dialplan.agi import parse_env_lines, parse_reply

    agi = pyst2.AGI.__new__(pyst2.AGI)          # AGI() itself would install a signal handler
    agi.stdin, agi.stdout, agi.stderr = _Lines(), _Null(), _Null()
    agi._got_sighup = False

    def pyst2_reply(reply: str) -> object:
        agi.stdin.lines = [reply]
        return agi.get_result()

    def pyst2_env(lines: list[str]) -> object:
        agi.stdin.lines = [*lines, ""]
        agi.env = {}
        agi._get_agi_env()
        return agi.env

    rows = []
    for reply in ("200 result=0 endpos=11360", "200 result=1 (13800000000)", "200 result=0"):
        n = 50_000
        theirs = timeit.timeit(lambda r=reply: pyst2_reply(r), number=n) / n * 1e6
        ours = timeit.timeit(lambda r=reply: parse_reply([r]), number=n) / n * 1e6
        rows.append((reply, theirs, ours))
    env_lines = captured_env().decode().splitlines()[:-1]
    n = 5_000
    theirs = timeit.timeit(lambda: pyst2_env(env_lines), number=n) / n * 1e6
    ours = timeit.timeit(lambda: parse_env_lines(env_lines), number=n) / n * 1e6
    rows.append((f"environment block ({len(env_lines)} lines)", theirs, ours))
    return rows


KINDS = ("bare", "callflow", "pyst2")


def measure(args: argparse.Namespace, delay_ms: float) -> dict[str, dict[str, float]]:
    """Alternating rounds of every server at one delay; the medians by server."""
    print(f"{args.sessions} sessions, {args.concurrency} concurrent, 6 lines each, "
          f"reply delay {delay_ms:g} ms, {args.rounds} alternating rounds")
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for n in range(args.rounds):
        for kind in KINDS:
            r = run_kind(kind, args.sessions, args.concurrency, delay_ms / 1000)
            runs[kind].append(r)
            print(f"  round {n + 1} {kind:<9} {r['sess_per_s']:>6.0f} sess/s "
                  f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, "
                  f"first command p99 {r['first_p99_ms']:.1f} ms, "
                  f"server CPU {r['cpu_us']:.0f} us/session", flush=True)
    wrote = {kind: runs[kind][0]["lines"] for kind in KINDS}
    if len(set(wrote.values())) != 1:
        raise SystemExit(f"the servers did not write the same bytes: {wrote!r:.2000}")
    print(f"  every server wrote the same {len(wrote['bare'])} bytes a session "
          f"(the check's random word aside)")
    keys = ("sess_per_s", "p50_ms", "p99_ms", "first_p99_ms", "cpu_us")
    med = {kind: {key: statistics.median(r[key] for r in runs[kind]) for key in keys}
           for kind in KINDS}
    print(f"{'median':<10} {'sessions/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'1st cmd p99':>12}"
          f" {'CPU us/sess':>12}")
    for kind in KINDS:
        m = med[kind]
        print(f"{kind:<10} {m['sess_per_s']:>11.0f} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} "
              f"{m['first_p99_ms']:>12.1f} {m['cpu_us']:>12.0f}")
    return med


def rows_for(delay_ms: float, med: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    ours = med["callflow"]
    where = f"FastAGI, 200 concurrent, {delay_ms:g} ms Asterisk delay"
    rows = []
    for peer, key, unit, goal, better_high, limit in (
            ("bare", "sess_per_s", "sessions/s", ">= 0.95x", True, 0.95),
            ("pyst2", "sess_per_s", "sessions/s", ">= 1.0x", True, 1.0),
            ("bare", "first_p99_ms", "ms p99 to first command", "<= 1.5x", False, 1.5),
            ("bare", "cpu_us", "server CPU us/session", "<= 1.05x", False, 1.05)):
        ratio = ours[key] / med[peer][key]
        rows.append({"figure": f"{where}: {unit}", "ours": round(ours[key], 2),
                     "peer": f"{peer} ({'asyncio' if peer == 'bare' else 'threads'})",
                     "peer_value": round(med[peer][key], 2), "ratio": round(ratio, 3),
                     "unit": unit, "goal": goal,
                     "pass": ratio >= limit if better_high else ratio <= limit})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--delays", default="0,20",
                        help="Asterisk's time per command, ms, comma-separated")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the servers this many times; medians are reported")
    parser.add_argument("--json", type=Path, help="write the rows for make bench here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for delay_ms in (float(d) for d in args.delays.split(",")):
        rows += rows_for(delay_ms, measure(args, delay_ms))
    for row in rows:
        print(f"  {row['figure']}: {row['ratio']:.2f}x {row['peer']} "
              f"(goal {row['goal']}: {'pass' if row['pass'] else 'FAIL'})")
    print(f"\n{'parsing':<40} {'pyst2 us':>9} {'callflow us':>12}")
    for what, pyst2_us, own_us in parser_micro():
        print(f"{what:<40} {pyst2_us:>9.1f} {own_us:>12.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
