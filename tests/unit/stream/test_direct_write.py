"""The hub's fan-out writing to clients itself (issue 20): a client that keeps up is
written to by the fan-out with no wake-up of its sender; one that cannot be written to
now is buffered and caught up by its sender, in order; a stalled one gets a snapshot
and never holds up the others. Semantics only: no timing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from callflow.stream.hub import EventHub, Message
from callflow.stream.protocol import FrameEncoder, text_frame


class Writer:
    """A client's direct writer: records what it was given; ``open`` says if it has room."""

    def __init__(self) -> None:
        self.open = True
        self.got: list[Message] = []
        self.refused = 0

    def __call__(self, messages: list[Message]) -> bool:
        if not self.open:
            self.refused += 1
            return False
        self.got.extend(messages)
        return True


def counting_hub(**sizes: int) -> tuple[EventHub, dict[str, int]]:
    hub = EventHub(**sizes)
    state = {"total": 0}
    hub.snapshot_provider(lambda allowed: dict(state) if allowed("board") else {})
    return hub, state


def publish(hub: EventHub, state: dict[str, int], n: int, topic: str = "board") -> int:
    if topic == "board":
        state["total"] += n
    return hub.publish(topic, {"add": n})


def apply(messages: list[Message], total: int = 0, seq: int = 0) -> tuple[int, int]:
    """What a client holds after these messages, checking order: (total, last seq)."""
    for m in messages:
        if m.get("type") == "snapshot":
            assert m["seq"] >= seq, "a snapshot older than what the client holds"
            total, seq = m["state"]["total"], m["seq"]
        else:
            assert m["seq"] == seq + 1, f"gap or reorder: {seq} then {m['seq']}"
            total, seq = total + m["payload"]["add"], m["seq"]
    return total, seq


async def test_a_client_that_keeps_up_is_written_by_the_fan_out_without_waking_its_sender(
) -> None:
    hub, state = counting_hub()
    sub = hub.subscribe({"board"}, since=0)
    writer = Writer()
    sub.write_directly(writer)
    sender = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    for n in range(1, 6):
        publish(hub, state, n)
        await asyncio.sleep(0)  # the fan-out is the loop's next callback
    assert apply(writer.got) == (15, 5)
    assert not sender.done()        # nothing queued, its sender never woke
    assert sub.buffered == 0
    sub.close()
    assert await sender == []


async def test_what_the_writer_refuses_is_queued_and_nothing_overtakes_it() -> None:
    hub, state = counting_hub()
    sub = hub.subscribe({"board"}, since=0)
    writer = Writer()
    sub.write_directly(writer)
    publish(hub, state, 1)
    await asyncio.sleep(0)
    writer.open = False               # the socket's buffer is full
    publish(hub, state, 2)
    await asyncio.sleep(0)
    writer.open = True                # room again, but seq 2 is still queued:
    publish(hub, state, 3)            # seq 3 must queue behind it, not be written first
    await asyncio.sleep(0)
    assert [m["seq"] for m in writer.got] == [1]
    caught_up = await asyncio.wait_for(sub.next_batch(), 1.0)
    assert [m["seq"] for m in caught_up] == [2, 3]
    publish(hub, state, 4)            # queue empty again: written directly
    await asyncio.sleep(0)
    assert apply(writer.got[:1] + caught_up + writer.got[1:]) == (10, 4)


@pytest.mark.std("STD-145")
async def test_a_stalled_client_gets_a_snapshot_and_the_others_get_every_change() -> None:
    hub, state = counting_hub(client_buffer=4)
    healthy, stalled = hub.subscribe({"board"}, since=0), hub.subscribe({"board"}, since=0)
    fast, stuck = Writer(), Writer()
    stuck.open = False
    healthy.write_directly(fast)
    stalled.write_directly(stuck)
    for n in range(1, 101):
        publish(hub, state, n)
        await asyncio.sleep(0)
    assert apply(fast.got) == (5050, 100)          # every change, in order, at once
    later = stalled.take_ready()                   # what the stalled client's sender gets
    assert [m.get("type") for m in later] == ["snapshot"]
    assert later[0]["reason"] == "overflow"
    assert apply(later) == (5050, 100)             # its final state is whole
    stuck.open = True
    publish(hub, state, 7)
    await asyncio.sleep(0)
    assert apply(stuck.got, 5050, 100) == (5057, 101)


async def test_a_pending_snapshot_goes_first_then_direct_writes() -> None:
    hub, state = counting_hub()
    publish(hub, state, 5)
    sub = hub.subscribe({"board"})    # since=None: an initial snapshot is owed
    writer = Writer()
    sub.write_directly(writer)
    publish(hub, state, 6)
    await asyncio.sleep(0)
    assert writer.got == []           # not before the snapshot
    first = await asyncio.wait_for(sub.next_batch(), 1.0)
    assert [m.get("type") for m in first] == ["snapshot"]
    publish(hub, state, 7)
    await asyncio.sleep(0)
    assert apply(first + writer.got) == (18, 3)


async def test_direct_writes_keep_the_topic_filter() -> None:
    hub, state = counting_hub()
    sub = hub.subscribe({"board"}, since=0)
    writer = Writer()
    sub.write_directly(writer)
    publish(hub, state, 1, topic="agent:1001")
    publish(hub, state, 2)
    await asyncio.sleep(0)
    assert [(m["topic"], m["seq"]) for m in writer.got] == [("board", 2)]
    assert writer.refused == 0


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_the_frame_websockets_would_send(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    payload = payload.decode("utf-8", "ignore").encode()
    ours = text_frame(payload)
    assert ours == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    reader = StreamReader()
    reader.feed_data(ours)
    parsed = _run(Frame.parse(reader.read_exact, mask=False, max_size=None))
    assert (parsed.opcode, parsed.data, parsed.fin) == (Opcode.TEXT, payload, True)


def test_the_encoder_builds_each_events_frame_once_for_every_client() -> None:
    encoder = FrameEncoder()
    message: dict[str, Any] = {"seq": 3, "topic": "board", "payload": {"x": "中文"}}
    first = encoder.wire(message)
    assert encoder.wire(dict(message)) is first
    assert first == text_frame(encoder.encode(message).encode())


def _run(gen: Any) -> Any:
    """Drive a websockets sans-I/O parser generator over data already fed."""
    try:
        next(gen)
    except StopIteration as done:
        return done.value
    raise AssertionError("parser wanted more data")


async def test_more_at_once_than_the_buffer_holds_is_one_snapshot_even_when_writable() -> None:
    hub, state = counting_hub(client_buffer=4)
    sub = hub.subscribe({"board"}, since=0)
    writer = Writer()
    sub.write_directly(writer)
    for n in range(1, 11):            # one step publishes 10: one flush of 10 > 4
        publish(hub, state, n)
    await asyncio.sleep(0)
    assert writer.got == []
    batch = sub.take_ready()
    assert [m.get("type") for m in batch] == ["snapshot"]
    assert apply(batch) == (55, 10)
