"""What issue 20's cheaper session must still guarantee.

- A session's commands go one at a time, first come first served, with the command
  turn that replaced ``asyncio.Lock``: overlapping commands wait, a cancelled waiter
  never reaches the wire, and one cancelled just as it is handed the turn passes it on.
- A finished call is freed by reference counting alone (no cycle left for the garbage
  collector).
- The one-pass reading of Asterisk's own environment block gives exactly what the
  line-by-line checks give, for every block: the same mapping or the same error.
"""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from test_agi_server import STEP_TIMEOUT, FakeAsterisk, Flow, Serve, env_lines, serve, settled

from callflow.dialplan.agi import (
    _ARG_KEY,
    _ENV_LINE,
    ENV_KEYS,
    AgiSession,
    build_command_line,
    parse_env_lines,
)
from callflow.errors import AgiEnvironmentRefused

__all__ = ["serve"]             # the fixture, used by name


async def test_overlapping_commands_go_in_order_and_a_cancelled_one_never_goes(
        serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        a = asyncio.create_task(s.get_variable("A"))
        b = asyncio.create_task(s.get_variable("B"))
        c = asyncio.create_task(s.get_variable("C"))
        await asyncio.sleep(0)                  # all three issued; A is in flight
        b.cancel()                              # B is still waiting for its turn
        seen.append(await a)
        with pytest.raises(asyncio.CancelledError):
            await b
        seen.append(await c)
        seen.append(await s.get_variable("D"))  # the turn is free again afterwards

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GET VARIABLE A")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await fake.reader.readline()        # nothing while A is pending
    await fake.send("200 result=1 (a)")
    await fake.expect("GET VARIABLE C", "200 result=1 (c)")
    await fake.expect("GET VARIABLE D", "200 result=1 (d)")
    await flow.finished()
    assert flow.raised == []
    assert flow.seen == ["a", "c", "d"]


async def test_a_command_cancelled_as_it_is_handed_the_turn_passes_it_on(
        serve: Serve) -> None:
    async def body(s: AgiSession, seen: list[Any]) -> None:
        async def a_then_cancel_b() -> str | None:
            value = await s.get_variable("A")
            b.cancel()          # same loop step as A's release: B already holds the turn
            return value

        a = asyncio.create_task(a_then_cancel_b())
        await asyncio.sleep(0)
        b = asyncio.create_task(s.get_variable("B"))
        c = asyncio.create_task(s.get_variable("C"))
        seen.append(await a)
        with pytest.raises(asyncio.CancelledError):
            await b
        seen.append(await c)

    flow = Flow(body)
    server = await serve({"inbound": flow})
    fake = await FakeAsterisk.call(server.port)
    await fake.expect("GET VARIABLE A", "200 result=1 (a)")
    await fake.expect("GET VARIABLE C", "200 result=1 (c)")
    await flow.finished()
    assert flow.raised == []
    assert flow.seen == ["a", "c"]


async def test_a_finished_call_is_freed_without_the_garbage_collector(serve: Serve) -> None:
    refs: list[weakref.ref[Any]] = []

    async def route(s: AgiSession) -> None:
        refs.extend((weakref.ref(s), weakref.ref(s._stream)))
        await s.answer()

    server = await serve({"inbound": route})
    gc.collect()
    gc.disable()
    try:
        fake = await FakeAsterisk.call(server.port)
        await fake.expect("ANSWER", "200 result=0")
        assert await fake.rest() == b""
        await settled(server)
        async with asyncio.timeout(STEP_TIMEOUT):
            while any(ref() is not None for ref in refs):   # the close's last loop turns
                await asyncio.sleep(0.005)
    finally:
        gc.enable()
    assert len(refs) == 2


async def test_the_check_after_the_environment_is_the_line_build_command_line_writes(
        serve: Serve) -> None:
    async def route(s: AgiSession) -> None:
        await s.answer()

    server = await serve({"inbound": route})
    fake = await FakeAsterisk.connect(server.port)
    await fake.send(*env_lines(), "")
    line = await fake.read_line()
    word = line.removeprefix("GET FULL VARIABLE ")
    assert len(word) == 16 and int(word, 16) >= 0
    assert (line + "\n").encode() == build_command_line(("GET", "FULL", "VARIABLE", word))
    await fake.send(f"200 result=1 ({word})")
    await fake.expect("ANSWER", "200 result=0")
    assert await fake.rest() == b""


# ---- the environment block: one pass or line by line, the same answer ----------------


def reference_parse(lines: list[str]) -> dict[str, str]:
    """The line-by-line checks alone, as before the one-pass reading."""
    env: dict[str, str] = {}
    for line in lines:
        key, colon, value = line.partition(":")
        if not colon or key not in ENV_KEYS:
            if not _ENV_LINE.match(line):
                raise AgiEnvironmentRefused(f"not an AGI environment line: {line[:120]}")
            key = key.strip()
        if key in env:
            raise AgiEnvironmentRefused(f"{key} written twice")
        if key not in ENV_KEYS and not _ARG_KEY.match(key):
            raise AgiEnvironmentRefused(f"{key} is not a key")
        env[key] = value.strip()
    return env


def outcome(parse: Any, lines: list[str]) -> tuple[str, Any]:
    try:
        return "env", parse(lines)
    except AgiEnvironmentRefused as exc:
        return "refused", str(exc).split(":")[0].split(" ")[0]


BLOCK = [f"{key}: value of {key}" for key in sorted(ENV_KEYS)]


def variants() -> Iterator[list[str]]:
    yield BLOCK
    yield []
    yield [*BLOCK, "agi_arg_1: one", "agi_arg_2: two:three"]
    yield [*BLOCK, "agi_arg_0: zero"]
    yield [*BLOCK, BLOCK[3]]                                    # a key twice
    yield [*BLOCK, "agi_callerid: 555"]                         # the caller's copy
    yield [*BLOCK, "agi_network_script: feature"]
    yield [*BLOCK, "agi_channel"]                               # a known key, no colon
    yield [*BLOCK, "agi_unknown: x"]
    yield [*BLOCK, " agi_channel: x"]                           # blanks around a key
    yield ["agi_channel : x", *BLOCK[1:]]
    yield [*BLOCK, "AGI_CHANNEL: x"]
    yield [*BLOCK, ""]
    yield [*BLOCK, "garbage"]
    yield [*BLOCK, "agi_dnid: " + "9" * 9000]                   # oversize value
    for n in range(len(BLOCK) + 1):                             # truncated blocks
        yield BLOCK[:n]
    text = "\n".join(BLOCK)
    for cut in range(0, len(text), 7):                          # cut mid-line
        yield text[:cut].split("\n")
    rng = random.Random(20)
    for _ in range(300):                                        # garbage in a real block
        lines = list(BLOCK)
        at = rng.randrange(len(lines))
        line = lines[at]
        pos = rng.randrange(len(line) + 1)
        lines[at] = line[:pos] + rng.choice([":", " ", "\x00", "é", "\udcff", "agi_", ""]) \
            + line[pos + rng.randrange(2):]
        yield lines


@pytest.mark.parametrize("lines", list(variants()))
def test_the_one_pass_reading_answers_as_the_line_by_line_checks(lines: list[str]) -> None:
    assert outcome(parse_env_lines, lines) == outcome(reference_parse, lines)
