"""uvicorn's websockets protocol plus one ASGI extension: many text frames, one write.

Why: under load a board client's sender takes several events at once (stream/hub.py
``take_ready``), and the profile of bench/bench_board.py put most of the fan-out's time
in ``socket.send``, one per frame per client. Through plain ASGI each frame is its own
``transport.write`` and so its own syscall; with this extension a batch of k frames is
one. A server that does not offer the extension (scope ``extensions`` without
``callflow.send_many``) gets the frames one by one (api/wsconnection.py checks).

The message: ``{"type": "websocket.send", "callflow.texts": [str, ...]}``. Everything
else goes to uvicorn's own ``send`` unchanged.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

EXTENSION = "callflow.send_many"
TEXTS = "callflow.texts"


class BatchingWebSockets(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task was only scheduled: it reads the scope after this returns.
        self.scope["extensions"][EXTENSION] = {}

    async def send(self, message: Any) -> None:
        texts = message.get(TEXTS) if message["type"] == "websocket.send" else None
        if texts is None:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
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
