"""The FastAGI connection as an ``asyncio.Protocol``: lines framed where the bytes arrive.

Why not ``asyncio.StreamReader`` (issue 20). A session must see Asterisk's ``HANGUP``
line the moment it arrives, between commands too, so with a StreamReader somebody has
to be reading all the time: that was a reader task per session handing each reply to
the command through a future, two task wake-ups per command where a bare asyncio
server has one, plus an ``asyncio.timeout`` context per command. Here the loop's
``data_received`` callback splits the bytes into lines and, once the session has
started, gives each line straight to the session (``sink``), which frames the reply
and resolves the one pending command: one wake-up per command, the command's own.

Before the session starts (the environment block), lines queue up and ``readline``
returns them, like ``StreamReader.readline``. Until the first read, the bytes are kept
as they came: ``take_block`` waits for the environment block and hands it over in one
piece when it lies at the front, plain (no CR) and short (``max_line`` bytes in all),
as Asterisk's does; anything else is split into lines and read one by one, as before,
with every rule below (issue 20: the block was ~25 queued lines a call).

A line longer than ``max_line`` bytes (newline excluded) is reported once as an
``AgiProtocolError`` in its place and the rest of it is skipped; a partial line at EOF
is dropped (EOF, as before). ``None`` stands for EOF.

Every wait on the connection (an environment line, a command's reply) has its own
deadline, kept by one ``Deadline``: one loop timer for the connection, re-armed only
when a wait's deadline comes before the armed one (issue 20: a timer per command, and
the cancelled ones left in the loop's heap, were the largest cost a bare asyncio
server does not have).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from callflow.errors import AgiProtocolError

Item = bytes | AgiProtocolError | None
"""A line (with its newline), a line that broke the rules, or EOF (``None``)."""


class AgiStream(asyncio.Protocol):
    """One FastAGI connection; ``handler(stream)`` runs as its task once it is made."""

    def __init__(self, handler: Callable[[AgiStream], Coroutine[object, object, None]], *,
                 max_line: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._handler = handler
        self._loop = loop               # the server's: asked for once, not per connection
        self.max_line = max_line
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.sink: Callable[[Item], None] | None = None
        self._buf = bytearray()
        self._skipping = False          # inside a line that was too long
        self._raw = True                # bytes not split into lines yet (take_block)
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False             # EOF or connection lost, reported once
        self._lost = False
        self._close_waiters: list[asyncio.Future[None]] = []
        self._deadline: Deadline | None = None

    # -- protocol callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.task = self.loop.create_task(self._handler(self))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The connection's event loop (each ``asyncio.get_running_loop()`` is a
        ``getpid`` system call: issue 20 counted ten a session)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def deadline(self) -> Deadline:
        """The connection's one deadline timer (``Deadline``), for every wait on it."""
        if self._deadline is None:
            self._deadline = Deadline(self.loop)
        return self._deadline

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if self._raw:                   # take_block's turn: just wake it
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        self._split()

    def _split(self) -> None:
        """Queue (or sink) every complete line of the buffer; the rules on long lines."""
        buf = self._buf
        if buf.endswith(b"\n") and buf.find(b"\n") == len(buf) - 1 and len(buf) <= self.max_line:
            if self._skipping:          # the usual reply: one whole line, one copy
                self._skipping = False
            else:
                self._put(bytes(buf))
            buf.clear()
            return
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif end - start > self.max_line:
                self._put(AgiProtocolError(f"line longer than {self.max_line} bytes"))
            else:
                self._put(bytes(buf[start:end + 1]))
            start = end + 1
        if start:
            del buf[:start]
        if len(buf) > self.max_line:
            buf.clear()
            if not self._skipping:
                self._skipping = True
                self._put(AgiProtocolError(f"line longer than {self.max_line} bytes"))

    def eof_received(self) -> bool:
        self._end()
        return False                    # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._end()
        if self._deadline is not None:
            self._deadline.cancel()     # every wait has ended (EOF above)
        for waiter in self._close_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._close_waiters.clear()
        # Nothing arrives any more: let go of the session (``sink`` is a bound method of
        # it, and it holds this stream), so that a finished call is freed by reference
        # counting, not left as a cycle of some twenty objects (the session, its stream,
        # task, transport, timer...) for the garbage collector (issue 20: twice the
        # young collections of a bare asyncio server).
        self.sink = None

    # -- reading before the session (the environment) ---------------------------------

    async def readline(self, deadline: float | None = None) -> bytes | None:
        """The next line (newline included), or None at EOF.

        ``AgiProtocolError`` for a line over ``max_line``; ``TimeoutError`` once the
        loop's clock passes ``deadline`` with no line (no timer when one is waiting).
        """
        self._to_lines()
        if not self._items:
            await self._wait(deadline)
        return self.take_line()

    async def _wait(self, deadline: float | None) -> None:
        """Until ``data_received`` or EOF wakes us; TimeoutError at ``deadline``."""
        waiter = self._waiter = self.loop.create_future()
        timers = self.deadline
        timers.arm(waiter, deadline)
        try:
            await waiter
        finally:
            self._waiter = None
            timers.disarm()

    async def take_block(self, deadline: float | None = None) -> bytes | None:
        """The bytes up to and including the first empty line, in one piece, when they
        are the first bytes read and come whole within ``max_line`` bytes with no CR;
        otherwise None, and the stream is split into lines for ``readline``.

        ``TimeoutError`` once the loop's clock passes ``deadline`` while waiting.
        """
        buf = self._buf
        while self._raw:
            if buf[:1] == b"\n":
                end = 1
            else:
                found = buf.find(b"\n\n")
                end = found + 2 if found >= 0 else 0
            if end:
                if end <= self.max_line and buf.find(b"\r", 0, end) < 0:
                    block = bytes(buf[:end])
                    del buf[:end]
                    return block
                break
            if len(buf) > self.max_line or buf.find(b"\r") >= 0:
                break
            await self._wait(deadline)
        self._to_lines()
        return None

    def _to_lines(self) -> None:
        """Leave the raw state: the buffer's complete lines are queued from now on."""
        if self._raw:
            self._raw = False
            self._split()

    @property
    def has_line(self) -> bool:
        """A line (or EOF) is queued: ``take_line`` returns it without waiting."""
        self._to_lines()
        return bool(self._items)

    def take_line(self) -> bytes | None:
        """The queued line ``readline`` would return (call only when ``has_line``)."""
        item = self._items.popleft()
        if isinstance(item, AgiProtocolError):
            raise item
        return item

    def start_session(self, sink: Callable[[Item], None]) -> None:
        """From now on every line goes to ``sink`` as it arrives (queued ones first)."""
        self._to_lines()
        self.sink = sink
        while self._items:
            sink(self._items.popleft())

    # -- writing and closing ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write unless the connection is gone (one command at a time: no drain needed,
        Asterisk answers each before the next is written)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()

    @property
    def eof(self) -> bool:
        return self._ended

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the connection is gone.

        A closing transport with nothing left to send has already scheduled its
        ``connection_lost`` (asyncio's ``close``): the wait is one loop turn and takes
        no timer. Only unsent bytes (a peer that stopped reading) can make it last."""
        if self._lost or self.transport is None:
            return
        loop = self.loop
        waiter: asyncio.Future[None] = loop.create_future()
        self._close_waiters.append(waiter)
        timer = None
        if not (self.transport.is_closing() and self.transport.get_write_buffer_size() == 0):
            timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            pass
        finally:
            if timer is not None:
                timer.cancel()

    def get_extra_info(self, name: str) -> object:
        return self.transport.get_extra_info(name) if self.transport is not None else None

    # -- internals --------------------------------------------------------------------

    def _put(self, item: Item) -> None:
        if self.sink is not None:
            self.sink(item)
            return
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._to_lines()
            self._buf.clear()           # a partial last line counts as EOF
            self._put(None)


class Deadline:
    """The deadline of a connection's one wait at a time, kept with one loop timer.

    ``arm(waiter, due)`` for each wait, ``disarm()`` when it ends: the timer stays
    armed across waits and is replaced only when a wait's ``due`` comes before it.
    When the timer fires, the wait then in progress fails with ``TimeoutError`` if
    its own deadline has come, or the timer is armed again for it. So every wait
    still ends exactly at its deadline, and a session of commands that each answer
    within the timeout costs one timer instead of one per command (issue 20).
    """

    __slots__ = ("_loop", "_timer", "_waiter", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self.due: float | None = None
        """The current wait's deadline (loop time), None for none."""

    def arm(self, waiter: asyncio.Future[Any], due: float | None) -> None:
        """``waiter`` fails with TimeoutError once the loop's clock reaches ``due``."""
        self._waiter, self.due = waiter, due
        if due is None:
            return
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(due, self._fire)

    def disarm(self) -> None:
        """The wait ended: nothing to expire (the timer is left for the next wait)."""
        self._waiter, self.due = None, None

    def cancel(self) -> None:
        """No more waits (the connection is gone): release the timer."""
        self.disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        fired, self._timer = self._timer, None
        waiter, due = self._waiter, self.due
        if waiter is None or waiter.done() or due is None or fired is None:
            return
        if due <= fired.when():
            waiter.set_exception(TimeoutError())
        else:                           # a later wait than the one it was armed for
            self._timer = self._loop.call_at(due, self._fire)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
