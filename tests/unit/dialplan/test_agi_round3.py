"""Issue 20, round 3: the shortcuts taken off a session's path answer as the full path.

- A plain ``200 result=N`` reply line is answered from the line cache only when the
  full checks gave that very answer: random and hostile reply lines, cold and warm
  caches, give the same result or the same error.
- ``wait_closed`` waits for ``connection_lost`` when the transport is closing with
  nothing left to send, and still waits, bounded, while bytes are unsent.
- The hang-up watch of a route arms at most one grace timer, and none once the route
  has ended.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_agi_stream import RecordingTransport

from callflow.dialplan import agi
from callflow.dialplan.agi import MAX_LINE_BYTES, AgiResult, parse_reply
from callflow.dialplan.agi_stream import AgiStream
from callflow.dialplan.server import _HangupWatch

HOSTILE = [
    "200 result=0", "200 result=1", "200 result=49", "200 result=-1", "200 result=-2",
    "200 result=", "200 result=0 ", " 200 result=0", "200 result=0\r", "200 result=0\t",
    "200-result=0", "200 result=0 endpos=11360", "200 result=1 (13800000000)",
    "200 result=1 (x", "200 result=0(", "200 result=0)", "200 result= (timeout)",
    "200 result=0 (hangup)", "200 result=123456789", "200 result=١", "200 result=0\x00",
    "200 Result=0", "200 result=0\u2028", "200 result==0", "200  result=0", "200result=0",
    "511 result=-1 Command Not Permitted on a dead channel", "510 Invalid or unknown command",
    "520 Invalid command syntax.", "100 result=0 Trying...", "503 result=-2", "", "200",
]


def hostile_and_random_lines(seed: int = 20) -> Iterator[str]:
    """The hostile lines, then random lines built around ``200 result=``."""
    yield from HOSTILE
    rng = random.Random(seed)
    pieces = ["200", " ", "result=", "0", "1", "-1", "49", "(", ")", "x", "=", "-", "\r",
              "\t", "\x00", "é", "endpos=1", "hangup", "timeout", "511", "520", "  "]
    for _ in range(3000):
        yield "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
    for _ in range(300):
        yield "200 result=" + "".join(rng.choice("0123456789-( )x") for _ in range(
            rng.randint(0, 12)))


def outcome(line: str) -> tuple[Any, ...]:
    """What ``parse_reply`` answers for ``line``: the result's fields, or the error."""
    try:
        reply = parse_reply([line], "CMD")
    except Exception as exc:
        return (type(exc), str(exc))
    assert isinstance(reply, AgiResult)
    return (reply.code, reply.result, reply.data, dict(reply.extra))


