"""The event hub: order, resume, snapshots, slow clients, close (no sockets needed)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from typing import Any

import pytest

from callflow.stream.hub import EventHub, Subscription, TopicFilter


async def take(sub: Subscription, n: int) -> list[dict[str, Any]]:
    """Read n messages, failing fast instead of hanging if they never come."""
    return [await asyncio.wait_for(anext(sub), 1.0) for _ in range(n)]


async def assert_nothing_pending(sub: Subscription) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(sub), 0.05)


async def test_live_messages_arrive_in_seq_order_filtered_by_topic() -> None:
    hub = EventHub()
    board = hub.subscribe({"board"}, since=hub.last_seq)
    agents = hub.subscribe(lambda topic: topic.startswith("agent:"), since=hub.last_seq)

    seqs = [hub.publish(topic, {"i": i})
            for i, topic in enumerate(["board", "agent:1001", "board", "agent:1002", "board"])]

    assert seqs == [1, 2, 3, 4, 5]
    got = await take(board, 3)
    assert [(m["seq"], m["topic"], m["payload"]["i"]) for m in got] == [
        (1, "board", 0), (3, "board", 2), (5, "board", 4)]
    assert [m["seq"] for m in await take(agents, 2)] == [2, 4]
    await assert_nothing_pending(board)


async def test_a_reader_waiting_is_woken_by_publish() -> None:
    hub = EventHub()
    sub = hub.subscribe({"board"}, since=0)
    reader = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    assert not reader.done()
    hub.publish("board", {"x": 1})
    message = await asyncio.wait_for(reader, 1.0)
    assert message == {"seq": 1, "topic": "board", "payload": {"x": 1}}


async def test_new_subscriber_without_since_starts_with_a_snapshot_of_its_topics() -> None:
    hub = EventHub()
    seen_filters: list[TopicFilter] = []

    def provider(topic_filter: TopicFilter) -> dict[str, Any]:
        seen_filters.append(topic_filter)
        return {"agents": {a: "ready" for a in ("1001", "1002") if topic_filter(f"agent:{a}")}}

    hub.snapshot_provider(provider)
    hub.publish("agent:1001", {"old": True})
    sub = hub.subscribe({"agent:1001"})
    hub.publish("agent:1001", {"new": True})

    # Built when read, so it reflects seq 2 as well; only later seqs follow it.
    snapshot = await anext(sub)
    assert snapshot == {"type": "snapshot", "seq": 2, "reason": "initial",
                        "state": {"agents": {"1001": "ready"}}}
    assert len(seen_filters) == 1
    await assert_nothing_pending(sub)
    hub.publish("agent:1001", {"newer": True})
    assert [m["seq"] for m in await take(sub, 1)] == [3]


async def test_since_resumes_from_history_then_goes_live() -> None:
    hub = EventHub(history=16)
    for i in range(10):
        hub.publish("board", {"i": i})
    sub = hub.subscribe({"board"}, since=4)
    hub.publish("board", {"i": 10})

    got = await take(sub, 7)
    assert [m["seq"] for m in got] == [5, 6, 7, 8, 9, 10, 11]
    await assert_nothing_pending(sub)


async def test_since_at_the_edge_of_history_is_still_a_full_resume() -> None:
    hub = EventHub(history=5)
    for i in range(10):
        hub.publish("board", {"i": i})
    # History holds 6..10: since=5 has lost nothing.
    sub = hub.subscribe({"board"}, since=5)
    assert [m["seq"] for m in await take(sub, 5)] == [6, 7, 8, 9, 10]


async def test_since_older_than_history_gets_a_snapshot_then_live() -> None:
    hub = EventHub(history=5)
    hub.snapshot_provider(lambda f: {"board": "now"})
    for i in range(10):
        hub.publish("board", {"i": i})
    sub = hub.subscribe({"board"}, since=4)
    snapshot = await anext(sub)
    assert snapshot == {"type": "snapshot", "seq": 10, "reason": "resume_too_old",
                        "state": {"board": "now"}}
    hub.publish("board", {"i": 10})
    assert [m["seq"] for m in await take(sub, 1)] == [11]


@pytest.mark.parametrize("since", [-1, 11, 10_000])
async def test_since_this_hub_never_issued_gets_a_snapshot(since: int) -> None:
    # e.g. the engine restarted and its seq began again at 1.
    hub = EventHub()
    for i in range(10):
        hub.publish("board", {"i": i})
    first = await anext(hub.subscribe({"board"}, since=since))
    assert first["type"] == "snapshot"
    assert first["reason"] == "resume_too_old"


async def test_slow_client_drops_to_one_snapshot_and_never_slows_publish() -> None:
    hub = EventHub(client_buffer=4, history=8)
    provider_calls = 0

    def provider(topic_filter: TopicFilter) -> dict[str, Any]:
        nonlocal provider_calls
        provider_calls += 1
        return {"state": "current"}

    hub.snapshot_provider(provider)
    slow = hub.subscribe({"board"}, since=0)
    fast = hub.subscribe({"board"}, since=0)

    fast_seqs = []
    for i in range(1000):
        hub.publish("board", {"i": i})
        assert slow.buffered <= 4
        fast_seqs.append((await anext(fast))["seq"])

    assert fast_seqs == list(range(1, 1001))  # the slow one cost the fast one nothing
    # publish never built a snapshot: that would put the provider's cost on the engine.
    assert provider_calls == 0
    assert hub.stats() == {"subscribers": 2, "published": 1000, "dropped_to_snapshot": 1,
                           "last_seq": 1000}

    snapshot = await anext(slow)
    assert snapshot == {"type": "snapshot", "seq": 1000, "reason": "overflow",
                        "state": {"state": "current"}}
    assert provider_calls == 1
    hub.publish("board", {"i": 1000})
    assert (await anext(slow))["seq"] == 1001
    await assert_nothing_pending(slow)


async def test_replay_longer_than_the_client_buffer_becomes_a_snapshot() -> None:
    hub = EventHub(client_buffer=3, history=100)
    for i in range(10):
        hub.publish("board", {"i": i})
    sub = hub.subscribe({"board"}, since=0)
    assert sub.buffered == 0
    first = await anext(sub)
    assert (first["type"], first["reason"], first["seq"]) == ("snapshot", "overflow", 10)
    assert hub.stats()["dropped_to_snapshot"] == 1


def _per_publish_seconds(hub: EventHub, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for i in range(n):
            hub.publish("board", {"i": i})
        best = min(best, (time.perf_counter() - start) / n)
    return best


async def test_publish_cost_does_not_grow_with_a_stuck_clients_backlog() -> None:
    # Same subscriber count; in one hub every client sits on a full 20 000-message
    # backlog. Costs must be of the same order (an O(backlog) publish would be 1000x).
    idle = EventHub(client_buffer=20_000)
    stuck = EventHub(client_buffer=20_000)
    for hub in (idle, stuck):
        for _ in range(10):
            hub.subscribe({"board"}, since=0)
    for i in range(19_999):
        stuck.publish("board", {"i": i})
    idle_cost = _per_publish_seconds(idle, 200)
    stuck_cost = _per_publish_seconds(stuck, 200)
    assert stuck_cost < idle_cost * 5, (idle_cost, stuck_cost)


async def test_close_ends_a_waiting_reader_and_unsubscribes() -> None:
    hub = EventHub()
    sub = hub.subscribe({"board"}, since=0)
    other = hub.subscribe({"board"}, since=0)
    reader = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, 1.0)
    assert sub.closed
    assert hub.stats()["subscribers"] == 1
    hub.publish("board", {})
    assert sub.buffered == 0
    assert (await anext(other))["seq"] == 1

    hub.close()
    assert [m async for m in other] == []
    assert hub.stats()["subscribers"] == 0


async def test_a_failing_topic_filter_costs_only_its_own_subscription(
        caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()

    def broken(topic: str) -> bool:
        raise RuntimeError("bug in a filter")

    bad = hub.subscribe(broken, since=0)
    good = hub.subscribe({"board"}, since=0)
    with caplog.at_level(logging.ERROR, logger="callflow.stream.hub"):
        assert hub.publish("board", {"ok": True}) == 1
    assert bad.closed
    assert "topic filter failed" in caplog.text
    assert (await anext(good))["payload"] == {"ok": True}


async def test_a_failing_snapshot_provider_sends_an_empty_state(
        caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()

    def provider(topic_filter: TopicFilter) -> dict[str, Any]:
        raise RuntimeError("store down")

    hub.snapshot_provider(provider)
    with caplog.at_level(logging.ERROR, logger="callflow.stream.hub"):
        first = await anext(hub.subscribe({"board"}))
    assert first == {"type": "snapshot", "seq": 0, "reason": "initial", "state": {}}
    assert "snapshot provider failed" in caplog.text


@pytest.mark.parametrize("kwargs", [{"client_buffer": 0}, {"history": 0}])
def test_sizes_must_be_positive(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventHub(**kwargs)


def test_the_hub_imports_no_web_framework() -> None:
    """The engine uses the hub without FastAPI/Starlette (design.md: a pure core's edge)."""
    code = ("import sys, callflow.stream.hub; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'fastapi', 'starlette', 'uvicorn', 'websockets', 'pydantic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
