"""The environment block as the stream takes it (issue 20's fast path), against the rules
it must keep: the same lines as a line-by-line read of the same bytes however the bytes
are cut into segments, and the same one clear error for garbage, truncated blocks and
oversize lines or blocks. Also the one deadline timer a connection keeps for its waits,
and the strict environment parser's shortcut for known keys.

No sockets here: an ``AgiStream`` is fed as the event loop would feed it (a transport
that records what is written), so every segmentation can be played exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from callflow.dialplan.agi import (
    ENV_KEYS,
    MAX_ENV_LINES,
    MAX_LINE_BYTES,
    check_env,
    parse_env_lines,
    parse_reply,
    read_env,
)
from callflow.dialplan.agi_stream import AgiStream, Deadline
from callflow.errors import AgiEnvironmentRefused, AgiProtocolError


class RecordingTransport(asyncio.Transport):
    """What the loop's socket transport would be, minus the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


async def _idle(_stream: AgiStream) -> None:
    """The connection's task: these tests drive the stream themselves."""


def new_stream() -> AgiStream:
    stream = AgiStream(_idle, max_line=MAX_LINE_BYTES)
    stream.connection_made(RecordingTransport())
    return stream


def reference_lines(data: bytes) -> list[str] | str:
    """What the line-by-line read makes of ``data``: the block's lines, or the error."""
    lines: list[str] = []
    start = 0
    while (end := data.find(b"\n", start)) >= 0:
        raw = data[start:end]
        start = end + 1
        if len(raw) > MAX_LINE_BYTES:
            return "longer than"
        line = raw.decode("utf-8", errors="surrogateescape").rstrip("\r")
        if line == "":
            return lines
        if len(lines) >= MAX_ENV_LINES:
            return f"longer than {MAX_ENV_LINES} lines"
        lines.append(line)
    return "longer than" if len(data) - start > MAX_LINE_BYTES else "connection closed"


async def read_fed(data: bytes, cuts: list[int]) -> tuple[list[str] | str, bytes]:
    """``read_env`` of ``data`` arriving in segments cut at ``cuts``, then EOF: its lines
    (or the error's text), and the bytes left for the reads after the block."""
    stream = new_stream()
    reading = asyncio.ensure_future(read_env(stream, timeout=5.0))
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            stream.data_received(data[start:end])
            await asyncio.sleep(0)
    stream.eof_received()
    try:
        result: list[str] | str = await reading
    except AgiProtocolError as exc:
        result = str(exc)
    rest = b""
    if isinstance(result, list):
        while (line := await stream.readline()) is not None:
            rest += line
    return result, rest


ENV = b"".join(b"%s: %s\n" % (key, value) for key, value in [
    (b"agi_network", b"yes"), (b"agi_network_script", b"inbound"),
    (b"agi_channel", b"PJSIP/caller-00000007"), (b"agi_callerid", b"13800000000"),
    (b"agi_calleridname", "\u5f20\u4e09: caller".encode()),
    (b"agi_arg_1", b"x"), (b"agi_accountcode", b""),
])

BLOCKS = {
    "plain": ENV + b"\n",
    "plain, then the check's reply": ENV + b"\n200 result=1 (abc)\n",
    "empty block": b"\n",
    "CR LF lines": ENV.replace(b"\n", b"\r\n") + b"\r\n",
    "a blank line of CR only": ENV + b"\r\n200 result=1 (abc)\n",
    "a CR ending one line": ENV + b"agi_dnid: 12\r\n\n",
    "a CR inside a value": ENV + b"agi_dnid: 1\r2\n\n",
    "not UTF-8": ENV + b"agi_dnid: \xff\xfe\n\n",
    "long but legal (over one line's bytes in all)":
        ENV + b"".join(b"agi_arg_%d: %s\n" % (n, b"v" * 60) for n in range(2, 200)) + b"\n",
    "one line too long": ENV + b"agi_dnid: " + b"9" * MAX_LINE_BYTES + b"\n\n",
    "too many short lines": b"agi_x: 1\n" * (MAX_ENV_LINES + 1) + b"\n",
    "exactly the most lines": b"agi_x: 1\n" * MAX_ENV_LINES + b"\n",
    "truncated: no blank line": ENV,
    "truncated mid-line": ENV + b"agi_dnid: 12",
    "garbage": b"\x00\x01\x02 hello\n\n",
    "NUL inside a value": ENV + b"agi_dnid: 1\x002\n\n",
}


@pytest.mark.parametrize("name", BLOCKS)
async def test_the_block_reads_as_line_by_line_however_it_is_cut(name: str) -> None:
    data = BLOCKS[name]
    expected = reference_lines(data)
    rng = random.Random(name)
    cuttings = [[], list(range(1, len(data))),                       # whole, byte by byte
                [i + 1 for i, b in enumerate(data) if b == 0x0A],    # line by line
                *(rng.sample(range(1, len(data)), min(3, len(data) - 1)) for _ in range(20))]
    for cuts in cuttings:
        lines, rest = await read_fed(data, cuts)
        if isinstance(expected, str):
            assert isinstance(lines, str) and expected in lines, (cuts, lines)
        else:
            assert lines == expected, cuts
            end = data.find(b"\n\n") + 2 if not data.startswith(b"\n") else 1
            if b"\r" in data:
                continue                # the CR variants end elsewhere; lines compared
            assert rest == data[end:data.rfind(b"\n") + 1], cuts


