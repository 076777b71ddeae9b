"""The ingest fast path of issue 20, round of 2026-12-08, against its strict references.

The parser decodes a read once and walks its frames in one loop (``_parse_text``), keys
each frame's plan by its exact key sequence, keeps the shape verdict in the plan and
lists the messages that may answer an action (``Parsed.answering``); the client routes
only those one by one and hands the events between them on by slices. Each is compared
here with what it replaced, on the stream production sends (a new call every 27 events,
a ``Timestamp`` line in each), random hostile streams and odd reads:

- the parser against ``StrictParser`` (every frame's bytes line by line, nothing
  remembered: tests/unit/ami/test_ami_line_memory.py);
- ``Parsed.answering`` against the messages themselves;
- the client against ``LoopClient``, which routes every message with the per-message
  loop the client had before (copied below, the reference).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from test_ami_line_memory import (
    BANNER,
    LINES,
    CountingParser,
    StrictParser,
    body,
    both,
    feed,
    random_stream,
)

from callflow.ami import frames
from callflow.ami.client import _PING_PREFIX, AmiClient, AmiMessage, _Pending
from callflow.ami.frames import AmiFrameParser, Parsed

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"


def production_stream(calls: int) -> bytes:
    """The captured call as production sends it (bench/bench_ami.py ``build_stream``):
    each call its own ids and channel names, a ``Timestamp`` line after ``Privilege``."""
    captured = [f for f in body("call_playback.txt").split(b"\r\n\r\n")
                if f.startswith(b"Event: ")]
    out, n = [], 0
    for call in range(calls):
        for frame in captured:
            frame = (frame.replace(b"cap-call-", b"cap-%d-call-" % call)
                     .replace(b"-00000000;", b"-%08x;" % call))
            head, sep, rest = frame.partition(b"\r\n")
            privilege, _, rest = rest.partition(b"\r\n")
            out.append(head + sep + privilege + b"\r\nTimestamp: 1700000000.%06d\r\n" % n
                       + rest + b"\r\n\r\n")
            n += 1
    return b"".join(out)


def answering_of(messages: list[AmiMessage]) -> list[int]:
    """Where the messages that may answer an action are: what ``answering`` must say."""
    return [at for at, m in enumerate(messages)
            if m.kind == "response" or "ActionID" in m.fields]


def feed_checked(parser: AmiFrameParser, stream: bytes, cuts: list[int]) -> Parsed:
    """``feed`` of test_ami_line_memory, checking each read's ``answering`` on the way."""
    total = Parsed()
    for begin, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        part = parser.feed(stream[begin:end], float(begin))
        assert part.answering == answering_of(part.messages)
        total.messages.extend(part.messages)
        total.problems.extend(part.problems)
    return total


# -- the parser ------------------------------------------------------------------------------


def test_the_production_stream_parses_the_same_and_from_memory() -> None:
    """New ids every call and a new Timestamp in every event: still the fast path (no
    frame of it goes line by line), with the same result as the strict reader."""
    stream = production_stream(40)
    got, want, fast = both(stream, [65536, 131072, 200000])
    assert got == want
    assert len(got.messages) == 2 * 40 * 27
    assert fast.strict == 0
    # the capture's TestEvent names a channel by Channel alone (a UserEvent's shape)
    assert {m.name for m in got.messages if m.suspect} == {"TestEvent"}


def test_reads_that_end_anywhere_parse_the_same() -> None:
    stream = production_stream(3)
    rng = random.Random(7)
    for _ in range(60):
        cuts = sorted({rng.randrange(1, len(stream)) for _ in range(rng.randint(1, 12))})
        got, want, _ = both(stream, cuts)
        assert got == want


def test_a_read_with_one_frame_not_utf8_parses_the_same() -> None:
    """One bad frame sends its read frame by frame (``_parse_frames``): the frames
    around it are not lost or changed, the bad one is reported."""
    frames_ = production_stream(2).split(b"\r\n\r\n")
    frames_[30] = frames_[30].replace(b"<unknown>", b"<unkn\xffwn>", 1)
    stream = b"\r\n\r\n".join(frames_)
    got, want, _ = both(stream)
    assert got == want
    assert [p.kind for p in got.problems] == ["decode", "decode"]
    assert len(got.messages) == 2 * 54


def test_a_read_longer_than_the_frame_limit_parses_the_same() -> None:
    """A read longer than ``max_frame_bytes`` is cut frame by frame on the bytes, so an
    oversize frame in it is still found; the others parse as before."""
    big = b"Event: Big\r\nPrivilege: call,all\r\nData: " + b"x" * 3000 + b"\r\n\r\n"
    stream = production_stream(1)[:6000].rpartition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    stream = stream + big + stream
    got, want, _ = both(stream, max_frame_bytes=2048)
    assert got == want
    assert [p.kind for p in got.problems] == ["oversize", "oversize"]


