"""The FastAGI server against the real Asterisk: a SIPp caller dials in, the product's
dialplan runs ``AGI(agi://127.0.0.1:<agi port>/inbound,${EXTEN})``, and falls back to
``Queue()`` when AGISTATUS is FAILURE (STD-001: an engine outage never drops a call).

A recording proxy sits between Asterisk and the server, so each test can also check
what crossed the wire (the facts ``callflow.dialplan.agi`` is built on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from callflow.dialplan.agi import AgiSession
from callflow.dialplan.server import FastAgiServer
from callflow.errors import CallerHungUp

pytestmark = pytest.mark.integration

DID = "8000"
CALLER_ID = "13800000000"
Body = Callable[[AgiSession, list[Any]], Awaitable[None]]


class Route:
    """A route body plus a record of what it saw and raised."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.seen: list[Any] = []
        self.raised: list[BaseException] = []
        self.sessions: list[AgiSession] = []
        self.entered = asyncio.Event()
        self.done = asyncio.Event()

    async def __call__(self, session: AgiSession) -> None:
        self.sessions.append(session)
        self.entered.set()
        try:
            await self.body(session, self.seen)
        except BaseException as exc:
            self.raised.append(exc)
            raise
        finally:
            self.done.set()


class WireRecorder:
    """TCP proxy on the dialplan's AGI port that records every line, in arrival order."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.target_port = 0
        self._server: asyncio.Server | None = None

    async def start(self, port: int, target_port: int) -> None:
        self.target_port = target_port
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, ast_r: asyncio.StreamReader, ast_w: asyncio.StreamWriter) -> None:
        srv_r, srv_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, side: str) -> None:
            try:
                while (line := await src.readline()) and not dst.is_closing():
                    self.lines.append((side, line.decode(errors="replace")))
                    dst.write(line)
            finally:
                dst.close()

        await asyncio.gather(pump(ast_r, srv_w, "asterisk"), pump(srv_r, ast_w, "server"),
                             return_exceptions=True)

    def after(self, side: str, line: str) -> list[tuple[str, str]]:
        """The lines that followed the first ``line`` sent by ``side``."""
        index = self.lines.index((side, line))
        return self.lines[index + 1:]


@pytest.fixture
async def fastagi(asterisk: Any) -> AsyncIterator[Callable[..., Awaitable[tuple[FastAgiServer,
                                                                             WireRecorder]]]]:
    started: list[tuple[FastAgiServer, WireRecorder]] = []

    async def start(routes: dict[str, Any], **kw: Any) -> tuple[FastAgiServer, WireRecorder]:
        server = FastAgiServer("127.0.0.1", 0, routes, **kw)
        await server.start()
        wire = WireRecorder()
        await wire.start(asterisk.ports.agi, server.port)
        started.append((server, wire))
        return server, wire

    yield start
    for server, wire in started:
        await wire.stop()
        await server.stop()


async def wait_event(asterisk: Any, name: str, timeout: float, since: float,
                     **match: str) -> dict[str, Any]:
    """The tap blocks on a condition: keep the event loop (and the server) running."""
    event: dict[str, Any] = await asyncio.to_thread(asterisk.tap.wait_event, name, timeout,
                                                    since, **match)
    return event


async def test_call_reaches_route_and_caller_hangup_raises_once(asterisk: Any, sipp: Any,
                                                                fastagi: Any) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        seen.append(await s.stream_file("hello-world"))
        seen.append(await s.get_variable("CALLERID(num)"))
        await s.set_variable("CALLFLOW_NOTE", 'say "hi" \\ bye')
        try:
            while True:
                await s.wait_for_digit(500)
        except CallerHungUp:
            seen.append("hung up")
            seen.append(await s.get_variable("CALLFLOW_NOTE"))     # dead channel: still served
            raise

    route = Route(body)
    server, wire = await fastagi({"inbound": route})
    since = time.monotonic()
    caller = sipp.caller(DID, "uac_call.xml", caller_id=CALLER_ID, talk_ms=4000)
    async with asyncio.timeout(20):
        await route.done.wait()
    assert route.seen == ["", CALLER_ID, "hung up", 'say "hi" \\ bye']
    assert [type(e) for e in route.raised] == [CallerHungUp]
    session = route.sessions[0]
    assert (session.script, session.argv) == ("inbound", (DID,))
    await wait_event(asterisk, "VarSet", 5, since, Uniqueid=session.uniqueid,
                     Variable="AGISTATUS", Value="HANGUP")
    assert await asyncio.to_thread(caller.wait, 10) == 0
    stats = server.stats
    assert (stats["hangups"], stats["active"], stats["errors"]) == (1, 0, 0)
    # on the wire: Asterisk announced the hang-up, the probe got 511, nothing else was sent
    assert ("asterisk", "HANGUP\n") in wire.lines
    after = wire.after("asterisk", "HANGUP\n")
    assert after[0] == ("asterisk", "511 Command Not Permitted on a dead channel or intercept "
                                    "routine\n")
    assert [line for side, line in after if side == "server"] == [
        "GET VARIABLE CALLFLOW_NOTE\n"]


async def test_route_that_marks_the_call_done_leaves_agistatus_success(
        asterisk: Any, sipp: Any, fastagi: Any) -> None:
    async def handled(session: AgiSession, seen: list[Any]) -> None:
        await session.answer()
        await session.set_variable("CALLFLOW_DONE", "1")

    route = Route(handled)
    server, _ = await fastagi({"inbound": route})
    since = time.monotonic()
    caller = sipp.caller(DID, "uac_wait_bye.xml", talk_ms=0)
    async with asyncio.timeout(10):
        await route.done.wait()
    await wait_event(asterisk, "VarSet", 5, since, Uniqueid=route.sessions[0].uniqueid,
                     Variable="AGISTATUS", Value="SUCCESS")
    assert await asyncio.to_thread(caller.wait, 10) == 0      # the dialplan hung up
    assert server.stats["completed"] == 1


async def test_route_that_returns_without_marking_done_falls_back(
        asterisk: Any, sipp: Any, fastagi: Any) -> None:
    """A flow that returned without saying it handled the call (a bug, an engine stopping
    between commands) must not drop the caller: the dialplan queues them."""
    route = Route(lambda s, seen: s.answer())
    await fastagi({"inbound": route})
    since = time.monotonic()
    sipp.caller(DID, "uac_wait_bye.xml", talk_ms=0)
    await wait_event(asterisk, "VarSet", 5, since, Variable="AGISTATUS", Value="SUCCESS")
    await wait_event(asterisk, "QueueCallerJoin", 5, since)


async def _expect_fallback(asterisk: Any, sipp: Any, since: float) -> None:
    await wait_event(asterisk, "VarSet", 10, since, Variable="CALLFLOW_FALLBACK",
                     Value="FAILURE")
    await wait_event(asterisk, "QueueCallerJoin", 5, since)


async def test_no_server_falls_back_to_the_queue(asterisk: Any, sipp: Any) -> None:
    since = time.monotonic()
    sipp.caller(DID, "uac_call.xml", talk_ms=3000)
    await _expect_fallback(asterisk, sipp, since)


async def _crash(s: AgiSession, seen: list[Any]) -> None:
    await s.answer()
    raise RuntimeError("engine bug")


@pytest.mark.parametrize(("routes", "counter"), [
    ({"inbound": Route(_crash)}, "errors"),
    ({"outbound": Route(_crash)}, "unknown_routes"),
], ids=["route-crash", "unknown-script"])
async def test_failures_fall_back_to_the_queue(asterisk: Any, sipp: Any, fastagi: Any,
                                               routes: dict[str, Route], counter: str) -> None:
    server, wire = await fastagi(routes)
    since = time.monotonic()
    sipp.caller(DID, "uac_call.xml", talk_ms=3000)
    await _expect_fallback(asterisk, sipp, since)
    assert server.stats[counter] == 1
    assert ("server", "FAILURE\n") in wire.lines


async def test_stopping_the_server_mid_call_falls_back(asterisk: Any, sipp: Any,
                                                       fastagi: Any) -> None:
    """WAIT FOR DIGIT is interrupted by the FAILURE line; the caller lands in the queue."""
    route = Route(lambda s, seen: s.wait_for_digit(-1, timeout=None))
    server, _ = await fastagi({"inbound": route})
    since = time.monotonic()
    sipp.caller(DID, "uac_call.xml", talk_ms=5000)
    async with asyncio.timeout(10):
        await route.entered.wait()
    await asyncio.sleep(0.5)
    await server.stop()
    await _expect_fallback(asterisk, sipp, since)
    assert [type(e) for e in route.raised] == [asyncio.CancelledError]


async def test_over_capacity_call_falls_back(asterisk: Any, sipp: Any, fastagi: Any) -> None:
    route = Route(lambda s, seen: s.wait_for_digit(-1, timeout=None))
    server, _ = await fastagi({"inbound": route}, max_sessions=1)
    sipp.caller(DID, "uac_call.xml", talk_ms=5000)
    async with asyncio.timeout(10):
        await route.entered.wait()
    since = time.monotonic()
    sipp.caller(DID, "uac_call.xml", talk_ms=3000)
    await _expect_fallback(asterisk, sipp, since)
    assert (server.stats["rejected"], server.stats["sessions"]) == (1, 1)
