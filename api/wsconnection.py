"""One websocket client of the hub: a sender and a receiver sharing one writer lock.

Both streams (``/ws/events`` for boards, ``/ws/desktop`` for agents) run the same
loop: hub messages go out as encoded frames while client frames are parsed and
answered; a bad frame gets an error frame (or a clean close for oversized ones),
never an exception into the engine. Subclasses say how frames are parsed and what
a parsed request does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from callflow.stream.hub import Subscription
from callflow.stream.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    ClientFrameError,
    FrameEncoder,
    Ping,
    error_frame,
    pong_frame,
)

log = logging.getLogger(__name__)

Message = dict[str, Any]


def presented_token(websocket: WebSocket) -> str | None:
    """``?token=`` for browsers; ``Authorization: Bearer`` for clients that can set headers."""
    token = websocket.query_params.get("token")
    if token:
        return token
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class StreamConnection:
    """Streams a hub subscription to one websocket and answers the client's frames."""

    def __init__(self, websocket: WebSocket, encoder: FrameEncoder,
                 view: Callable[[Message], Message] | None = None) -> None:
        self._ws = websocket
        self._encoder = encoder
        self._view = view
        self._send_lock = asyncio.Lock()
        self._closing = False

    def parse(self, data: str | bytes) -> object:
        """A client frame as a request; raises ClientFrameError for a bad one."""
        raise NotImplementedError

    def answer(self, request: object) -> str | None:
        """The reply frame to a parsed request other than a ping (None: no reply)."""
        return None

    async def run(self, subscription: Subscription) -> None:
        sender = asyncio.create_task(self._send_events(subscription))
        receiver = asyncio.create_task(self._receive())
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        failures = [t.exception() for t in done if not t.cancelled() and t.exception()]
        for failure in failures:
            log.error("websocket task failed", exc_info=failure)
        await self.close(CLOSE_INTERNAL_ERROR if failures else CLOSE_NORMAL,
                         "internal error" if failures else "")

    async def send(self, text: str) -> bool:
        async with self._send_lock:
            if self._closing:
                return False
            try:
                await self._ws.send_text(text)
            except (WebSocketDisconnect, OSError, RuntimeError):
                self._closing = True
                return False
            return True

    async def close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self._closing:
                return
            self._closing = True
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self._ws.close(code, reason)

    async def _send_events(self, subscription: Subscription) -> None:
        async for message in subscription:
            if self._view is not None:
                message = self._view(message)
            if not await self.send(self._encoder.encode(message)):
                return
        # The hub closed the subscription: the engine is shutting down.
        await self.close(CLOSE_GOING_AWAY, "server shutting down")

    async def _receive(self) -> None:
        while True:
            try:
                message = await self._ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                request = self.parse(data)
            except ClientFrameError as bad:
                await self.send(error_frame(bad.error, bad.detail))
                if bad.close_code is not None:
                    await self.close(bad.close_code, bad.error)
                    return
                continue
            reply = pong_frame(request) if isinstance(request, Ping) else self.answer(request)
            if reply is not None:
                await self.send(reply)