@pytest.mark.parametrize("seed", range(30))
def test_hostile_streams_parse_the_same_and_answering_is_right(seed: int) -> None:
    """Random frames of real, hostile and broken lines (test_ami_line_memory's), with
    more heads, ActionIDs and Timestamps, in reads cut at random, checked read by read."""
    rng = random.Random(1000 + seed)
    extra = [b"ActionID: a-%d" % rng.randrange(3), b"Response: Success",
             b"Event: OriginateResponse", b"Timestamp: 1.%d" % rng.randrange(9),
             b"Response: Error", b"ChanVariable(Local/1@x-%d;1): CF_TAG=" % rng.randrange(4)]
    LINES.extend(extra)
    try:
        stream = random_stream(rng, 80)
    finally:
        del LINES[-len(extra):]
    cuts = sorted({rng.randrange(1, len(stream)) for _ in range(rng.randint(0, 10))})
    limit = rng.choice([64, 256, 1 << 20])
    fast, strict = CountingParser(limit), StrictParser(limit)
    fast.feed(BANNER, 0.0)
    strict.feed(BANNER, 0.0)
    for _ in range(2):
        assert feed_checked(fast, stream, cuts) == feed_checked(strict, stream, cuts)


@pytest.mark.parametrize("name", ["call_playback.txt", "originate_failure.txt",
                                  "queuestatus.txt", "hostile/number_forged_hangup.txt"])
def test_answering_on_captures(name: str) -> None:
    for parser in (AmiFrameParser(), StrictParser()):
        parser.feed(BANNER, 0.0)
        for _ in range(2):
            feed_checked(parser, body(name), [])


