"""asterisk-ami 0.1.7's defects, pinned: why ami/client.py wraps or replaces each part.

Every test here shows a defect of the library as it is (on real sockets or on
frames captured from Asterisk 22), next to the line of ami/client.py or
ami_frames.py that makes it impossible to hit. If asterisk-ami is upgraded, these
tests say which defects went away, so the wrappers can be revisited.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asterisk.ami import AMIClient, Event, FutureResponse, Response, SimpleAction

from callflow.ami.client import _AmiConnection
from callflow.ami.frames import AmiFrameParser

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def captured_frames(name: str) -> list[str]:
    return [f for f in (FIXTURES / name).read_bytes().decode().split("\r\n\r\n") if f]


class OneShotServer:
    """A plain TCP server for one client; ``script(conn)`` runs on its own thread."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self._script = script
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            self._script(conn)
            self.release.wait(5)

    def close(self) -> None:
        self.release.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], OneShotServer]]:
    servers: list[OneShotServer] = []

    def start(script: Callable[[socket.socket], None]) -> OneShotServer:
        servers.append(OneShotServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


class Seen:
    """Records what an AMIClient's listener is told, from its reader thread."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.disconnects: list[BaseException | None] = []
        self.disconnected = threading.Event()

    def on_event(self, source: object, event: Event) -> None:
        self.events.append(event.name)

    def on_disconnect(self, source: object, error: BaseException | None = None) -> None:
        self.disconnects.append(error)
        self.disconnected.set()


def close_client(client: AMIClient) -> None:
    client.finished.set()
    client._socket.close()
    client._thread.join(2)


def test_the_pinned_version() -> None:
    assert importlib.metadata.version("asterisk-ami") == "0.1.7"


def test_an_idle_link_dies_after_the_socket_timeout(serve) -> None:
    """Default timeout=3: recv() times out inside the reader, which ends the connection.

    ami/client.py: the socket blocks with no timeout; the Ping watchdog judges the link.
    """
    assert inspect.signature(AMIClient.__init__).parameters["timeout"].default == 3
    server = serve(lambda conn: conn.sendall(BANNER))  # then silence, socket open
    seen = Seen()
    client = AMIClient(port=server.port, timeout=0.3)
    client.add_listener(on_event=seen.on_event, on_disconnect=seen.on_disconnect)
    started = time.monotonic()
    client.connect()
    assert seen.disconnected.wait(3)
    assert 0.25 < time.monotonic() - started < 2
    assert isinstance(seen.disconnects[0], TimeoutError)
    close_client(client)


def test_a_listener_exception_kills_the_reader_and_later_events_are_lost(serve) -> None:
    """ami/client.py: listener callbacks are guarded; batches go through a wrapped sink."""
    first, second = captured_frames("call_playback.txt")[1:3]
    server = serve(lambda conn: (conn.sendall(BANNER + first.encode() + b"\r\n\r\n"),
                                 time.sleep(0.2),
                                 conn.sendall(second.encode() + b"\r\n\r\n")))

    def explode(source: object, event: Event) -> None:
        raise RuntimeError("bug in a listener")

    seen = Seen()
    client = AMIClient(port=server.port, timeout=5)
    client.add_listener(on_event=explode)
    client.add_listener(on_event=seen.on_event, on_disconnect=seen.on_disconnect)
    client.connect()
    assert seen.disconnected.wait(3)
    assert isinstance(seen.disconnects[0], RuntimeError)
    time.sleep(0.4)
    assert seen.events == []                    # neither event reached the second listener
    assert not client._thread.is_alive()        # the reader is gone for good ...
    assert not client.finished.is_set()         # ... but the client does not know: login()
    close_client(client)                        # and AutoReconnect reuse the dead link


def test_eof_before_the_banner_kills_the_reader_without_on_disconnect(
        serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port (Asterisk restarting) ends the thread with a bare StopIteration.

    ami/client.py: ``listen`` is replaced; the reader always ends with on_disconnect.
    """
    crashes: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_type))
    server = serve(lambda conn: None)  # accept, then close at once
    seen = Seen()
    client = AMIClient(port=server.port, timeout=2)
    client.add_listener(on_disconnect=seen.on_disconnect)
    server.release.set()
    client.connect()
    client._thread.join(3)
    assert crashes == [StopIteration]
    assert not seen.disconnected.is_set()


