"""Per-client coalescing in the hub (issue 20): batches under load, one message when idle,
a snapshot for a client that fell behind; never a lost final state, never out of order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callflow.stream.hub import EventHub, TopicFilter


def counter_hub(**sizes: int) -> tuple[EventHub, dict[str, Any]]:
    """A hub whose snapshot is the state the published payloads add up to."""
    hub = EventHub(**sizes)
    state: dict[str, Any] = {"total": 0, "last_seq": 0}

    def publish(n: int) -> int:
        state["total"] += n
        seq = hub.publish("board", {"add": n})
        state["last_seq"] = seq
        return seq

    hub.snapshot_provider(lambda allowed: dict(state) if allowed("board") else {})
    return hub, {"publish": publish, "state": state}


def replay(messages: list[dict[str, Any]], total: int = 0, seq: int = 0) -> tuple[int, int]:
    """What a client holds after applying messages in order: (total, last seq)."""
    for m in messages:
        if m.get("type") == "snapshot":
            assert m["seq"] >= seq, "a snapshot older than what the client holds"
            total, seq = m["state"]["total"], m["seq"]
        else:
            assert m["seq"] == seq + 1, f"gap or reorder: {seq} then {m['seq']}"
            total, seq = total + m["payload"]["add"], m["seq"]
    return total, seq


@pytest.mark.std("STD-147")
async def test_an_idle_client_gets_each_message_at_once_alone() -> None:
    hub, h = counter_hub()
    sub = hub.subscribe({"board"}, since=0)
    waiting = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    h["publish"](5)
    batch = await asyncio.wait_for(waiting, 1.0)
    assert [m["seq"] for m in batch] == [1]
    assert sub.take_ready() == []


async def test_what_piled_up_comes_as_one_batch_in_seq_order() -> None:
    hub, h = counter_hub()
    sub = hub.subscribe({"board"}, since=0)
    for n in range(1, 11):
        h["publish"](n)
    batch = await asyncio.wait_for(sub.next_batch(), 1.0)
    assert [m["seq"] for m in batch] == list(range(1, 11))
    assert replay(batch) == (55, 10)
    assert sub.buffered == 0


@pytest.mark.std("STD-145")
async def test_a_client_behind_gets_one_snapshot_with_the_final_state_then_live() -> None:
    hub, h = counter_hub(client_buffer=4)
    sub = hub.subscribe({"board"}, since=0)
    for n in range(1, 101):   # far past the buffer: deltas 1..4 are kept, then overflow
        h["publish"](n)
    batch = sub.take_ready()
    assert len(batch) == 1 and batch[0]["type"] == "snapshot"
    assert batch[0]["reason"] == "overflow"
    assert replay(batch) == (5050, 100)       # nothing of the final state lost
    h["publish"](7)
    h["publish"](8)
    later = await asyncio.wait_for(sub.next_batch(), 1.0)
    assert replay(later, 5050, 100) == (5065, 102)


async def test_a_snapshot_taken_while_changes_keep_coming_stays_consistent() -> None:
    """Interleave publishing and reading at random: the client always ends on the hub's
    state, whatever mix of deltas, batches and snapshots it got."""
    import random

    rng = random.Random(20)
    hub, h = counter_hub(client_buffer=8)
    sub = hub.subscribe({"board"}, since=0)
    total, seq = 0, 0
    for _ in range(300):
        for _ in range(rng.randrange(0, 20)):
            h["publish"](rng.randrange(1, 100))
        total, seq = replay(sub.take_ready(), total, seq)
    total, seq = replay(sub.take_ready(), total, seq)
    assert (total, seq) == (h["state"]["total"], hub.last_seq)


async def test_a_stalled_client_costs_the_others_nothing() -> None:
    hub, h = counter_hub(client_buffer=16)
    stalled = hub.subscribe({"board"}, since=0)      # never reads while this runs
    others = [hub.subscribe({"board"}, since=0) for _ in range(5)]
    got: list[list[dict[str, Any]]] = [[] for _ in others]
    for n in range(1, 501):
        h["publish"](n)
        for sub, seen in zip(others, got, strict=True):
            seen.extend(sub.take_ready())
    for seen in got:
        assert [m["seq"] for m in seen] == list(range(1, 501))   # every delta, in order
    assert stalled.buffered == 0                                 # dropped, not held
    assert hub.stats()["dropped_to_snapshot"] == 1
    assert replay(stalled.take_ready()) == (sum(range(1, 501)), 500)


async def test_a_topic_filter_still_applies_to_batches() -> None:
    hub = EventHub()
    only: TopicFilter = lambda topic: topic == "agent:1001"  # noqa: E731
    sub = hub.subscribe(only, since=0)
    for topic in ("board", "agent:1001", "agent:1002", "agent:1001"):
        hub.publish(topic, {})
    assert [m["seq"] for m in sub.take_ready()] == [2, 4]


async def test_a_closed_subscription_ends_a_waiting_batch_with_nothing() -> None:
    hub = EventHub()
    sub = hub.subscribe({"board"}, since=0)
    waiting = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(waiting, 1.0) == []
    assert sub.take_ready() == []


async def test_publish_leaves_the_fan_out_to_the_loops_next_callback() -> None:
    """Off the engine's path: publishing touches no subscriber; the fan-out runs once, after
    the publishing step, for everything that step published."""
    hub = EventHub()
    seen: list[str] = []

    def counting(topic: str) -> bool:
        seen.append(topic)
        return True

    sub = hub.subscribe(counting, since=0)
    waiting = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    for n in range(3):
        hub.publish("board", {"n": n})
    assert seen == []                            # the step that published was not held up
    batch = await asyncio.wait_for(waiting, 1.0)
    assert [m["seq"] for m in batch] == [1, 2, 3]  # one wake-up for the three
    assert seen == ["board"] * 3


async def test_a_reader_never_sees_the_hub_behind_its_last_seq() -> None:
    hub = EventHub()
    early = hub.subscribe({"board"}, since=0)
    hub.publish("board", {"n": 1})
    hub.publish("board", {"n": 2})
    late = hub.subscribe({"board"}, since=0)     # before the fan-out ran: replayed, not twice
    assert [m["seq"] for m in early.take_ready()] == [1, 2]
    await asyncio.sleep(0)
    hub.publish("board", {"n": 3})
    await asyncio.sleep(0)
    assert [m["seq"] for m in late.take_ready()] == [1, 2, 3]
    assert [m["seq"] for m in early.take_ready()] == [3]


def test_without_a_running_loop_publish_fans_out_at_once() -> None:
    hub = EventHub()
    sub = hub.subscribe({"board"}, since=0)
    hub.publish("board", {})
    assert sub._buffer and sub._buffer[0]["seq"] == 1
