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
returns them, like ``StreamReader.readline``. A line longer than ``max_line`` bytes
(newline excluded) is reported once as an ``AgiProtocolError`` in its place and the
rest of it is skipped; a partial line at EOF is dropped (EOF, as before). ``None``
stands for EOF.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine

from callflow.errors import AgiProtocolError

Item = bytes | AgiProtocolError | None
"""A line (with its newline), a line that broke the rules, or EOF (``None``)."""


class AgiStream(asyncio.Protocol):
    """One FastAGI connection; ``handler(stream)`` runs as its task once it is made."""

    def __init__(self, handler: Callable[[AgiStream], Coroutine[object, object, None]], *,
                 max_line: int) -> None:
        self._handler = handler
        self.max_line = max_line
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.sink: Callable[[Item], None] | None = None
        self._buf = bytearray()
        self._skipping = False          # inside a line that was too long
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False             # EOF or connection lost, reported once
        self._lost = False
        self._close_waiters: list[asyncio.Future[None]] = []

    # -- protocol callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.task = asyncio.get_running_loop().create_task(self._handler(self))

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
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
        for waiter in self._close_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._close_waiters.clear()

    # -- reading before the session (the environment) ---------------------------------

    async def readline(self, deadline: float | None = None) -> bytes | None:
        """The next line (newline included), or None at EOF.

        ``AgiProtocolError`` for a line over ``max_line``; ``TimeoutError`` once the
        loop's clock passes ``deadline`` with no line (no timer when one is waiting).
        """
        if not self._items:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = (loop.call_at(deadline, _expire, waiter)
                     if deadline is not None else None)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return self.take_line()

    @property
    def has_line(self) -> bool:
        """A line (or EOF) is queued: ``take_line`` returns it without waiting."""
        return bool(self._items)

    def take_line(self) -> bytes | None:
        """The queued line ``readline`` would return (call only when ``has_line``)."""
        item = self._items.popleft()
        if isinstance(item, AgiProtocolError):
            raise item
        return item

    def start_session(self, sink: Callable[[Item], None]) -> None:
        """From now on every line goes to ``sink`` as it arrives (queued ones first)."""
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
        """Wait (at most ``timeout`` s) until the connection is gone."""
        if self._lost or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._close_waiters.append(waiter)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            pass
        finally:
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
            self._buf.clear()           # a partial last line counts as EOF
            self._put(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
