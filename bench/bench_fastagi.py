"""FastAGI throughput: callflow's server against a bare asyncio server doing the same.

Each server runs in its own process (one core each on a 2-core box); this process runs
N concurrent fake Asterisks over TCP. A session is a real environment block (captured
from Asterisk 22) and five commands: ANSWER, STREAM FILE, GET VARIABLE, SET VARIABLE,
WAIT FOR DIGIT, each answered after ``--delay-ms`` (0 = at once; real prompts take
seconds). Latency is per session, from connect to the server's close.

Also times pyst2's ``get_result``/``_get_agi_env`` against callflow's ``parse_reply``/
``parse_env_lines`` (why callflow stopped driving pyst2's parser; see dialplan/agi.py).

    .venv/bin/python bench/bench_fastagi.py --sessions 2000 --concurrency 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
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


async def _bare_server(ready: Any) -> None:
    commands = [b"ANSWER\n", b'STREAM FILE hello-world ""\n', b'GET VARIABLE "CALLERID(num)"\n',
                b"SET VARIABLE CALLFLOW_BENCH 1\n", b"WAIT FOR DIGIT 1000\n"]

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while (await r.readline()).strip():
                pass
            for command in commands:
                w.write(command)
                await w.drain()
                if not (await r.readline()).startswith(b"200"):
                    break
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    ready.send(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


def _serve(kind: str, ready: Any) -> None:
    asyncio.run(_callflow_server(ready) if kind == "callflow" else _bare_server(ready))


# ---- fake Asterisks ---------------------------------------------------------------------------


async def one_session(port: int, env: bytes, delay: float) -> float:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env)
    commands = 0
    while line := (await reader.readline()).decode():
        if line.startswith(ENV_CHECK):      # callflow's check after the environment
            writer.write(f"200 result=1 ({line.removeprefix(ENV_CHECK).strip()})\n".encode())
            continue
        reply = next(v for k, v in REPLIES.items() if line.startswith(k))
        if delay:
            await asyncio.sleep(delay)
        writer.write(reply.encode())
        commands += 1
    writer.close()
    await writer.wait_closed()
    if commands != len(REPLIES):
        raise RuntimeError(f"session ran {commands} commands")
    return time.perf_counter() - t0


async def drive(port: int, sessions: int, concurrency: int, delay: float) -> dict[str, float]:
    env = captured_env()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def gated() -> None:
        async with gate:
            latencies.append(await one_session(port, env, delay))

    t0 = time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(sessions)))
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)
    return {"sess_per_s": sessions / wall, "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000}


def run_kind(kind: str, sessions: int, concurrency: int, delay: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(kind, child), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        asyncio.run(drive(port, min(200, sessions), concurrency, delay))       # warm-up
        return asyncio.run(drive(port, sessions, concurrency, delay))
    finally:
        proc.terminate()
        proc.join(5)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the servers this many times; medians are reported")
    args = parser.parse_args()
    print(f"{args.sessions} sessions, {args.concurrency} concurrent, 5 commands each, "
          f"reply delay {args.delay_ms:g} ms, {args.rounds} alternating rounds")
    kinds = ("bare", "callflow")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for n in range(args.rounds):
        for kind in kinds:
            r = run_kind(kind, args.sessions, args.concurrency, args.delay_ms / 1000)
            runs[kind].append(r)
            print(f"  round {n + 1} {kind:<9} {r['sess_per_s']:>6.0f} sess/s "
                  f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms", flush=True)
    print(f"{'median':<10} {'sessions/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
    med = {kind: {key: statistics.median(r[key] for r in runs[kind]) for key in runs[kind][0]}
           for kind in kinds}
    for kind in kinds:
        m = med[kind]
        print(f"{kind:<10} {m['sess_per_s']:>11.0f} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f}")
    ratio = med["callflow"]["sess_per_s"] / med["bare"]["sess_per_s"]
    print(f"callflow / bare throughput: {ratio:.2f}")
    print(f"\n{'parsing':<40} {'pyst2 us':>9} {'callflow us':>12}")
    for what, pyst2_us, own_us in parser_micro():
        print(f"{what:<40} {pyst2_us:>9.1f} {own_us:>12.1f}")


if __name__ == "__main__":
    main()
