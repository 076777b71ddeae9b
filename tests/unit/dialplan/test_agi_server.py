"""The FastAGI server and sessions over real TCP, against a fake Asterisk.

The fake is a real TCP client that plays Asterisk's side line by line: the environment
block, then a scripted reply to each command it expects. Odd and broken peers (garbage,
EOF in the middle of things, floods) are scripted the same way, and the sessions that
the real Asterisk 22 produced (tests/fixtures/agi/*.jsonl) are replayed byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from agi_peer import answer_env_check, check_reply

from callflow.dialplan import agi as agi_module
from callflow.dialplan.agi import AgiSession
from callflow.dialplan.server import FastAgiServer
from callflow.errors import (
    AgiArgumentError,
    AgiCommandError,
    AgiCommandTimeout,
    AgiProtocolError,
    CallerHungUp,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "agi"
STEP_TIMEOUT = 3.0


def env_lines(script: str = "inbound", **extra: str) -> list[str]:
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:4573/{script}",
        "agi_channel": "PJSIP/caller-00000007",
        "agi_uniqueid": "1795737291.7",
        "agi_callerid": "13800000000",
        "agi_calleridname": "caller",
        "agi_extension": "100",
        **extra,
    }
    return [f"{k}: {v}" for k, v in env.items()]


class FakeAsterisk:
    """Asterisk's side of one FastAGI connection."""

    opened: ClassVar[list[FakeAsterisk]] = []       # closed by the ``serve`` fixture

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        FakeAsterisk.opened.append(self)

    @classmethod
    async def connect(cls, port: int) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @classmethod
    async def call(cls, port: int, script: str = "inbound", *, check: bool = True,
                   **env: str) -> FakeAsterisk:
        """Connect and send an environment; with ``check``, answer the server's check
        that nothing followed it (``agi_peer``)."""
        fake = await cls.connect(port)
        await fake.send(*env_lines(script, **env), "")
        if check:
            await answer_env_check(fake.reader, fake.writer)
        return fake

    async def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\n" for line in lines).encode())
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_line(self) -> str:
        async with asyncio.timeout(STEP_TIMEOUT):
            raw = await self.reader.readline()
        assert raw.endswith(b"\n"), f"server closed instead of sending a line (got {raw!r})"
        return raw.decode().rstrip("\n")

    async def expect(self, command: str, *reply: str) -> None:
        """The server's next line must be ``command``; answer it with ``reply``."""
        assert await self.read_line() == command
        if reply:
            await self.send(*reply)

    async def rest(self) -> bytes:
        """Everything the server still sends until it closes (e.g. b"FAILURE\\n")."""
        async with asyncio.timeout(STEP_TIMEOUT):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


class Flow:
    """A route whose body a test supplies; records what the body saw and how it ended."""

    def __init__(self, body: Callable[[AgiSession, list[Any]], Awaitable[None]]) -> None:
        self.body = body
        self.seen: list[Any] = []
        self.raised: list[BaseException] = []
        self.sessions: list[AgiSession] = []
        self.done = asyncio.Event()

    async def __call__(self, session: AgiSession) -> None:
        self.sessions.append(session)
        try:
            await self.body(session, self.seen)
        except BaseException as exc:
            self.raised.append(exc)
            raise
        finally:
            self.done.set()

    async def finished(self) -> None:
        async with asyncio.timeout(STEP_TIMEOUT):
            await self.done.wait()


