"""The fan-out filters a flush once per distinct topic set and hands the subscribers of
that set one shared list, whose frames the encoder joins once (issue 20). Semantics
only: who gets what, in which order, and that sharing changes nothing a client sees."""

from __future__ import annotations

import asyncio
from typing import Any

from callflow.stream.hub import EventHub, Message
from callflow.stream.protocol import FrameEncoder


class Writer:
    """A direct writer that keeps the very lists it was handed."""

    def __init__(self, open_: bool = True) -> None:
        self.open = open_
        self.calls: list[list[Message]] = []

    def __call__(self, messages: list[Message]) -> bool:
        if not self.open:
            return False
        self.calls.append(messages)
        return True

    @property
    def seqs(self) -> list[int]:
        return [m["seq"] for batch in self.calls for m in batch]


async def test_subscribers_with_equal_topics_get_one_shared_list_per_flush() -> None:
    hub = EventHub()
    # a set, a frozenset, and a frozenset's own __contains__ (what /ws/events passes)
    subs = [hub.subscribe({"board"}, since=0), hub.subscribe(frozenset({"board"}), since=0),
            hub.subscribe(frozenset({"board"}).__contains__, since=0)]
    writers = [Writer() for _ in subs]
    for sub, writer in zip(subs, writers, strict=True):
        sub.write_directly(writer)
    hub.publish("board", {"n": 1})
    hub.publish("board", {"n": 2})
    await asyncio.sleep(0)
    assert [w.seqs for w in writers] == [[1, 2]] * 3
    first = writers[0].calls[0]
    assert all(w.calls[0] is first for w in writers)


async def test_a_shared_list_holds_only_what_that_topic_set_admits() -> None:
    hub = EventHub()
    board, agent, both = (hub.subscribe(topics, since=0) for topics in
                          ({"board"}, {"agent:1"}, {"board", "agent:1"}))
    custom = hub.subscribe(lambda topic: topic.startswith("agent:"), since=0)
    writers = {name: Writer() for name in ("board", "agent", "both", "custom")}
    for sub, name in ((board, "board"), (agent, "agent"), (both, "both"), (custom, "custom")):
        sub.write_directly(writers[name])
    hub.publish("board", {})
    hub.publish("agent:1", {})
    hub.publish("agent:2", {})
    await asyncio.sleep(0)
    assert writers["board"].seqs == [1]
    assert writers["agent"].seqs == [2]
    assert writers["both"].seqs == [1, 2]
    assert writers["custom"].seqs == [2, 3]


async def test_a_client_that_refuses_queues_the_shared_messages_and_the_list_is_unchanged(
) -> None:
    hub = EventHub()
    ready, refusing = hub.subscribe({"board"}, since=0), hub.subscribe({"board"}, since=0)
    fast, slow = Writer(), Writer(open_=False)
    ready.write_directly(fast)
    refusing.write_directly(slow)
    hub.publish("board", {"n": 1})
    hub.publish("board", {"n": 2})
    await asyncio.sleep(0)
    shared = fast.calls[0]
    assert [m["seq"] for m in refusing.take_ready()] == [1, 2]
    assert [m["seq"] for m in shared] == [1, 2]          # queuing did not touch it
    slow.open = True
    hub.publish("board", {"n": 3})
    await asyncio.sleep(0)
    assert slow.seqs == [3] and fast.seqs == [1, 2, 3]


async def test_the_bound_holds_for_a_shared_list_too() -> None:
    hub = EventHub(client_buffer=2)
    sub = hub.subscribe({"board"}, since=0)
    writer = Writer()
    sub.write_directly(writer)
    for n in range(3):  # one flush of 3 > 2: one snapshot, nothing written directly
        hub.publish("board", {"n": n})
    await asyncio.sleep(0)
    assert writer.calls == []
    batch = sub.take_ready()
    assert [(m.get("type"), m["seq"]) for m in batch] == [("snapshot", 3)]


def test_wire_many_joins_a_list_once_and_each_new_list_afresh() -> None:
    encoder = FrameEncoder()
    messages: list[dict[str, Any]] = [{"seq": s, "topic": "board", "payload": {"s": s}}
                                      for s in (1, 2)]
    joined = encoder.wire_many(messages)
    assert joined == encoder.wire(messages[0]) + encoder.wire(messages[1])
    assert encoder.wire_many(messages) is joined               # the same list: not again
    other = [messages[1]]
    assert encoder.wire_many(other) == encoder.wire(messages[1])
    assert encoder.wire_many(list(messages)) == joined          # an equal new list: same bytes
