"""uvicorn's websockets protocol plus one ASGI extension: many text frames, one write.

Why: under load a board client's sender takes several events at once (stream/hub.py
``take_ready``), and the profile of bench/bench_board.py put most of the fan-out's time
in ``socket.send``, one per frame per client. Through plain ASGI each frame is its own
``transport.write`` and so its own syscall; with this extension a batch of k frames is
one. A server that does not offer the extension (scope ``extensions`` without
``callflow.send_many``) gets the frames one by one (api/wsconnection.py checks).

The message: ``{"type": "websocket.send", "callflow.texts": [str, ...]}``, or
``"callflow.frames": [bytes, ...]``: whole text frames already built once for every
client (``FrameEncoder.wire``), written as they are. Everything else goes to uvicorn's
own ``send`` unchanged.

The extension's ``write_now`` (``scope["extensions"]["callflow.send_many"]["write_now"]``)
writes such frames synchronously, from the hub's fan-out, when the connection is open
and its transport has room; it returns False and writes nothing otherwise (then the
frames go the awaited way above, which waits for room). So a board client that keeps
up costs one ``transport.write`` per event, as with ``websockets.broadcast``.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import State

EXTENSION = "callflow.send_many"
TEXTS = "callflow.texts"
FRAMES = "callflow.frames"
WRITE_NOW = "write_now"


class BatchingWebSockets(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task was only scheduled: it reads the scope after this returns.
        self.scope["extensions"][EXTENSION] = {WRITE_NOW: self.write_now}

    def _raw_ok(self) -> bool:
        """Frames built elsewhere may go straight to the transport: the connection is
        open, nothing of the websockets protocol is waiting to be written before them
        and no extension (deflate) would change their bytes."""
        conn = self.conn
        return (self.handshake_complete and not self.close_sent and not self.disconnected
                and self.initial_response is None and conn.state is State.OPEN
                and not conn.extensions and not conn.writes
                and not conn.expect_continuation_frame and not self.transport.is_closing())

    def write_now(self, frames: list[bytes] | bytes) -> bool:
        """Write whole frames (a list, or already joined) now if the transport has
        room, else nothing (False). Called once per client per fan-out, so the checks
        of ``_raw_ok`` are inlined here (the same conditions, one expression)."""
        conn = self.conn
        if (not self.writable.is_set() or conn.writes or conn.state is not State.OPEN
                or not self.handshake_complete or self.close_sent or self.disconnected
                or self.initial_response is not None or conn.extensions
                or conn.expect_continuation_frame or self.transport.is_closing()):
            return False
        if isinstance(frames, list):
            frames = frames[0] if len(frames) == 1 else b"".join(frames)
        self.transport.write(frames)
        return True

    async def send(self, message: Any) -> None:
        if message["type"] != "websocket.send":
            await super().send(message)
            return
        frames: list[bytes] | None = message.get(FRAMES)
        sent: list[str] | None = message.get(TEXTS) if frames is None else None
        if frames is None and sent is None:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if frames is not None:
            if self._raw_ok():
                self.transport.write(b"".join(frames))
                return
            sent = [_text_of(frame) for frame in frames]
        texts: list[str] = sent or []
        if not self.handshake_complete or self.close_sent or self.initial_response is not None:
            for text in texts:  # not a plain open connection: uvicorn's rules, frame by frame
                await super().send({"type": "websocket.send", "text": text})
            return
        try:
            for text in texts:
                self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
        except InvalidState:
            raise ClientDisconnected() from None


def _text_of(frame: bytes) -> str:
    """The payload of one unmasked text frame as ``FrameEncoder.wire`` builds it."""
    size = frame[1] & 0x7F
    start = 2 if size < 126 else 4 if size == 126 else 10
    return frame[start:].decode()
