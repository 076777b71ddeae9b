"""A TCP proxy on threads whose link can go down for a while (an AMI outage).

``test_ami_live.py``'s proxy lives on the adapter's own loop; a ``Product`` needs its
AMI port before its service exists, and the outage must last until the test says so
(the adapter reconnects at once through a proxy that only cut the links): while
``down()``, every link is reset and every new connection is closed on arrival.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class LinkProxy:
    """127.0.0.1:``port`` -> 127.0.0.1:``upstream``; ``down()`` / ``up()``; ``close()``."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._down = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._links: list[socket.socket] = []
        threading.Thread(target=self._accept, name="linkproxy", daemon=True).start()

    def down(self) -> None:
        """Reset every link now and refuse new ones until ``up()``."""
        self._down.set()
        with self._lock:
            links, self._links = self._links, []
        for sock in links:
            _reset(sock)

    def up(self) -> None:
        self._down.clear()

    def close(self) -> None:
        self._closed.set()
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._links += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    _reset(dst)


def _reset(sock: socket.socket) -> None:
    """Close with RST (as a dropped link looks), never a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