@pytest.fixture
def cold_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty result caches for the test (and the module's own left as they were)."""
    monkeypatch.setattr(agi, "_PLAIN_RESULTS", {})
    monkeypatch.setattr(agi, "_PLAIN_LINES", {})


@pytest.mark.usefixtures("cold_caches")
def test_a_reply_answers_the_same_from_the_line_cache_as_from_the_checks() -> None:
    lines = list(hostile_and_random_lines())
    strict = {}
    for line in lines:                  # every line with caches emptied: the full checks
        agi._PLAIN_RESULTS.clear()
        agi._PLAIN_LINES.clear()
        strict[line] = outcome(line)
    agi._PLAIN_RESULTS.clear()
    agi._PLAIN_LINES.clear()
    for line in HOSTILE[:3]:            # the bench's plain lines, cached first
        outcome(line)
    assert set(agi._PLAIN_LINES) == set(HOSTILE[:3])
    for _ in range(2):                  # warm caches, in a shuffled order, twice
        random.Random(3).shuffle(lines)
        for line in lines:
            assert outcome(line) == strict[line], line
    plain = re.compile(r"200 result=[^\s(]{0,8}\Z")
    assert agi._PLAIN_LINES, "nothing was cached: the test would prove nothing"
    for line, known in agi._PLAIN_LINES.items():
        assert plain.match(line), line
        assert known is agi._PLAIN_RESULTS[known.result]
        assert strict.get(line, outcome(line)) == (200, known.result, "", {})
    assert len(agi._PLAIN_LINES) <= agi._PLAIN_RESULTS_KEPT


@pytest.mark.usefixtures("cold_caches")
def test_the_line_cache_stays_bounded_and_never_holds_a_failure() -> None:
    for n in range(500):
        outcome(f"200 result={n}")
    with pytest.raises(agi._ResultFailed):
        parse_reply(["200 result=-1"], "CMD")
    assert "200 result=-1" not in agi._PLAIN_LINES
    assert len(agi._PLAIN_LINES) == agi._PLAIN_RESULTS_KEPT
    assert outcome("200 result=499") == (200, "499", "", {})     # beyond the cache: checked


# -- wait_closed ------------------------------------------------------------------------


class SlowTransport(RecordingTransport):
    """A transport whose peer stopped reading: bytes stay unsent."""

    def __init__(self, unsent: int) -> None:
        super().__init__()
        self.unsent = unsent

    def get_write_buffer_size(self) -> int:
        return self.unsent


async def _idle(_stream: AgiStream) -> None:
    """The connection's task: these tests drive the stream themselves."""


def stream_on(transport: asyncio.Transport) -> AgiStream:
    stream = AgiStream(_idle, max_line=MAX_LINE_BYTES)
    stream.connection_made(transport)
    return stream


async def test_wait_closed_waits_for_connection_lost_even_with_nothing_left_to_send() -> None:
    """``wait_closed`` means closed: the session's task never ends before its connection
    (a shortcut that returned at once here was tried in round 3 and reverted)."""
    stream = stream_on(RecordingTransport())
    stream.close()
    waiting = asyncio.ensure_future(stream.wait_closed(2.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    stream.connection_lost(None)
    await asyncio.wait_for(waiting, 1.0)
    assert stream._close_waiters == []


async def test_wait_closed_still_waits_for_unsent_bytes_and_for_an_open_transport() -> None:
    for transport in (SlowTransport(unsent=10), RecordingTransport()):
        stream = stream_on(transport)
        if isinstance(transport, SlowTransport):
            stream.close()              # closing, bytes unsent: wait for connection_lost
        waiting = asyncio.ensure_future(stream.wait_closed(2.0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        stream.connection_lost(None)
        await asyncio.wait_for(waiting, 1.0)
    stream = stream_on(SlowTransport(unsent=10))
    stream.close()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stream.wait_closed(0.05)      # never lost: bounded by the timeout
    assert loop.time() - started >= 0.04


# -- the route's hang-up watch -----------------------------------------------------------


class _Session:
    script = "inbound"

    def describe(self) -> str:
        return "PJSIP/x (1) script='inbound'"


async def test_the_hangup_watch_arms_one_timer_and_none_after_the_route() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(asyncio.sleep(10))
    watch = _HangupWatch(_Session(), task, loop, 0.05)  # type: ignore[arg-type]
    watch.caller_hung_up()
    first = watch._timer
    watch.caller_hung_up()
    assert first is not None and watch._timer is first
    await asyncio.sleep(0.1)
    assert watch.lingering and task.cancelling()
    with pytest.raises(asyncio.CancelledError):
        await task
    task = asyncio.ensure_future(asyncio.sleep(10))
    watch = _HangupWatch(_Session(), task, loop, 0.01)  # type: ignore[arg-type]
    watch.route_ended()
    watch.caller_hung_up()
    assert watch._timer is None
    await asyncio.sleep(0.05)
    assert not watch.lingering and not task.cancelling()
    watch = _HangupWatch(_Session(), task, loop, 0.01)  # type: ignore[arg-type]
    watch.caller_hung_up()
    timer = watch._timer
    watch.route_ended()
    assert timer is not None and timer.cancelled() and watch._timer is None
    await asyncio.sleep(0.05)
    assert not watch.lingering and not task.cancelling()
    task.cancel()
