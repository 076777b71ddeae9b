"""One websocket client of the hub: a sender and a receiver sharing one writer lock.

Both streams (``/ws/events`` for boards, ``/ws/desktop`` for agents) run the same
loop: hub messages go out as encoded frames while client frames are parsed and
answered; a bad frame gets an error frame (or a clean close for oversized ones),
never an exception into the engine. Subclasses say how frames are parsed and what
a parsed request does.

Both also authenticate the same way (``handshake_credentials``): the token comes in
an ``Authorization: Bearer`` header or, from browsers, in a first ``auth`` frame;
never in the URL, which is refused. A session's connection presents its token again
every ``security.session_check_s`` and is closed (1008 ``session ended``) once the
session was revoked or ran out, so logging out or an admin's revoke reaches open
desktops too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from callflow.api.auth import Principal, TokenAuth
from callflow.api.credentials import bearer_token, has_token_in_query
from callflow.api.ws_batching import EXTENSION, FRAMES, WRITE_NOW
from callflow.stream.hub import Subscription
from callflow.stream.protocol import (
    AUTH_TIMEOUT_S,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    ClientFrameError,
    FrameEncoder,
    Ping,
    error_frame,
    parse_auth_frame,
    pong_frame,
)

log = logging.getLogger(__name__)

Message = dict[str, Any]


class HandshakeRefused(Exception):
    """The connection is closed right after the handshake with this reason (1008)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SessionCheck:
    """How an open connection re-presents its token (a session can end meanwhile)."""

    auth: TokenAuth
    token: str
    every_s: float

    async def still_valid(self) -> bool:
        return await asyncio.to_thread(self.auth.authenticate, self.token) is not None


@dataclass(frozen=True)
class Credentials:
    principal: Principal
    check: SessionCheck | None  # None: the auth's tokens never end (deployment token only)


async def handshake_credentials(websocket: WebSocket, auth: TokenAuth) -> Credentials:
    """Who is connecting, from the bearer header or the first frame; call after ``accept``.

    Raises ``HandshakeRefused``: ``unauthorized`` for no, a late or a wrong token."""
    if has_token_in_query(websocket.query_params):
        raise HandshakeRefused("token in URL refused: send an auth frame")
    token = bearer_token(websocket.headers)
    if token is None:
        try:
            message = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT_S)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            raise HandshakeRefused("unauthorized") from None
        data = message.get("text") if message.get("text") is not None else message.get("bytes")
        try:
            token = parse_auth_frame(data or b"")
        except ClientFrameError:
            raise HandshakeRefused("unauthorized") from None
    principal = await asyncio.to_thread(auth.authenticate, token)
    if principal is None:
        raise HandshakeRefused("unauthorized")
    check = None if auth.recheck_s is None else SessionCheck(auth, token, auth.recheck_s)
    return Credentials(principal, check)


async def refuse(websocket: WebSocket, reason: str) -> None:
    """Close an accepted connection with 1008 and the reason (the client may be gone)."""
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await websocket.close(CLOSE_POLICY_VIOLATION, reason)


class StreamConnection:
    """Streams a hub subscription to one websocket and answers the client's frames."""

    def __init__(self, websocket: WebSocket, encoder: FrameEncoder, check: SessionCheck | None,
                 view: Callable[[Message], Message] | None = None) -> None:
        self._ws = websocket
        self._encoder = encoder
        self._check = check
        self._view = view
        self._send_lock = asyncio.Lock()
        self._closing = False
        # the server writes a batch of frames at once (api/ws_batching.py), or not
        extension = websocket.scope.get("extensions", {}).get(EXTENSION)
        self._send_many = extension is not None
        self._write_now: Callable[[bytes], bool] | None = (
            extension.get(WRITE_NOW) if isinstance(extension, dict) else None)

    def parse(self, data: str | bytes) -> object:
        """A client frame as a request; raises ClientFrameError for a bad one."""
        raise NotImplementedError

    def answer(self, request: object) -> str | None:
        """The reply frame to a parsed request other than a ping (None: no reply)."""
        return None

    def _write_directly(self, batch: list[Message]) -> bool:
        """The hub's fan-out writing to this client itself (stream/hub.py): only when no
        frame of ours is being written (the writer lock is free) and the server's
        transport has room; else False and the sender task sends them in order."""
        write_now = self._write_now
        if write_now is None or self._closing or self._send_lock.locked():
            return False
        try:
            view = self._view
            if view is not None:
                batch = [view(message) for message in batch]
            # the same list for every client with these topics: joined once (wire_many)
            return write_now(self._encoder.wire_many(batch))
        except Exception:  # never into the fan-out: the sender task will meet the fault
            log.exception("direct write to a websocket failed; its sender takes over")
            return False

    async def run(self, subscription: Subscription) -> None:
        if self._write_now is not None:
            subscription.write_directly(self._write_directly)
        tasks = {asyncio.create_task(self._send_events(subscription)),
                 asyncio.create_task(self._receive())}
        if self._check is not None:
            tasks.add(asyncio.create_task(self._watch_session(self._check)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
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

    async def send_batch(self, batch: list[Message]) -> bool:
        """Send a batch of hub messages back to back under one hold of the writer lock:
        as frames built once for every client (one write) where the server allows it."""
        async with self._send_lock:
            if self._closing:
                return False
            try:
                if self._send_many:
                    wire = self._encoder.wire
                    await self._ws.send({"type": "websocket.send",
                                         FRAMES: [wire(message) for message in batch]})
                else:
                    for message in batch:
                        await self._ws.send_text(self._encoder.encode(message))
            except (WebSocketDisconnect, OSError, RuntimeError):
                self._closing = True
                return False
            return True

    async def _send_events(self, subscription: Subscription) -> None:
        # Batches: what piled up while this client was being written to goes out in one
        # go; a client too slow for its buffer gets one snapshot (stream/hub.py), so it
        # costs the others nothing. Each event was encoded once for every client. While
        # this client keeps up, the hub's fan-out writes to it itself (_write_directly)
        # and this task sleeps.
        view = self._view
        while batch := await subscription.next_batch():
            if view is not None:
                batch = [view(message) for message in batch]
            if not await self.send_batch(batch):
                return
        # The hub closed the subscription: the engine is shutting down.
        await self.close(CLOSE_GOING_AWAY, "server shutting down")

    async def _watch_session(self, check: SessionCheck) -> None:
        while True:
            await asyncio.sleep(check.every_s)
            if not await check.still_valid():
                break
        await self.close(CLOSE_POLICY_VIOLATION, "session ended")

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