def test_disconnect_blocks_its_caller_until_the_socket_timeout(serve) -> None:
    """close() does not wake a recv() on Linux; disconnect() then joins the reader.

    ami/client.py: ``_AmiConnection.disconnect`` shuts the socket down and never joins.
    """
    server = serve(lambda conn: conn.sendall(BANNER))
    client = AMIClient(port=server.port, timeout=0.6)
    client.connect()
    time.sleep(0.1)
    started = time.monotonic()
    client.disconnect()
    assert time.monotonic() - started >= 0.4


def test_send_uses_socket_send_which_may_write_part_of_a_frame() -> None:
    """ami/client.py: writes go to the asyncio transport, from the loop alone."""
    source = inspect.getsource(AMIClient.send)
    assert "self._socket.send(" in source and "sendall" not in source
    assert "transport.write(" in inspect.getsource(_AmiConnection.write)


def test_a_response_callback_exception_becomes_a_name_error() -> None:
    """FutureResponse.set_response calls traceback.print_exc() without importing it."""

    def callback(response: Response) -> None:
        raise RuntimeError("bug in a callback")

    future = FutureResponse(callback=callback, timeout=0.1)
    with pytest.raises(NameError, match="traceback"):
        future.response = Response("Success", {})


def test_futures_of_unanswered_actions_are_never_forgotten(serve) -> None:
    """A timed-out action stays in ``_futures`` forever (and reading it blocks).

    ami/client.py: asyncio futures with their own timeout, removed in ``finally``.
    """
    server = serve(lambda conn: conn.sendall(BANNER))
    client = AMIClient(port=server.port, timeout=0.2)
    client.connect()
    future = client.send_action(SimpleAction("Status"))
    started = time.monotonic()
    assert future.response is None  # blocks the calling thread for the whole timeout
    assert time.monotonic() - started >= 0.15
    assert "0" in client._futures
    close_client(client)


def test_originate_response_is_read_as_an_event_because_event_comes_first() -> None:
    """Verified on the capture: Response.match is anchored at the frame's first line.

    So 0.1.7 does not misroute OriginateResponse; ami_frames still decides on the
    presence of ``Event:`` anywhere, so the order of lines cannot matter.
    """
    frame = next(f for f in captured_frames("originate_failure.txt")
                 if f.startswith("Event: OriginateResponse"))
    assert "\r\nResponse: Failure\r\n" in frame
    assert not Response.match(frame) and Event.match(frame)
    reordered = "Response: Failure\r\n" + frame.replace("\r\nResponse: Failure", "")
    assert Response.match(reordered)  # a frame led by Response: would become a reply
    parser = AmiFrameParser()
    parser.feed(BANNER, 0.0)
    assert parser.feed(reordered.encode() + b"\r\n\r\n", 0.0).messages[0].is_event


def test_event_read_loses_lines_silently_and_folds_chanvariable() -> None:
    channel = captured_frames("coreshowchannels.txt")[1]
    event = Event.read(channel)
    assert event.keys["ChanVariable"] == {"CF_CALL": "", "CF_TAG": ""}
    broken = Event.read("Event: Hangup\r\nUniqueid: 1\r\nno colon\r\nCause:16")
    assert broken.keys == {"Uniqueid": "1"}  # 'no colon' and 'Cause:16' vanished unreported


def test_response_read_joins_repeats_and_gives_up_at_an_odd_key() -> None:
    command = captured_frames("command.txt")[0]
    assert Response.read(command).keys["Output"] == (
        "0 active channels\n0 active calls\n2 calls processed")
    odd = Response.read("Response: Success\r\nActionID: 1\r\n"
                        "ChanVariable(Local/1@x-0;1): A=1\r\nMessage: hi")
    assert odd.keys == {"ActionID": "1"}
    assert odd.follows == ["ChanVariable(Local/1@x-0;1): A=1", "Message: hi"]


def test_the_receive_buffer_is_unbounded() -> None:
    """``data += recv`` with no limit: a frame that never ends grows memory forever."""
    source = inspect.getsource(AMIClient._next_pack)
    assert "data += recv" in source and "len(data)" not in source
    parser = AmiFrameParser(max_frame_bytes=4096)
    parser.feed(BANNER, 0.0)
    for _ in range(50):
        parser.feed(b"x" * 4096, 0.0)
    assert len(parser._buf) <= 2 * 4096
