"""The event hub: fan-out of the core's ``Publish`` effects to websocket subscribers.

Why a hub of its own, and why this shape:

- The engine must never wait for a browser (design.md: slow clients never slow the
  engine). ``publish`` is synchronous, never awaits, and costs the same with 1 or 1,000
  subscribers: an append to the history ring and to the pending fan-out. The fan-out
  (per subscriber, one topic check and one bounded append per message, one wake-up per
  batch) runs as the loop's next callback, once for all a step published, so it is off
  the call-handling step's path (issue 20: 1,000 board clients made each publish ~7 ms).
  A backlog at one client does not make either dearer.
- Each subscriber has a bounded buffer. When it overflows, its buffer is thrown away and
  replaced by ONE snapshot (drop-to-snapshot): the client loses deltas it could not have
  kept up with anyway and gets the current state instead, so the board is always right
  after it catches up (STD-145, STD-147: alerts and state reach the board; a stale board
  is worse than a skipped delta). The snapshot is built lazily, when the client next
  reads, never inside ``publish``.
- A subscriber that can be written to synchronously (a websocket whose transport has
  room, ``Subscription.write_directly``) and has nothing queued gets each flush's
  messages written by the fan-out itself, the way ``websockets.broadcast`` does: no
  wake-up, no task step, no per-client encoding (issue 20: with 1,000 board clients
  the per-client task step, not the socket, was what made the fan-out 4x the bare
  server's p99). When the writer says "not now" (the socket's buffer is full, a
  frame of its own is being written) the messages are buffered and the client's
  sender catches up as above, so a slow client still never delays the others and
  the order per client is kept: a direct write only ever happens with nothing queued.
- The fan-out filters a flush once per distinct topic set, not once per subscriber:
  subscribers whose filter is a set of topics (every board) share one admitted list,
  and the encoder joins that list's frames once for all of them
  (``FrameEncoder.wire_many``), so a delivery to a client that keeps up is a few
  checks and one ``transport.write``.
- Sequence numbers are global and monotonic, so a client that reconnects with
  ``since=N`` gets every later message still in the history ring, and a snapshot when N
  has fallen out of it (or is unknown to this process, e.g. after a restart).

All methods must be called from the event loop's thread (``publish`` is not thread-safe;
adapters on other threads hand events to the loop first, as ami/client.py does).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any, Literal

from callflow.engine.rules import enforces

logger = logging.getLogger(__name__)

TopicFilter = Callable[[str], bool]
SnapshotProvider = Callable[[TopicFilter], dict[str, Any]]
SnapshotReason = Literal["initial", "resume_too_old", "overflow"]
Message = dict[str, Any]
#: Writes the messages to the client now, in order, or returns False and writes none.
DirectWriter = Callable[[list[Message]], bool]


def _as_filter(topics: TopicFilter | set[str] | frozenset[str]) -> TopicFilter:
    if callable(topics):
        return topics
    frozen = frozenset(topics)
    return frozen.__contains__


def _topic_set(topic_filter: TopicFilter) -> frozenset[str] | None:
    """The set behind a filter that is a frozenset's own ``__contains__`` (what
    ``subscribe`` builds from a set, and what the events endpoint passes), else None.

    Subscribers with equal sets admit the same messages, so the fan-out filters a
    flush once per distinct set instead of once per subscriber (issue 20), and hands
    them all the same list, whose frames the encoder then joins once."""
    owner = getattr(topic_filter, "__self__", None)
    if isinstance(owner, frozenset) and getattr(topic_filter, "__name__", "") == "__contains__":
        return owner
    return None


def _empty_snapshot(topic_filter: TopicFilter) -> dict[str, Any]:
    """Used until the engine registers a provider: tells the client the seq, no state."""
    return {}


class Subscription:
    """One subscriber's view of the hub: an async iterator of messages.

    Yields ``{"seq", "topic", "payload"}`` for each published message that passes the
    topic filter, in seq order, or ``{"type": "snapshot", "seq", "reason", "state"}``
    where the subscriber's history was lost (see the module docstring). Ends
    (``StopAsyncIteration``) after ``close()`` on it or on the hub.
    """

    __slots__ = ("_buffer", "_closed", "_direct", "_filter", "_hub", "_limit",
                 "_pending_snapshot", "_topics", "_waiter")

    def __init__(self, hub: EventHub, topic_filter: TopicFilter, limit: int) -> None:
        self._hub = hub
        self._filter = topic_filter
        self._topics = _topic_set(topic_filter)
        self._limit = limit
        self._buffer: deque[Message] = deque()
        self._pending_snapshot: SnapshotReason | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._direct: DirectWriter | None = None

    def write_directly(self, writer: DirectWriter | None) -> None:
        """Let the fan-out write this subscriber's messages itself while nothing is queued.

        ``writer(messages)`` must be synchronous and cheap, write all of them in order
        or none, and return False (never raise) when it cannot write now; those
        messages are then buffered for the subscriber's own reader, as without a
        writer. The list it gets may be the one every subscriber with the same
        topics gets (the fan-out filters once per topic set): read it, never change
        it. ``None`` turns it off.
        """
        self._direct = writer

    @property
    def closed(self) -> bool:
        self._hub._flush()  # a faulty filter closes its subscription at the fan-out
        return self._closed

    @property
    def buffered(self) -> int:
        """Messages waiting for this subscriber (never more than the hub's client_buffer)."""
        self._hub._flush()
        return len(self._buffer)

    def _offer(self, message: Message) -> bool:
        """Called by ``publish``: O(1). Returns True when this offer overflowed the buffer."""
        if self._pending_snapshot is not None or not self._filter(message["topic"]):
            return False
        if len(self._buffer) >= self._limit:
            self._buffer.clear()
            self._pending_snapshot = "overflow"
            self._wake()
            return True
        self._buffer.append(message)
        self._wake()
        return False

    def _offer_many(self, messages: list[Message]) -> bool:
        """Called by the hub's fan-out with what was published since the last one: each
        message through the filter, one wake-up at the end. True when it overflowed."""
        if self._pending_snapshot is not None:
            return False
        admit = self._filter
        return self._offer_admitted([message for message in messages
                                     if admit(message["topic"])])

    def _offer_admitted(self, admitted: list[Message]) -> bool:
        """Like ``_offer_many`` for messages the hub already passed through this
        subscriber's topic set (``_topics``): the list may be shared with other
        subscribers, so it is read, never changed. True when it overflowed."""
        if self._pending_snapshot is not None or not admitted:
            return False
        buffer, limit = self._buffer, self._limit
        direct = self._direct
        if not buffer and direct is not None and len(admitted) <= limit and direct(admitted):
            # Idle and writable: written now by the fan-out, nothing queued, no wake-up.
            # More than the buffer holds at once overflows as it would queued (one
            # snapshot), so a direct write never exceeds the client's bound either.
            return False
        for message in admitted:
            if len(buffer) >= limit:
                buffer.clear()
                self._pending_snapshot = "overflow"
                self._wake()
                return True
            buffer.append(message)
        self._wake()
        return False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take_snapshot(self, reason: SnapshotReason) -> Message:
        # Built synchronously at the hub's current seq: everything buffered or skipped
        # while the snapshot was pending is already reflected in it.
        self._pending_snapshot = None
        self._buffer.clear()
        return self._hub._snapshot(self._filter, reason)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            self._hub._flush()
            if self._closed:
                raise StopAsyncIteration
            if self._pending_snapshot is not None:
                return self._take_snapshot(self._pending_snapshot)
            if self._buffer:
                return self._buffer.popleft()
            await self._wait()

    @enforces("STD-145", "STD-147")
    def take_ready(self) -> list[Message]:
        """All this subscriber may be sent now, in seq order, without waiting.

        Under load a sender takes what piled up in one go (one wake-up, one lock, one
        pass over the socket for many messages) instead of one round trip per message;
        when idle it is the one new message, sent at once. A pending snapshot comes
        alone: it already holds every change up to its seq, so the buffered messages
        it replaces would only repeat them (the client's final state is never lost).
        """
        self._hub._flush()
        if self._closed:
            return []
        if self._pending_snapshot is not None:
            return [self._take_snapshot(self._pending_snapshot)]
        batch = list(self._buffer)
        self._buffer.clear()
        return batch

    async def next_batch(self) -> list[Message]:
        """Wait for ``take_ready`` to have something; ``[]`` once the subscription is closed."""
        while not self._closed:
            batch = self.take_ready()
            if batch:
                return batch
            await self._wait()
        return []

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Stop receiving; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        if self._closed:
            return
        self._closed = True
        self._direct = None
        self._buffer.clear()
        self._hub._subscribers.discard(self)
        self._wake()


class EventHub:
    """Global-sequence fan-out with a history ring and drop-to-snapshot per client."""

    def __init__(self, *, client_buffer: int = 256, history: int = 1024) -> None:
        if client_buffer < 1 or history < 1:
            raise ValueError("client_buffer and history must be at least 1")
        self._client_buffer = client_buffer
        self._history: deque[Message] = deque(maxlen=history)
        self._seq = 0
        self._subscribers: set[Subscription] = set()
        self._snapshot_provider: SnapshotProvider = _empty_snapshot
        self._published = 0
        self._dropped_to_snapshot = 0
        self._pending: list[Message] = []  # published, not yet offered to the subscribers
        self._flush_scheduled = False

    @property
    def last_seq(self) -> int:
        return self._seq

    def snapshot_provider(self, fn: SnapshotProvider) -> None:
        """Register who builds the current state for a topic filter (the engine does).

        ``fn(topic_filter)`` must be synchronous and must only include what the filter
        allows: the hub stamps the result with the current seq, so the client knows
        which live messages come after it.
        """
        self._snapshot_provider = fn

    def publish(self, topic: str, payload: dict[str, Any]) -> int:
        """Record one message and schedule its fan-out; never blocks, never awaits.

        O(1) whatever the number of subscribers: the engine's step that published goes
        on at once, and the fan-out (``_flush``) runs as the loop's next callback, once
        for everything the step published: each subscriber gets the lot with one
        wake-up. Any read (``take_ready``, ``buffered``, ``stats``, ``subscribe``)
        flushes first, so no reader ever sees the hub behind its own ``last_seq``.
        The payload is shared by every subscriber and the history: treat it as frozen.
        """
        self._seq += 1
        message: Message = {"seq": self._seq, "topic": topic, "payload": payload}
        self._history.append(message)
        self._published += 1
        self._pending.append(message)
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): fan out now
                self._flush()
                return self._seq
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return self._seq

    def _flush(self) -> None:
        """Offer what was published since the last flush to every subscriber (in order)."""
        self._flush_scheduled = False
        pending = self._pending
        if not pending:
            return
        self._pending = []
        broken: list[Subscription] = []
        # One filtered list per distinct topic set, shared by its subscribers (the
        # whole flush itself when every message passes, the usual case for boards).
        admitted_by_set: dict[frozenset[str], list[Message]] = {}
        for subscription in self._subscribers:
            try:
                topics = subscription._topics
                if topics is None:
                    overflowed = subscription._offer_many(pending)
                else:
                    admitted = admitted_by_set.get(topics)
                    if admitted is None:
                        admitted = [message for message in pending if message["topic"] in topics]
                        if len(admitted) == len(pending):
                            admitted = pending
                        admitted_by_set[topics] = admitted
                    overflowed = subscription._offer_admitted(admitted)
                if overflowed:
                    self._dropped_to_snapshot += 1
            except Exception:
                # A faulty topic filter must cost its own subscriber, never the engine.
                logger.exception("topic filter failed on seq %d..%d; closing that subscription",
                                 pending[0]["seq"], pending[-1]["seq"])
                broken.append(subscription)
        for subscription in broken:
            subscription.close()

    def subscribe(self, topics: TopicFilter | set[str] | frozenset[str],
                  since: int | None = None) -> Subscription:
        """Start a subscription to the topics the filter (or set) admits.

        ``since=None``: the first message is a snapshot (``reason="initial"``), then live
        messages. ``since=N``: every matching message with seq > N still in the history,
        then live ones; a snapshot first (``reason="resume_too_old"``) when messages after
        N have left the history or N is not a seq this hub has issued.
        """
        # Everything published so far reaches the current subscribers first: the new one
        # starts from the history (or a snapshot) and must not be offered it twice.
        self._flush()
        topic_filter = _as_filter(topics)
        subscription = Subscription(self, topic_filter, self._client_buffer)
        if since is None:
            subscription._pending_snapshot = "initial"
        elif since < 0 or since > self._seq or since < self._oldest_seq() - 1:
            subscription._pending_snapshot = "resume_too_old"
        else:
            for message in self._replay_after(since):
                if subscription._offer(message):
                    self._dropped_to_snapshot += 1
                    break
        self._subscribers.add(subscription)
        return subscription

    def close(self) -> None:
        """End every subscription (shutdown): their iterators stop."""
        for subscription in list(self._subscribers):
            subscription.close()

    def stats(self) -> dict[str, int]:
        self._flush()
        return {
            "subscribers": len(self._subscribers),
            "published": self._published,
            "dropped_to_snapshot": self._dropped_to_snapshot,
            "last_seq": self._seq,
        }

    def _oldest_seq(self) -> int:
        return self._history[0]["seq"] if self._history else self._seq + 1

    def _replay_after(self, since: int) -> list[Message]:
        # The ring holds consecutive seqs, so the start index is arithmetic.
        start = since - self._oldest_seq() + 1
        return list(islice(self._history, max(start, 0), None))

    def _snapshot(self, topic_filter: TopicFilter, reason: SnapshotReason) -> Message:
        seq = self._seq
        try:
            state = self._snapshot_provider(topic_filter)
        except Exception:
            # A broken provider must not kill the client's stream; it gets an empty
            # state with the reason, and the fault is logged for the operator.
            logger.exception("snapshot provider failed; sending an empty snapshot")
            state = {}
        return {"type": "snapshot", "seq": seq, "reason": reason, "state": state}
