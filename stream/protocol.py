"""Wire format v1 of the events websocket (docs/websocket-protocol.md), with no I/O.

Kept apart from the FastAPI handler so every rule about frames (what a client may send,
what each error is called, how events are encoded) is tested without a socket, the way
the websockets library keeps its protocol core (style.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from callflow.errors import CallflowError

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_CLIENT_FRAME_BYTES = 64 * 1024
MAX_PING_ID_LENGTH = 64
#: A browser cannot set headers on a websocket and a URL is no place for a token, so a
#: client without ``Authorization: Bearer`` sends ``{"type": "auth", "token": ...}``
#: first, within this many seconds.
AUTH_TIMEOUT_S = 10.0
MAX_TOKEN_LENGTH = 512

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


class ClientFrameError(CallflowError):
    """A frame from a websocket client broke the protocol.

    ``error`` is the stable machine-readable code sent back in the error frame;
    ``close_code`` is set when the connection must end (oversized frames), else the
    connection is kept and the frame ignored.
    """

    def __init__(self, error: str, detail: str, close_code: int | None = None) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail
        self.close_code = close_code


@dataclass(frozen=True)
class Ping:
    """``{"type": "ping", "id": ...}``: answered with a pong echoing ``id``."""

    id: str | int | None = None


ClientFrame = Ping


def _dumps(frame: dict[str, Any]) -> str:
    # allow_nan=False: browsers' JSON.parse rejects NaN/Infinity, so never send them.
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def error_frame(error: str, detail: str) -> str:
    return _dumps({"v": PROTOCOL_VERSION, "type": "error", "error": error, "detail": detail})


def pong_frame(ping: Ping) -> str:
    frame: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "pong"}
    if ping.id is not None:
        frame["id"] = ping.id
    return _dumps(frame)


def snapshot_frame(message: dict[str, Any]) -> str:
    return _dumps({"v": PROTOCOL_VERSION, "type": "snapshot", "seq": message["seq"],
                   "reason": message["reason"], "state": message["state"]})


class FrameEncoder:
    """Encodes hub messages to text frames, each event once for all clients.

    Every client receives the same bytes for a given seq, so with N subscribers the
    payload is serialised once, not N times; the cache is bounded (oldest out first).
    Snapshots differ per client (their topic filters differ) and are never cached.
    """

    def __init__(self, cache_size: int = 2048) -> None:
        self._cache: dict[int, str] = {}
        self._wire: dict[int, bytes] = {}
        self._cache_size = cache_size
        # the last list given to wire_many and its bytes (the list is held, so its
        # identity cannot be reused by another list while it is remembered)
        self._last_batch: list[dict[str, Any]] | None = None
        self._last_bytes = b""

    def wire_many(self, messages: list[dict[str, Any]]) -> bytes:
        """The frames of ``messages`` back to back, for one write.

        The hub's fan-out hands every subscriber with the same topics the same list
        (stream/hub.py), so the frames are joined once per flush for all of them, not
        once per client: the same list object again returns the same bytes. The list
        must not be changed after it was passed (the hub never does)."""
        if messages is self._last_batch:
            return self._last_bytes
        wire = self.wire
        data = wire(messages[0]) if len(messages) == 1 else b"".join(map(wire, messages))
        self._last_batch = messages
        self._last_bytes = data
        return data

    def wire(self, message: dict[str, Any]) -> bytes:
        """The message as a whole websocket text frame (RFC 6455, server side: unmasked,
        no extension), the same bytes for every client, so built once per seq: a
        fan-out to N clients is N writes of one buffer, no per-client framing."""
        if message.get("type") == "snapshot":
            return text_frame(self._encode_snapshot(message).encode())
        seq: int = message["seq"]
        frame = self._wire.get(seq)
        if frame is None:
            frame = text_frame(self.encode(message).encode())
            if len(self._wire) >= self._cache_size:
                del self._wire[next(iter(self._wire))]
            self._wire[seq] = frame
        return frame

    def encode(self, message: dict[str, Any]) -> str:
        if message.get("type") == "snapshot":
            return self._encode_snapshot(message)
        seq: int = message["seq"]
        frame = self._cache.get(seq)
        if frame is None:
            frame = self._encode_event(message)
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[seq] = frame
        return frame

    @staticmethod
    def _encode_event(message: dict[str, Any]) -> str:
        try:
            return _dumps({"v": PROTOCOL_VERSION, "type": "event", "seq": message["seq"],
                           "topic": message["topic"], "payload": message["payload"]})
        except (TypeError, ValueError) as exc:
            # A core bug (a non-JSON payload) must not end every client's stream: they
            # get an error frame naming the gap, the operator gets the log line.
            logger.error("event seq %s on %r is not JSON-encodable: %s",
                         message["seq"], message["topic"], exc)
            return error_frame("unencodable_event",
                               f"event seq {message['seq']} on topic {message['topic']!r} "
                               "could not be encoded and was skipped")

    @staticmethod
    def _encode_snapshot(message: dict[str, Any]) -> str:
        try:
            return snapshot_frame(message)
        except (TypeError, ValueError) as exc:
            logger.error("snapshot at seq %s is not JSON-encodable: %s", message["seq"], exc)
            return snapshot_frame({**message, "state": {}})


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8), as a server sends it
    with no extension negotiated (RFC 6455 5.2: 7-bit, 16-bit or 64-bit length)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = b"\x81\x7e" + size.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + size.to_bytes(8, "big")
    return head + payload


def decode_client_json(data: str | bytes) -> dict[str, Any]:
    """Size, type and JSON checks every client frame passes (events and desktop alike)."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_CLIENT_FRAME_BYTES:
        raise ClientFrameError("frame_too_large",
                               f"{size} bytes; the limit is {MAX_CLIENT_FRAME_BYTES}",
                               close_code=CLOSE_TOO_BIG)
    if isinstance(data, bytes):
        raise ClientFrameError("binary_not_supported", "send JSON in text frames")
    try:
        frame = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ClientFrameError("bad_json", f"not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        # 64 KiB of "[" is enough to exhaust the parser's recursion limit.
        raise ClientFrameError("bad_json", "JSON nested too deeply") from None
    if not isinstance(frame, dict):
        raise ClientFrameError("bad_frame", "a frame must be a JSON object")
    return frame


def parse_client_frame(data: str | bytes) -> ClientFrame:
    """Validate one frame from a client; raises ``ClientFrameError`` with the reason."""
    frame = decode_client_json(data)
    kind = frame.get("type")
    if kind == "ping":
        return _parse_ping(frame)
    shown = kind if isinstance(kind, str) and len(kind) <= 32 else type(kind).__name__
    raise ClientFrameError("unknown_type", f"unknown frame type {shown!r}; known: ping")


def parse_auth_frame(data: str | bytes) -> str:
    """The token of the first frame, ``{"type": "auth", "token": "..."}``."""
    frame = decode_client_json(data)
    if frame.get("type") != "auth":
        raise ClientFrameError("unknown_type", 'the first frame must be {"type": "auth", ...}')
    token = frame.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise ClientFrameError("bad_frame", f"token: a string of 1-{MAX_TOKEN_LENGTH}")
    return token


def _parse_ping(frame: dict[str, Any]) -> Ping:
    ping_id = frame.get("id")
    if ping_id is None:
        return Ping()
    if isinstance(ping_id, bool) or not isinstance(ping_id, str | int):
        raise ClientFrameError("bad_frame", "ping id must be a string or an integer")
    if isinstance(ping_id, str) and len(ping_id) > MAX_PING_ID_LENGTH:
        raise ClientFrameError("bad_frame", f"ping id longer than {MAX_PING_ID_LENGTH}")
    if isinstance(ping_id, int) and not -(2**53) < ping_id < 2**53:
        raise ClientFrameError("bad_frame", "ping id outside JavaScript's safe integers")
    return Ping(ping_id)
