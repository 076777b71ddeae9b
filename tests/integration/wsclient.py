"""A websocket client in a thread, like a supervisor's browser: collects every frame
of /ws/events with the monotonic time it arrived. It authenticates as the board page
does: the token in a first ``auth`` frame, never in the URL."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class EventStream:
    def __init__(self, port: int, token: str, topics: str = "board,alarms") -> None:
        self.frames: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._connection = connect(f"ws://127.0.0.1:{port}/ws/events?topics={topics}",
                                   open_timeout=5)
        self._ws = self._connection.__enter__()
        self._ws.send(json.dumps({"type": "auth", "token": token}))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        # live once the server has read the auth frame and subscribed: its snapshot
        self.wait(lambda f: f.get("type") == "snapshot", 5, "the stream's snapshot")

    def _read(self) -> None:
        try:
            for raw in self._ws:
                frame = json.loads(raw)
                frame["t"] = time.monotonic()
                with self._cond:
                    self.frames.append(frame)
                    self._cond.notify_all()
        except ConnectionClosed:
            pass

    def wait(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for frame in self.frames:
                    if pred(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [f.get("payload", {}).get("type") for f in self.frames[-15:]]
                    raise AssertionError(f"no frame {what} within {timeout}s; last: {kinds}")
                self._cond.wait(left)

    def payloads(self, topic: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [f["payload"] for f in self.frames
                    if f.get("type") == "event" and (topic is None or f.get("topic") == topic)]

    def close(self) -> None:
        self._connection.__exit__(None, None, None)
        self._thread.join(5)