Serve = Callable[..., Awaitable[FastAgiServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[FastAgiServer] = []

    async def start(routes: dict[str, Any], **kw: Any) -> FastAgiServer:
        server = FastAgiServer("127.0.0.1", 0, routes, **kw)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    while FakeAsterisk.opened:
        fake = FakeAsterisk.opened.pop()
        fake.close()
        await fake.writer.wait_closed()


async def settled(server: FastAgiServer) -> dict[str, int]:
    """The stats once no session is active any more."""
    async with asyncio.timeout(STEP_TIMEOUT):
        while server.stats["active"]:
            await asyncio.sleep(0.005)
    return server.stats


# ---- environment and routing ------------------------------------------------------------


async def test_env_script_query_args_and_positional_args(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.extend([s.script, dict(s.args), s.argv, s.channel, s.uniqueid, s.env["agi_extension"]])

    flow = Flow(body)
    server = await serve({"ivr/main": flow})
    fake = await FakeAsterisk.call(server.port, "ivr/main?lang=en&x=", agi_arg_1="100",
                                   agi_arg_2="first arg")
    assert await fake.rest() == b""
    await flow.finished()
    assert flow.seen == ["ivr/main", {"lang": "en", "x": ""}, ("100", "first arg"),
                         "PJSIP/caller-00000007", "1795737291.7", "100"]
    assert (await settled(server))["completed"] == 1


async def test_unknown_script_answers_failure(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    server = await serve({"inbound": Flow(lambda s, seen: asyncio.sleep(0))})
    fake = await FakeAsterisk.call(server.port, "nosuchroute")
    assert await fake.rest() == b"FAILURE\n"
    stats = await settled(server)
    assert (stats["unknown_routes"], stats["sessions"]) == (1, 0)
    assert "no route for script 'nosuchroute'" in caplog.text
    assert "PJSIP/caller-00000007" in caplog.text


# ---- quoting and arguments --------------------------------------------------------------


async def test_caller_id_with_quote_and_backslash_is_escaped(serve: Serve) -> None:
    name = 'Q"uo\\te'

    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.set_variable("COPY", s.env["agi_calleridname"])
        seen.append(await s.get_variable("COPY"))

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port, agi_calleridname=name)
    await fake.expect('SET VARIABLE COPY "Q\\"uo\\\\te"', "200 result=1")
    await fake.expect("GET VARIABLE COPY", f"200 result=1 ({name})")
    await flow.finished()
    assert flow.seen == [name]


async def test_cr_lf_argument_rejected_before_anything_is_sent(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        for bad in ("x\nANSWER", "x\r"):
            with pytest.raises(AgiArgumentError):
                await s.set_variable("A", bad)
        with pytest.raises(AgiArgumentError):
            await s.exec("Dial", "PJSIP/a\nHANGUP")
        with pytest.raises(AgiArgumentError):
            await s.exec("Dial", "PJSIP/a,1")
        await s.verbose("still fine")

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect('VERBOSE "still fine" 1', "200 result=1")   # the first line we get
    await flow.finished()
    assert flow.raised == []


async def test_exec_joins_arguments_and_reports_a_missing_application(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(await s.exec("Dial", "PJSIP/agent1001", "15", "A(:hello)"))
        with pytest.raises(AgiCommandError, match="no such application"):
            await s.exec("NoSuchApp")

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect('EXEC Dial "PJSIP/agent1001,15,A(:hello)"', "200 result=0")
    await fake.expect('EXEC NoSuchApp ""', "200 result=-2")
    await flow.finished()
    assert flow.seen == ["0"]


# ---- replies -----------------------------------------------------------------------------


async def test_reply_shapes(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(await s.stream_file("menu", "12"))
        seen.append(await s.command("STREAM", "FILE", "hello-world", ""))
        seen.append(await s.get_data("beep", 3000, 4))
        seen.append(await s.command("GET", "DATA", "beep", "100", "2"))
        seen.append(await s.wait_for_digit(1000))
        seen.append(await s.get_variable("NOSUCHVAR"))
        seen.append(await s.get_variable("EMPTY"))

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("STREAM FILE menu 12", "200 result=49 endpos=8640")
    await fake.expect('STREAM FILE hello-world ""', "200 result=0 endpos=11360")
    await fake.expect("GET DATA beep 3000 4", "200 result=123 (timeout)")
    await fake.expect("GET DATA beep 100 2", "200 result= (timeout)")
    await fake.expect("WAIT FOR DIGIT 1000", "200 result=0")
    await fake.expect("GET VARIABLE NOSUCHVAR", "200 result=0")
    await fake.expect("GET VARIABLE EMPTY", "200 result=1 ()")
    await flow.finished()
    assert flow.raised == []
    one, played, digits, timed_out, no_digit, unset, empty = flow.seen
    assert (one, digits, no_digit, unset, empty) == ("1", "123", "", None, "")
    assert (played.code, played.result, played.extra) == (200, "0", {"endpos": "11360"})
    assert (timed_out.result, timed_out.data) == ("", "timeout")


async def test_100_trying_is_consumed_and_the_stream_stays_in_step(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append((await s.command("GOSUB", "sub", "s", "1")).result)
        seen.append(await s.get_variable("GOSUB_RETVAL"))

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GOSUB sub s 1", "100 result=0 Trying...")
    await asyncio.sleep(0.05)
    await fake.send("200 result=0 Gosub complete")
    await fake.expect("GET VARIABLE GOSUB_RETVAL", "200 result=1 (fromsub)")
    await flow.finished()
    assert flow.seen == ["0", "fromsub"]


async def test_510_and_520_are_command_errors_and_the_session_goes_on(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        for words in (("FOO", "BAR"), ("STREAM", "FILE"), ("SAY", "NUMBER")):
            with pytest.raises(AgiCommandError) as info:
                await s.command(*words)
            seen.append(str(info.value))
        await s.answer()

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("FOO BAR", "510 Invalid or unknown command")
    await fake.expect("STREAM FILE", "520-Invalid command syntax.  Proper usage follows:",
                      "Send the given file.", "", "  more usage", "520 End of proper usage.")
    await fake.expect("SAY NUMBER", "520 Invalid command syntax.  Proper usage not available.")
    await fake.expect("ANSWER", "200 result=0")
    await flow.finished()
    assert flow.raised == []
    invalid, usage, short_usage = flow.seen
    assert "510" in invalid
    assert "520" in usage and "Send the given file." in usage
    assert "Proper usage not available" in short_usage


async def test_eof_inside_a_520_block_is_a_hangup_not_a_hang(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.command("STREAM", "FILE")

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("STREAM FILE", "520-Invalid command syntax.  Proper usage follows:",
                      "Send the given file, allowing playback")
    fake.close()
    await flow.finished()
    assert [type(e) for e in flow.raised] == [CallerHungUp]
    assert (await settled(server))["hangups"] == 1


async def test_endless_520_block_is_a_protocol_error(serve: Serve) -> None:
    flow = Flow(lambda s, seen: s.command("STREAM", "FILE"))
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("STREAM FILE", "520-Invalid command syntax.",
                      *["usage"] * (agi_module.MAX_USAGE_LINES + 1))
    await flow.finished()
    assert [type(e) for e in flow.raised] == [AgiProtocolError]
    assert await fake.rest() == b"FAILURE\n"


# ---- hang-ups ----------------------------------------------------------------------------


async def test_hangup_line_then_only_dead_channel_commands_reach_asterisk(serve: Serve) -> None:
    caller_gone = asyncio.Event()

    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        await caller_gone.wait()
        assert await s.wait_hangup(STEP_TIMEOUT)
        seen.append(s.hung_up)
        try:
            await s.stream_file("hello-world")
        except CallerHungUp:
            seen.append("hung up")
            seen.append(await s.get_variable("DIALSTATUS"))
            await s.verbose("after hangup")
            raise

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "200 result=0")
    await fake.send("HANGUP")
    caller_gone.set()
    await fake.expect("GET VARIABLE DIALSTATUS", "200 result=1 (NOANSWER)")
    await fake.expect('VERBOSE "after hangup" 1', "200 result=1")
    assert await fake.rest() == b""                     # no FAILURE: the caller is gone
    await flow.finished()
    assert flow.seen == [True, "hung up", "NOANSWER"]
    assert [type(e) for e in flow.raised] == [CallerHungUp]
    assert (await settled(server))["hangups"] == 1


async def test_result_minus_one_then_hangup_is_one_callerhungup(serve: Serve) -> None:
    """As Asterisk 22 does it: -1, our probe, HANGUP, 511 (fixture inbound_hangup)."""
    flow = Flow(lambda s, seen: s.wait_for_digit(-1))
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("WAIT FOR DIGIT -1", "200 result=-1")
    await fake.expect("CHANNEL STATUS", "HANGUP",
                      "511 Command Not Permitted on a dead channel or intercept routine")
    assert await fake.rest() == b""
    await flow.finished()
    assert [type(e) for e in flow.raised] == [CallerHungUp]


async def test_result_minus_one_on_a_live_channel_is_a_command_error(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        with pytest.raises(AgiCommandError, match="result=-1") as info:
            await s.stream_file("no-such-file")
        assert not isinstance(info.value, CallerHungUp)
        seen.append(s.hung_up)
        await s.answer()

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect('STREAM FILE no-such-file ""', "200 result=-1 endpos=0")
    await fake.expect("CHANNEL STATUS", "200 result=6")
    await fake.expect("ANSWER", "200 result=0")
    await flow.finished()
    assert flow.seen == [False]
    assert flow.raised == []


async def test_511_is_a_hangup(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        with pytest.raises(CallerHungUp):
            await s.answer()
        seen.append(s.hung_up)
        with pytest.raises(CallerHungUp):
            await s.wait_for_digit(10)                 # refused without a round trip
        seen.append(await s.get_variable("ANSWEREDTIME"))

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "511 Command Not Permitted on a dead channel")
    await fake.expect("GET VARIABLE ANSWEREDTIME", "200 result=1 (12)")
    await flow.finished()
    assert flow.seen == [True, "12"]


async def test_eof_mid_command_is_a_hangup(serve: Serve) -> None:
    flow = Flow(lambda s, seen: s.exec("Dial", "PJSIP/agent1001", "15"))
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect('EXEC Dial "PJSIP/agent1001,15"')
    fake.close()
    await flow.finished()
    assert [type(e) for e in flow.raised] == [CallerHungUp]
    stats = await settled(server)
    assert (stats["hangups"], stats["errors"]) == (1, 0)


async def test_eof_mid_line_is_a_hangup(serve: Serve) -> None:
    flow = Flow(lambda s, seen: s.answer())
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER")
    await fake.send_raw(b"200 res")
    fake.close()
    await flow.finished()
    assert [type(e) for e in flow.raised] == [CallerHungUp]


# ---- garbage -----------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [
    b"\xff\xfe\x00binary\n",
    b"hello there\n",
    b"2000 result=0\n",
    b"200" + b"0" * agi_module.MAX_LINE_BYTES + b"\n",
])
async def test_garbage_reply_is_a_protocol_error_and_the_server_carries_on(
        serve: Serve, garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    flow = Flow(lambda s, seen: s.answer())
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER")
    await fake.send_raw(garbage)
    await flow.finished()
    assert [type(e) for e in flow.raised] == [AgiProtocolError]
    assert await fake.rest() == b"FAILURE\n"
    assert "PJSIP/caller-00000007" in caplog.text
    assert (await settled(server))["protocol_errors"] == 1
    # the server is unaffected: the next call works
    healthy = await FakeAsterisk.call(server.port)
    await healthy.expect("ANSWER", "200 result=0")
    assert await healthy.rest() == b""


async def test_unsolicited_reply_is_a_protocol_error(serve: Serve) -> None:
    started = asyncio.Event()

    async def body(s: AgiSession, seen: list[Any]) -> None:
        started.set()
        await asyncio.sleep(0.2)
        await s.answer()

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await started.wait()
    await fake.send("200 result=0")
    await flow.finished()
    assert [type(e) for e in flow.raised] == [AgiProtocolError]


@pytest.mark.parametrize("env", [
    b"agi_network: yes\nagi_x: " + b"y" * agi_module.MAX_LINE_BYTES + b"\n\n",   # huge line
    b"".join(b"agi_x%d: 1\n" % i for i in range(agi_module.MAX_ENV_LINES + 1)) + b"\n",
    b"agi_network: yes\nagi_channel: PJSIP/x\n",                         # EOF, no blank line
])
async def test_garbage_environment_is_refused(serve: Serve, env: bytes) -> None:
    flow = Flow(lambda s, seen: s.answer())
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.connect(server.port)
    await fake.send_raw(env)
    fake.writer.write_eof()
    assert await fake.rest() in (b"FAILURE\n", b"")
    stats = await settled(server)
    assert (stats["protocol_errors"], stats["sessions"]) == (1, 0)
    assert flow.sessions == []


INJECTED = {      # what Asterisk 22 writes for a caller number holding %0d%0a or %0a%0a
    "repeated key": "13800000000\r\nagi_network_script: feature\r\nagi_arg_2: agent1001",
    "unknown key": "139\nagi_evil: 1",
    "bytes after the blank line": "139\n\n200 result=1 (1795737291.7)",
    "not an agi line": "139\nGET / HTTP/1.1",
}
IDENTITY = {"UNIQUEID": "1795737291.7", "CHANNEL": "PJSIP/caller-00000007",
            "CONTEXT": "callflow-inbound"}


async def refused_call(port: int, callerid: bytes, context: str) -> FakeAsterisk:
    """A call whose environment carries ``callerid`` raw; Asterisk answers the check and
    the identity the server then asks for."""
    fake = await FakeAsterisk.connect(port)
    await fake.send_raw(b"".join(line.encode() + b"\n" for line in env_lines()).replace(
        b"agi_callerid: 13800000000", b"agi_callerid: " + callerid) + b"\n")
    await fake.send(check_reply(await fake.read_line()).rstrip("\n"))
    for name, value in {**IDENTITY, "CONTEXT": context}.items():
        await fake.expect(f"GET VARIABLE {name}", f"200 result=1 ({value})")
    return fake


@pytest.mark.parametrize("callerid", [
    *(value.encode() for value in INJECTED.values()),
    b"13800000000\xff\xfe",                                            # not UTF-8
], ids=[*INJECTED, "not utf-8"])
async def test_a_refused_environment_gets_only_asterisks_word_and_its_contexts_route(
        serve: Serve, caplog: pytest.LogCaptureFixture, callerid: bytes) -> None:
    """Issue 15: a caller's value carrying newlines never picks the route, the arguments
    or the caller number; the call is still handled (the inbound flow, as an unknown
    caller), and the log line says why without the caller's line breaks."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.extend([s.refused, dict(s.env), s.script, s.argv])

    inbound, feature = Flow(body), Flow(body)
    server = await serve({"inbound": inbound, "feature": feature},
                         refused_routes={"callflow-inbound": "inbound"})
    fake = await refused_call(server.port, callerid, "callflow-inbound")
    assert await fake.rest() == b""
    await inbound.finished()
    reason, env, script, argv = inbound.seen
    assert env == {"agi_uniqueid": "1795737291.7", "agi_channel": "PJSIP/caller-00000007",
                   "agi_context": "callflow-inbound"}
    assert (script, argv, feature.sessions) == ("", (), [])
    assert reason and "\n" not in reason and "\r" not in reason
    stats = await settled(server)
    assert (stats["refused_envs"], stats["completed"], stats["protocol_errors"]) == (1, 1, 0)
    logged = [r.getMessage() for r in caplog.records if "environment refused" in r.getMessage()]
    assert len(logged) == 1 and "\n" not in logged[0] and "\r" not in logged[0]


async def test_a_refused_environment_in_a_context_with_no_refused_route_falls_back(
        serve: Serve) -> None:
    """An agent's channel (context ``agents``) with a refused environment: no feature
    code is applied; FAILURE lets the dialplan say the feature is unavailable."""
    feature = Flow(lambda s, seen: s.answer())
    server = await serve({"feature": feature}, refused_routes={"callflow-inbound": "inbound"})
    fake = await refused_call(server.port, INJECTED["repeated key"].encode(), "agents")
    assert await fake.rest() == b"FAILURE\n"
    stats = await settled(server)
    assert (stats["refused_envs"], stats["sessions"], feature.sessions) == (1, 0, [])


async def test_a_reply_forged_after_the_environment_cannot_pass_for_the_check(
        serve: Serve) -> None:
    """Bytes after the blank line that look like the check's reply are still bytes after
    the blank line: only Asterisk's echo of the server's random word ends them."""
    fake_word = "200 result=1 (0123456789abcdef)"

    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(s.refused)

    flow = Flow(body)
    server = await serve({"inbound": flow}, refused_routes={"callflow-inbound": "inbound"})
    fake = await refused_call(server.port, f"139\n\n{fake_word}".encode(),
                              "callflow-inbound")
    assert await fake.rest() == b""
    assert "after the environment's blank line" in flow.seen[0]
    assert fake_word in flow.seen[0]


async def test_a_hangup_before_the_check_reply_is_remembered(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append((s.hung_up, s.refused))

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port, check=False)
    line = await fake.read_line()
    await fake.send("HANGUP", check_reply(line).rstrip("\n"))
    assert await fake.rest() == b""
    assert flow.seen == [(True, None)]


async def test_silent_peer_times_out_in_the_environment(serve: Serve) -> None:
    server = await serve({"inbound": Flow(lambda s, seen: s.answer())}, env_timeout=0.2)
    fake = await FakeAsterisk.connect(server.port)
    await fake.send("agi_network: yes")
    assert await fake.rest() == b"FAILURE\n"
    assert (await settled(server))["protocol_errors"] == 1


# ---- timeouts, crashes, capacity, stop ----------------------------------------------------


async def test_command_timeout_ends_the_session_with_failure(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(await s.exec("Wait", "0.3"))             # no timeout by default
        try:
            await s.answer()
        except AgiCommandTimeout:
            await asyncio.sleep(0.3)                         # the late reply arrives meanwhile
            with pytest.raises(AgiCommandTimeout):
                await s.answer()                             # the session stays unusable
            raise

    flow = Flow(body)
    server = await serve({"inbound": flow}, command_timeout=0.1)
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("EXEC Wait 0.3")
    await asyncio.sleep(0.3)
    await fake.send("200 result=0")
    await fake.expect("ANSWER")                               # answered too late
    await asyncio.sleep(0.15)
    await fake.send("200 result=0")
    assert await fake.rest() == b"FAILURE\n"
    await flow.finished()
    assert flow.seen == ["0"]
    assert [type(e) for e in flow.raised] == [AgiCommandTimeout]
    stats = await settled(server)
    assert (stats["timeouts"], stats["protocol_errors"]) == (1, 0)
    assert "protocol error" not in caplog.text


async def test_route_crash_is_logged_with_the_channel_and_falls_back(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        raise RuntimeError("engine bug")

    server = await serve({"inbound": Flow(body)})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "200 result=0")
    assert await fake.rest() == b"FAILURE\n"
    assert (await settled(server))["errors"] == 1
    crash = next(r for r in caplog.records if r.exc_info)
    assert crash.levelno == logging.ERROR
    assert "PJSIP/caller-00000007" in crash.getMessage()
    assert "1795737291.7" in crash.getMessage()


async def test_over_capacity_calls_are_refused_at_once(serve: Serve) -> None:
    release = asyncio.Event()

    async def body(s: AgiSession, seen: list[Any]) -> None:
        await release.wait()

    server = await serve({"inbound": Flow(body)}, max_sessions=3)
    held = [await FakeAsterisk.call(server.port) for _ in range(3)]
    async with asyncio.timeout(STEP_TIMEOUT):
        while server.stats["active"] < 3:
            await asyncio.sleep(0.005)
    refused = await FakeAsterisk.call(server.port, check=False)
    await asyncio.sleep(0.05)                 # a reset (env left unread) would overtake
    assert await refused.rest() == b"FAILURE\n"          # the FAILURE line here
    assert (server.stats["rejected"], server.stats["active"]) == (1, 3)
    release.set()
    for fake in held:
        assert await fake.rest() == b""
    stats = await settled(server)
    assert (stats["max_active"], stats["completed"]) == (3, 3)
    late = await FakeAsterisk.call(server.port)                  # capacity is back
    assert await late.rest() == b""


async def test_stop_sends_failure_to_live_calls_and_frees_the_port(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """Asterisk 22 interrupts WAIT FOR DIGIT / STREAM FILE on it and falls back (live test)."""
    flow = Flow(lambda s, seen: s.wait_for_digit(-1, timeout=None))
    server = await serve({"inbound": flow})
    port = server.port
    fake = await FakeAsterisk.call(port)
    await fake.expect("WAIT FOR DIGIT -1")
    await server.stop()
    assert await fake.rest() == b"FAILURE\n"
    assert [type(e) for e in flow.raised] == [asyncio.CancelledError]
    assert not [r for r in caplog.records if r.name == "asyncio"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_session_commands_are_serialised(serve: Serve) -> None:
    """Asterisk loses a command written before the previous reply: never pipeline."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.extend(await asyncio.gather(s.get_variable("A"), s.get_variable("B")))

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    first = await fake.read_line()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await fake.reader.readline()                      # nothing while A is pending
    await fake.send("200 result=1 (a)")
    second = await fake.read_line()
    await fake.send("200 result=1 (b)")
    await flow.finished()
    assert (first, second) == ("GET VARIABLE A", "GET VARIABLE B")
    assert flow.seen == ["a", "b"]


# ---- replay of sessions captured from Asterisk 22 -------------------------------------------


def load_fixture(name: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    lines = (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    header, *events = (json.loads(line) for line in lines)
    return header, events


async def replay(port: int, events: list[dict[str, str]]) -> None:
    """Play Asterisk's recorded lines; every recorded server line must come back identical."""
    fake = await FakeAsterisk.connect(port)
    in_env = True
    for event in events:
        if "asterisk" in event:
            await fake.send_raw(event["asterisk"].encode())
            if in_env and event["asterisk"] == "\n":       # (captured before the check)
                in_env = False
                await answer_env_check(fake.reader, fake.writer)
        elif "server" in event:
            assert await fake.read_line() + "\n" == event["server"]
        elif event["closed"] == "server":
            assert await fake.rest() == b""
        else:
            fake.close()


async def test_replay_inbound_hangup(serve: Serve) -> None:
    """Caller hangs up during WAIT FOR DIGIT: one CallerHungUp, dead-channel reads work."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        seen.append(await s.stream_file("hello-world"))
        with pytest.raises(AgiCommandError):
            await s.stream_file("no-such-file")
        seen.append(await s.get_variable("CALLERID(name)"))
        await s.set_variable("QUOTED", 'a "b" c\\d')
        seen.append(await s.get_variable("QUOTED"))
        seen.append(await s.get_variable("NOSUCHVAR"))
        seen.append((await s.command("GOSUB", "sub", "s", "1")).result)
        try:
            while True:
                await s.wait_for_digit(1000)
        except CallerHungUp:
            seen.append(await s.get_variable("CALLERID(name)"))
            await s.verbose("after hangup")
            raise

    header, events = load_fixture("inbound_hangup")
    assert header["asterisk"].startswith("22.")
    flow = Flow(body)
    server = await serve({"inbound": flow})
    await replay(server.port, events)
    await flow.finished()
    assert flow.seen == ["", 'Q"uo\\\\te', 'a "b" c\\d', None, "0", 'Q"uo\\\\te']
    assert [type(e) for e in flow.raised] == [CallerHungUp]
    assert (await settled(server))["hangups"] == 1


async def test_replay_nosighup_hangup(serve: Serve) -> None:
    """AGISIGHUP=no: no HANGUP line, the probe's 511 tells the hang-up."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        try:
            while True:
                await s.wait_for_digit(1000)
        except CallerHungUp:
            seen.append(await s.get_variable("AGISIGHUP"))
            raise

    _, events = load_fixture("nosighup_hangup")
    flow = Flow(body)
    server = await serve({"nosighup": flow})
    await replay(server.port, events)
    await flow.finished()
    assert flow.seen == ["no"]
    assert [type(e) for e in flow.raised] == [CallerHungUp]


async def test_replay_command_errors(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append((s.script, dict(s.args), s.argv))
        for words in (("FOO", "BAR"), ("STREAM", "FILE")):
            with pytest.raises(AgiCommandError):
                await s.command(*words)
        with pytest.raises(AgiCommandError, match="no such application"):
            await s.exec("NoSuchApp")
        seen.append(await s.exec("Wait", "0.1"))
        seen.append(await s.get_data("beep", 100, 2))

    _, events = load_fixture("command_errors")
    flow = Flow(body)
    server = await serve({"errors": flow})
    await replay(server.port, events)
    await flow.finished()
    assert flow.raised == []
    assert flow.seen == [("errors", {"lang": "en", "x": ""}, ("first arg", "2")), "0", ""]


async def test_replay_unknown_route(serve: Serve) -> None:
    _, events = load_fixture("unknown_route")
    server = await serve({"inbound": Flow(lambda s, seen: s.answer())})
    await replay(server.port, events)
    assert (await settled(server))["unknown_routes"] == 1


# ---- protocol edges (issue 13): clear errors at once, hang-ups noticed at once ---------------


async def test_replay_command_errors_with_the_usage_end_glued_to_the_last_usage_line(
        serve: Serve) -> None:
    """The real 520 block of STREAM FILE with its end line glued on: no stall, no desync."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        for words in (("FOO", "BAR"), ("STREAM", "FILE")):
            with pytest.raises(AgiCommandError) as info:
                await s.command(*words)
            seen.append(str(info.value))
        with pytest.raises(AgiCommandError, match="no such application"):
            await s.exec("NoSuchApp")
        seen.append(await s.exec("Wait", "0.1"))
        seen.append(await s.get_data("beep", 100, 2))

    _, events = load_fixture("command_errors")
    end = events.index({"asterisk": "520 End of proper usage.\n"})
    last_usage = events[end - 1]["asterisk"]
    assert last_usage == "    <value>FAILED</value>\n"
    glued = [*events[:end - 1], {"asterisk": last_usage[:-1] + "520 End of proper usage.\n"},
             *events[end + 1:]]
    flow = Flow(body)
    server = await serve({"errors": flow}, command_timeout=1.0)
    await replay(server.port, glued)
    await flow.finished()
    assert flow.raised == []
    _invalid, usage, wait, digits = flow.seen
    assert usage.startswith("STREAM FILE: 520-Invalid command syntax.  Proper usage follows:")
    assert usage.endswith("<value>FAILED</value>")            # the glued end line is not usage
    assert (wait, digits) == ("0", "")
    assert (await settled(server))["completed"] == 1


@pytest.mark.parametrize("timeout", [agi_module.SESSION_DEFAULT, None])
async def test_a_bare_100_trying_is_a_clear_timeout_not_a_stall(
        serve: Serve, timeout: agi_module.Timeout) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(s.trying_timeout)
        s.trying_timeout = 0.2
        started = asyncio.get_running_loop().time()
        try:
            await s.command("GOSUB", "sub", "s", "1", timeout=timeout)
        finally:
            seen.append(asyncio.get_running_loop().time() - started)

    flow = Flow(body)
    server = await serve({"inbound": flow})                  # command timeout 30 s
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GOSUB sub s 1", "100 result=0 Trying...")
    assert await fake.rest() == b"FAILURE\n"
    await flow.finished()
    default, waited = flow.seen
    assert default == agi_module.DEFAULT_TRYING_TIMEOUT == 5.0
    assert 0.2 <= waited < 1.0
    assert [type(e) for e in flow.raised] == [AgiCommandTimeout]
    assert str(flow.raised[0]) == ("GOSUB sub s: '100 result=0 Trying...', then no final reply "
                                   "within 0.2 s")
    assert (await settled(server))["timeouts"] == 1


async def test_100_trying_never_extends_a_shorter_command_timeout(serve: Serve) -> None:
    flow = Flow(lambda s, seen: s.command("GOSUB", "sub", "s", "1"))
    server = await serve({"inbound": flow}, command_timeout=0.2)
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GOSUB sub s 1", "100 result=0 Trying...")
    assert await fake.rest() == b"FAILURE\n"
    await flow.finished()
    assert str(flow.raised[0]) == ("GOSUB sub s: '100 result=0 Trying...', then no final reply "
                                   "within 0.2 s")


@pytest.mark.parametrize(("reply", "why"), [
    ("200", "no result="),
    ("200 endpos=0", "no result="),
    ("200 result=1 (NOANSWER", "unclosed parenthesis"),
])
async def test_a_malformed_200_fails_the_command_at_once(
        serve: Serve, reply: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        started = asyncio.get_running_loop().time()
        try:
            await s.get_variable("DIALSTATUS")
        finally:
            seen.append(asyncio.get_running_loop().time() - started)

    flow = Flow(body)
    server = await serve({"inbound": flow})                  # command timeout 30 s
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GET VARIABLE DIALSTATUS", reply)
    assert await fake.rest() == b"FAILURE\n"                # the dialplan falls back
    await flow.finished()
    assert flow.seen[0] < 1.0
    assert [type(e) for e in flow.raised] == [AgiProtocolError]
    assert str(flow.raised[0]) == f"GET VARIABLE DIALSTATUS: malformed 200 reply, {why}: {reply!r}"
    assert (await settled(server))["protocol_errors"] == 1
    assert caplog.text.count("AGI protocol error on PJSIP/caller-00000007") == 1


async def test_a_value_holding_a_newline_is_one_clear_error(serve: Serve) -> None:
    """Asterisk sends the value raw: its reply comes as two lines, the first unclosed."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.get_variable("NOTE")

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GET VARIABLE NOTE", "200 result=1 (line one", "line two)")
    assert await fake.rest() == b"FAILURE\n"
    await flow.finished()
    assert [type(e) for e in flow.raised] == [AgiProtocolError]
    assert "'200 result=1 (line one'" in str(flow.raised[0])
    assert (await settled(server))["protocol_errors"] == 1


async def test_hangup_between_commands_is_recorded_the_moment_it_is_read(
        serve: Serve) -> None:
    """Asterisk writes HANGUP from its idle loop: no command pending, nothing to answer."""
    answered = asyncio.Event()
    called: list[float] = []

    async def body(s: AgiSession, seen: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        s.add_hangup_callback(lambda: called.append(loop.time()))
        await s.answer()
        answered.set()
        seen.append(await s.wait_hangup(STEP_TIMEOUT))
        seen.append(loop.time())
        seen.append(s.hung_up)
        await s.stream_file("hello-world")                   # refused without the wire

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "200 result=0")
    await answered.wait()
    sent = asyncio.get_running_loop().time()
    await fake.send("HANGUP")
    assert await fake.rest() == b""                          # no command, no FAILURE
    await flow.finished()
    woke, seen_at, flag = flow.seen
    assert woke and flag
    assert len(called) == 1 and called[0] - sent < 0.1 and seen_at - sent < 0.1
    assert [type(e) for e in flow.raised] == [CallerHungUp]
    assert (await settled(server))["hangups"] == 1


async def test_hangup_while_a_command_is_pending_is_recorded_before_its_reply(
        serve: Serve) -> None:
    """As fixture inbound_hangup: HANGUP, then 511 to the command written as the caller left."""
    noticed = asyncio.Event()

    async def body(s: AgiSession, seen: list[Any]) -> None:
        playing = asyncio.create_task(s.stream_file("hello-world"))
        seen.append(await s.wait_hangup(STEP_TIMEOUT))
        seen.append(playing.done())
        noticed.set()
        await playing

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect('STREAM FILE hello-world ""', "HANGUP")
    async with asyncio.timeout(STEP_TIMEOUT):
        await noticed.wait()                                 # the flag came before the reply
    await fake.send("511 Command Not Permitted on a dead channel or intercept routine")
    assert await fake.rest() == b""
    await flow.finished()
    assert flow.seen == [True, False]
    assert [type(e) for e in flow.raised] == [CallerHungUp]  # one, from the 511
    assert (await settled(server))["hangups"] == 1


async def test_hangup_while_a_dead_channel_command_is_pending(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(await s.get_variable("DIALSTATUS"))
        seen.append(s.hung_up)
        await s.wait_for_digit(1000)                         # refused without the wire

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GET VARIABLE DIALSTATUS", "HANGUP", "200 result=1 (NOANSWER)")
    assert await fake.rest() == b""
    await flow.finished()
    assert flow.seen == ["NOANSWER", True]
    assert [type(e) for e in flow.raised] == [CallerHungUp]


async def test_hangup_after_a_command_timeout_is_still_recorded(serve: Serve) -> None:
    """The reader outlives a failure: the caller leaving is still seen, FAILURE not written."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        try:
            await s.answer()
        except AgiCommandTimeout:
            seen.append(await s.wait_hangup(STEP_TIMEOUT))
            raise

    flow = Flow(body)
    server = await serve({"inbound": flow}, command_timeout=0.1)
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER")
    await asyncio.sleep(0.2)
    await fake.send("200 result=0", "HANGUP")                # the late reply, then the caller goes
    assert await fake.rest() == b""
    await flow.finished()
    assert flow.seen == [True]
    assert [type(e) for e in flow.raised] == [AgiCommandTimeout]
    assert (await settled(server))["timeouts"] == 1


def test_a_whole_session_runs_off_the_main_thread() -> None:
    """No signal handling anywhere on the path (pyst2's AGI() raises in a worker thread)."""
    async def session_in_worker_loop() -> list[Any]:
        flow = Flow(lambda s, seen: s.answer())
        server = FastAgiServer("127.0.0.1", 0, {"inbound": flow})
        await server.start()
        try:
            fake = await FakeAsterisk.call(server.port)
            await fake.expect("ANSWER", "200 result=0")
            tail = await fake.rest()
            fake.close()
            await fake.writer.wait_closed()
        finally:
            await server.stop()
        FakeAsterisk.opened.clear()
        return [tail, flow.raised, server.stats["completed"]]

    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(asyncio.run(session_in_worker_loop())))
    worker.start()
    worker.join(10)
    assert outcome == [[b"", [], 1]]


async def test_waiting_commands_get_their_wait_on_top_of_the_command_timeout(
        serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.append(await s.wait_for_digit(300))
        seen.append(await s.get_data("beep", 150, 2))
        seen.append(await s.wait_for_digit(-1))

    flow = Flow(body)
    server = await serve({"inbound": flow}, command_timeout=0.1)
    fake = await FakeAsterisk.call(server.port)
    for command, reply in (("WAIT FOR DIGIT 300", "200 result=0"),
                           ("GET DATA beep 150 2", "200 result=12"),
                           ("WAIT FOR DIGIT -1", "200 result=35")):
        await fake.expect(command)
        await asyncio.sleep(0.25)                       # longer than command_timeout
        await fake.send(reply)
    await flow.finished()
    assert flow.raised == []
    assert flow.seen == ["", "12", "#"]


async def test_route_lingering_after_the_hangup_is_ended(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        await asyncio.sleep(30)                       # ignores the hang-up

    flow = Flow(body)
    server = await serve({"inbound": flow}, hangup_grace=0.1)
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "200 result=0")
    await fake.send("HANGUP")
    assert await fake.rest() == b""                   # closed, no FAILURE: the caller is gone
    await flow.finished()
    assert [type(e) for e in flow.raised] == [asyncio.CancelledError]
    stats = await settled(server)
    assert (stats["lingered"], stats["errors"]) == (1, 0)


async def test_route_ending_in_time_after_the_hangup_is_left_alone(serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()
        await s.wait_hangup()
        await asyncio.sleep(0.05)
        seen.append(await s.get_variable("DIALSTATUS"))

    flow = Flow(body)
    server = await serve({"inbound": flow}, hangup_grace=1.0)
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "200 result=0")
    await fake.send("HANGUP")
    await fake.expect("GET VARIABLE DIALSTATUS", "200 result=1 (CANCEL)")
    assert await fake.rest() == b""
    await flow.finished()
    assert flow.seen == ["CANCEL"]
    stats = await settled(server)
    assert (stats["lingered"], stats["completed"]) == (0, 1)


async def test_the_close_after_a_finished_route_arms_no_lingering_timer(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """Asterisk closes its side after ours; that late EOF is no hang-up of a running
    route: no timer may hold the session for ``hangup_grace`` and warn "still running"
    (it did for every call, and at 2,000 sessions the kept sessions halved throughput)."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.answer()

    flow = Flow(body)
    server = await serve({"inbound": flow}, hangup_grace=0.05)
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("ANSWER", "200 result=0")
    assert await fake.rest() == b""                   # the route ended: the server closes
    fake.close()                                      # then Asterisk does
    await flow.finished()
    stats = await settled(server)
    await asyncio.sleep(0.2)                          # past hangup_grace
    assert (stats["completed"], stats["lingered"]) == (1, 0)
    assert not [r for r in caplog.records if "still running" in r.getMessage()]
    assert flow.sessions[0].hung_up                   # the EOF itself is still recorded


# ---- environments Asterisk 22 wrote for hostile callers (issue 15) -----------------------------


def hostile_envs() -> list[dict[str, Any]]:
    """tests/fixtures/agi/hostile_env.jsonl: per case and dialplan, what Asterisk wrote."""
    header, cases = load_fixture("hostile_env")
    assert header["asterisk"].startswith("22.")
    return [case for case in cases if case["asterisk"] is not None]


REFUSED_BEFORE = {"number_adds_lines", "number_adds_ami_keys", "number_ends_block",
                  "number_unknown_key", "number_event_line", "number_forged_contactstatus",
                  "number_forged_hangup", "request_uri_adds_lines", "request_uri_ends_block"}


@pytest.mark.parametrize("case", hostile_envs(), ids=lambda c: f"{c['dialplan']}-{c['case']}")
async def test_the_captured_environments_of_hostile_callers(serve: Serve,
                                                            case: dict[str, Any]) -> None:
    """Before the dialplan's gate, every environment a caller's value wrote lines into is
    refused, and the call still gets the inbound route with Asterisk's word only; the
    others (NUL cuts the number, 2 KB is cut to 79 bytes, a name keeps its escapes) and
    every environment after the gate are accepted as Asterisk wrote them."""
    async def body(s: AgiSession, seen: list[Any]) -> None:
        seen.extend([s.refused, dict(s.env)])

    flow = Flow(body)
    server = await serve({"inbound": flow}, refused_routes={"callflow-inbound": "inbound"})
    fake = await FakeAsterisk.connect(server.port)
    await fake.send_raw(case["asterisk"].encode("utf-8", "surrogateescape"))
    await fake.send(check_reply(await fake.read_line()).rstrip("\n"))
    refused = case["dialplan"] == "before" and case["case"] in REFUSED_BEFORE
    if refused:
        for name, value in IDENTITY.items():
            await fake.expect(f"GET VARIABLE {name}", f"200 result=1 ({value})")
    assert await fake.rest() == b""
    await flow.finished()
    reason, env = flow.seen
    assert (reason is not None) == refused
    if refused:
        assert set(env) == {"agi_uniqueid", "agi_channel", "agi_context"}
    else:
        assert env["agi_network_script"] == "inbound" and env["agi_arg_1"] == "8000"
    if case["dialplan"] == "after":
        assert env["agi_callerid"].isdigit()


async def test_a_secret_reply_is_never_quoted_in_errors_or_logs(
        serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """A PIN keyed in GET DATA (issue 18): even a malformed reply holding the digits is
    named by its command only, in the exception and in the log."""
    caplog.set_level(logging.DEBUG)

    async def body(s: AgiSession, seen: list[Any]) -> None:
        await s.get_data("identity_pin_enter", 3000, 9, secret=True)

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GET DATA identity_pin_enter 3000 9", "200 result=582904 (timeout")
    assert await fake.rest() == b"FAILURE\n"
    await flow.finished()
    assert [type(e) for e in flow.raised] == [AgiProtocolError]
    assert "582904" not in str(flow.raised[0]) and "withheld" in str(flow.raised[0])
    assert "582904" not in caplog.text and "AGI protocol error" in caplog.text