def test_plans_are_forgotten_when_full_and_nothing_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A key new in every call (``ChanVariable(Local/...;1)`` of an OriginateResponse)
    makes a new plan per call: the memory of plans is emptied when full (it used to stop
    learning, and every later call paid for its plans), bounded, with the same result."""
    monkeypatch.setattr(frames, "_PLAN_CACHE_LIMIT", 8)
    got, want, fast = both(production_stream(30))
    assert got == want
    assert 0 < len(fast._plans) <= 8


def test_the_shape_verdict_kept_in_a_plan_is_per_event_name() -> None:
    """Two events with the same keys but different names get each its own verdict (a
    ContactStatus must carry its own keys, a made-up event need not)."""
    keys = b"Privilege: system,all\r\nAOR: a\r\nURI: u\r\n"
    stream = (b"Event: ContactStatus\r\n" + keys + b"\r\nEvent: Other\r\n" + keys
              + b"\r\n") * 3
    got, want, _ = both(stream)
    assert got == want
    suspects = [m.suspect for m in got.messages]
    assert suspects[0::2] == ["ContactStatus without ContactStatus, EndpointName"] * 6
    assert suspects[1::2] == [""] * 6


# -- the client -----------------------------------------------------------------------------


class LoopClient(AmiClient):
    """The reference: ``_on_chunk`` as it was before this round, one step per message."""

    def _on_chunk(self, conn: object, parsed: Parsed) -> None:  # type: ignore[override]
        self._stats["reads"] += 1
        events: list[AmiMessage] = []
        stats = self._stats
        pending = self._pending
        for problem in parsed.problems:
            self._report(problem)
        messages = parsed.messages
        stats["frames"] += len(messages)
        for message in messages:
            action_id = message.fields.get("ActionID")
            if action_id is not None and not isinstance(action_id, str):
                action_id = action_id[0]
            if message.kind == "response":
                if action_id and action_id.startswith(_PING_PREFIX):
                    stats["pongs"] += 1
                elif not (action_id and self._resolve(action_id, message)):
                    stats["unmatched_responses"] += 1
            elif not (action_id and pending and self._resolve(action_id, message)):
                events.append(message)
                if message.name == "FullyBooted":
                    self._fully_booted(conn)  # type: ignore[arg-type]
        if not events:
            return
        if self._holding:
            self._held.extend(events)
            return
        self._deliver(events)


def random_messages(rng: random.Random, count: int) -> bytes:
    """Events, responses (to pending actions, pings, nobody), list events and their
    Complete, events with ActionIDs of pending actions or of none, repeated ActionIDs."""
    ids = ["a-1", "a-2", "l-1", "l-2", "gone", f"{_PING_PREFIX}7", ""]
    out = []
    for n in range(count):
        action_id = rng.choice(ids)
        aid = b"ActionID: %s\r\n" % action_id.encode() if rng.random() < 0.5 else b""
        if rng.random() < 0.05:
            aid += b"ActionID: %s\r\n" % rng.choice(ids).encode()
        pick = rng.random()
        if pick < 0.15:
            out.append(b"Response: %s\r\n%sMessage: m%d\r\n\r\n"
                       % (rng.choice([b"Success", b"Error"]), aid, n))
        elif pick < 0.25:
            out.append(b"Event: %sComplete\r\nPrivilege: call,all\r\n%sEventList: Complete"
                       b"\r\n\r\n" % (rng.choice([b"Status", b"Contacts"]), aid))
        elif pick < 0.3:
            out.append(b"Event: FullyBooted\r\nPrivilege: system,all\r\n%s\r\n" % aid)
        else:
            out.append(b"Event: E%d\r\nPrivilege: call,all\r\n%sTimestamp: 1.%d\r\n\r\n"
                       % (rng.randrange(5), aid, n))
    return b"".join(out)


async def routed(client_type: type[AmiClient], stream: bytes, cuts: list[int],
                 booted: bool) -> tuple[list[list[str]], list[str], dict[str, float], bool]:
    """What a client makes of ``stream``'s reads: its batches, how each pending action
    ended, its stats, and whether the connection counts as booted."""
    client = client_type("127.0.0.1", 1, "u", "s")
    batches: list[list[str]] = []
    client.subscribe(lambda batch: batches.append([m.name + m.get("ActionID")
                                                   for m in batch]))
    loop = asyncio.get_running_loop()
    conn = object()
    session = type("S", (), {"conn": conn, "booted": asyncio.Event()})()
    if booted:
        session.booted.set()
    client._opened = session  # type: ignore[assignment]
    for action_id, is_list in (("a-1", False), ("a-2", False), ("l-1", True),
                               ("l-2", True)):
        client._pending[action_id] = _Pending(conn, action_id, loop.create_future(),  # type: ignore[arg-type]
                                              is_list)
    parser = AmiFrameParser()
    parser.feed(BANNER, 0.0)
    for part in feed_parts(stream, cuts):
        parsed = parser.feed(part, 0.0)
        client._on_chunk(conn, parsed)  # type: ignore[arg-type]
    ends = []
    for action_id, pending in sorted(client._pending.items()):
        future = pending.future
        if pending.quiet is not None:
            pending.quiet.cancel()
        if not future.done():
            ends.append(f"{action_id}: open, {len(pending.events)} events")
        elif future.exception() is not None:
            ends.append(f"{action_id}: {future.exception()!r}")
        else:
            result = future.result()
            ends.append(f"{action_id}: {result!r}")
    stats = {k: v for k, v in client._stats.items() if not k.endswith("_lag")}  # clocks
    return batches, ends, stats, session.booted.is_set()


def feed_parts(stream: bytes, cuts: list[int]) -> list[bytes]:
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@pytest.mark.parametrize("seed", range(25))
async def test_the_client_routes_reads_as_its_per_message_loop_did(seed: int) -> None:
    rng = random.Random(seed)
    stream = random_messages(rng, 150)
    if seed % 5 == 0:
        stream += production_stream(1)
    cuts = sorted({rng.randrange(1, len(stream)) for _ in range(rng.randint(0, 6))})
    booted = seed % 2 == 0
    got = await routed(AmiClient, stream, cuts, booted)
    want = await routed(LoopClient, stream, cuts, booted)
    assert got == want
    assert sum(map(len, got[0])) > 0


async def test_the_production_stream_is_one_batch_per_read_with_the_originate_events() -> None:
    """The OriginateResponse of each call carries an ActionID: with no Originate pending
    it is an event like the others, in its place."""
    stream = production_stream(3)
    got = await routed(AmiClient, stream, [20000], True)
    want = await routed(LoopClient, stream, [20000], True)
    assert got == want
    names = [name for batch in got[0] for name in batch]
    assert len(names) == 81 and len(got[0]) == 2
    assert names.count("OriginateResponseorig-1") == 3


def test_feed_of_the_line_memory_test_is_the_one_used_here() -> None:
    """``feed_checked`` reads like test_ami_line_memory's ``feed`` (what ``both`` uses)."""
    stream = production_stream(1)
    a, b = AmiFrameParser(), AmiFrameParser()
    a.feed(BANNER, 0.0)
    b.feed(BANNER, 0.0)
    assert feed(a, stream, [999]) == feed_checked(b, stream, [999])