async def test_a_block_that_never_ends_times_out_with_one_clear_error() -> None:
    stream = new_stream()
    stream.data_received(ENV)
    with pytest.raises(AgiProtocolError, match=r"no complete AGI environment within 0\.05 s"):
        await read_env(stream, timeout=0.05)


async def test_the_lines_after_a_fast_block_are_read_line_by_line() -> None:
    stream = new_stream()
    stream.data_received(ENV + b"\nHANGUP\n200 result=1 (w")
    assert await stream.take_block() == ENV + b"\n"
    assert await stream.readline() == b"HANGUP\n"
    stream.data_received(b"ord)\n")
    assert await stream.readline() == b"200 result=1 (word)\n"


@pytest.mark.parametrize("line", [
    "agi_channel", "agi_channel : x", " agi_channel: x", "AGI_CHANNEL: x", "agi_channelx: 1",
    "agi_arg_0: x", "agi_arg_01: x", "agi_: x", "agi_channel\t: x",
])
def test_the_known_key_shortcut_refuses_what_the_full_check_refuses(line: str) -> None:
    with pytest.raises(AgiEnvironmentRefused):
        parse_env_lines(["agi_network: yes", line])


def test_every_key_asterisk_writes_passes_and_values_are_stripped() -> None:
    env = parse_env_lines([f"{key}:  v{n} " for n, key in enumerate(sorted(ENV_KEYS))])
    assert env == {key: f"v{n}" for n, key in enumerate(sorted(ENV_KEYS))}
    assert parse_env_lines(["agi_arg_12: a:b"]) == {"agi_arg_12": "a:b"}


def test_utf8_values_pass_the_check_and_undecodable_ones_are_named() -> None:
    name = "\u5f20\u4e09"
    assert check_env([f"agi_calleridname: {name}"], [])["agi_calleridname"] == name
    bad = b"agi_dnid: \xff".decode("utf-8", errors="surrogateescape")
    with pytest.raises(AgiEnvironmentRefused, match="agi_dnid is not UTF-8"):
        check_env([f"agi_calleridname: {name}", bad], [])


def test_plain_replies_are_shared_and_stay_what_they_say() -> None:
    first, again = parse_reply(["200 result=49"]), parse_reply(["200 result=49"])
    assert first == again and (first.result, first.data, dict(first.extra)) == ("49", "", {})
    with pytest.raises(TypeError):
        first.extra["x"] = "y"          # type: ignore[index]
    long = "7" * 40
    assert parse_reply([f"200 result={long}"]).result == long


# ---- the one deadline timer ---------------------------------------------------------------


async def test_each_wait_ends_at_its_own_deadline_on_one_timer() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop)
    first: asyncio.Future[None] = loop.create_future()
    deadline.arm(first, loop.time() + 0.05)
    first.set_result(None)
    deadline.disarm()
    later: asyncio.Future[None] = loop.create_future()   # due after the armed timer
    due = loop.time() + 0.15
    deadline.arm(later, due)
    with pytest.raises(TimeoutError):
        await later
    assert loop.time() >= due - 0.001                   # not when the first timer fired
    deadline.disarm()
    sooner: asyncio.Future[None] = loop.create_future()
    deadline.arm(sooner, loop.time() + 30)
    deadline.arm(sooner, loop.time() + 0.02)             # shortened (a 100 Trying)
    with pytest.raises(TimeoutError):
        await sooner
    deadline.disarm()
    endless: asyncio.Future[None] = loop.create_future()
    deadline.arm(endless, None)
    await asyncio.sleep(0.05)
    assert not endless.done()
    deadline.cancel()


@pytest.mark.parametrize("cut", [0, 1, MAX_LINE_BYTES - 1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1])
async def test_replies_one_line_a_segment_or_not_keep_the_long_line_rule(cut: int) -> None:
    """A reply line framed alone (one segment, one line: the usual case) or among others,
    and a line over ``max_line`` reported once in its place, however the bytes arrive."""
    stream = new_stream()
    got: list[object] = []
    stream.start_session(got.append)
    long_line = b"2" * (MAX_LINE_BYTES + 1) + b"\n"
    edge = b"3" * MAX_LINE_BYTES + b"\n"             # exactly max_line: allowed
    data = b"200 result=0\n" + long_line + edge + b"200 result=1\n"
    for segment in (data[:cut], data[cut:]) if cut else (data,):
        stream.data_received(segment)
    for line in (b"200 result=0\n", long_line, edge, b"200 result=1\n"):
        stream.data_received(line)                   # each line in a segment of its own
    kinds = [type(item).__name__ if not isinstance(item, bytes) else item[:3] for item in got]
    assert kinds == [b"200", "AgiProtocolError", b"333", b"200"] * 2
