"""A minimal threaded AMI client for test assertions (test tooling, not product code).

Deliberately independent of the product's AMI adapter (``ami/client.py``): a test
that checks the adapter must not trust the adapter to see what Asterisk sent. Every
message is kept with a ``t`` stamp (``time.monotonic()``) so tests can measure
intervals between events and ask for "the first X after this moment".

Pitfall handled: ``OriginateResponse`` (and list-action items) carry an ``Event``
key *and* an ``ActionID``; anything with ``Event`` is an event, never an action reply.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]
Predicate = Callable[[Message], bool]


class AmiTapError(AssertionError):
    """The tap lost its link, was refused, or an awaited message did not come."""


class AmiTap:
    """Logs in with ``Events: on`` and records everything Asterisk sends."""

    def __init__(self, host: str, port: int, username: str, secret: str) -> None:
        self.host, self.port, self.username, self.secret = host, port, username, secret
        self.events: list[Message] = []
        self._replies: dict[str, Message] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self.connected = False
        self.connect()

    # ---- link ---------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> None:
        """Connect and log in, retrying until ``timeout`` (Asterisk may still be booting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._connect_once()
                return
            except OSError:  # not listening yet; a refused login is final
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect_once(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=5)
        f = sock.makefile("rb")
        try:  # an Asterisk still starting may reset the link before its banner
            banner = f.readline()
        except OSError:
            f.close()
            sock.close()
            raise
        if not banner.startswith(b"Asterisk Call Manager"):
            f.close()
            sock.close()
            raise AmiTapError(f"not an AMI banner: {banner!r}")
        sock.settimeout(None)
        self._sock = sock
        self.connected = True
        self._reader = threading.Thread(
            target=self._read, args=(sock, f), name="amitap", daemon=True
        )
        self._reader.start()
        reply = self.action(Action="Login", Username=self.username, Secret=self.secret, Events="on")
        if reply.get("Response") != "Success":
            self.close()
            raise AmiTapError(f"AMI login refused: {reply}")

    def reconnect(self, timeout: float = 10.0) -> None:
        """After an Asterisk restart: drop the dead link, log in again (history is kept)."""
        self.close()
        self.connect(timeout)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.sendall(b"Action: Logoff\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        if self._reader is not None:
            self._reader.join(2)
        self.connected = False

    def _read(self, sock: socket.socket, f: Any) -> None:
        msg: Message = {}
        try:
            for raw in f:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line:
                    key, _, value = line.partition(": ")
                    if key in msg:  # repeated keys (ChanVariable...) become lists
                        old = msg[key]
                        msg[key] = [*old, value] if isinstance(old, list) else [old, value]
                    else:
                        msg[key] = value
                    continue
                if msg:
                    self._deliver(msg)
                    msg = {}
        except (OSError, ValueError):  # ValueError: the file was closed under us
            pass
        finally:
            with contextlib.suppress(OSError):
                f.close()  # the socket's last reference: its fd closes with it, not at GC
            with self._cond:
                if self._sock is sock or self._sock is None:
                    self.connected = False
                self._cond.notify_all()

    def _deliver(self, msg: Message) -> None:
        msg["t"] = time.monotonic()
        with self._cond:
            if "Event" in msg:
                self.events.append(msg)
            else:
                self._replies[str(msg.get("ActionID", ""))] = msg
            self._cond.notify_all()

    # ---- actions ------------------------------------------------------------------------

    def send(self, **fields: Any) -> str:
        """Send an action without waiting; return its ActionID."""
        fields.setdefault("ActionID", f"tap-{next(self._ids)}")
        if self._sock is None:
            raise AmiTapError("AMI tap is not connected")
        text = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self._sock.sendall(text.encode())
        return str(fields["ActionID"])

    def action(self, timeout: float = 5.0, **fields: Any) -> Message:
        """Send an action and return its reply (``Response: Success|Error|Follows``)."""
        action_id = self.send(**fields)
        with self._cond:
            ok = self._cond.wait_for(
                lambda: action_id in self._replies or not self.connected, timeout
            )
            if action_id in self._replies:
                return self._replies.pop(action_id)
        reason = "link lost" if ok else f"no reply within {timeout}s"
        raise AmiTapError(f"{fields.get('Action')}: {reason}")

    def action_list(self, timeout: float = 5.0, **fields: Any) -> tuple[Message, list[Message]]:
        """A list action (QueueStatus, PJSIPShowContacts...): its reply and its item events."""
        since = time.monotonic()
        reply = self.action(timeout, **fields)
        if reply.get("Response") != "Success":
            return reply, []
        action_id = reply.get("ActionID")
        done = self.wait_event(
            lambda e: (
                e.get("ActionID") == action_id
                and (e.get("EventList") == "Complete" or str(e["Event"]).endswith("Complete"))
            ),
            timeout,
            since,
        )
        items = [
            e for e in self.events_since(since) if e.get("ActionID") == action_id and e is not done
        ]
        return reply, items

    def command(self, command: str, timeout: float = 10.0) -> str:
        """A CLI command over AMI; its output lines joined."""
        reply = self.action(timeout, Action="Command", Command=command)
        out = reply.get("Output", [])
        return "\n".join(out if isinstance(out, list) else [out])

    # ---- events -------------------------------------------------------------------------

    @staticmethod
    def mark() -> float:
        """A stamp to pass as ``since``: only events after it count."""
        return time.monotonic()

    def clear(self) -> None:
        with self._cond:
            self.events.clear()
            self._replies.clear()

    def events_since(
        self, since: float = 0.0, name: str | None = None, **match: str
    ) -> list[Message]:
        with self._cond:
            return [e for e in self.events if e["t"] >= since and _matches(e, name, match)]

    def wait_event(
        self,
        what: str | Predicate,
        timeout: float = 5.0,
        since: float = 0.0,
        **match: str,
    ) -> Message:
        """The first event at or after ``since`` that is named ``what`` (with the ``match``
        fields) or satisfies the predicate ``what``; AmiTapError after ``timeout`` seconds."""
        if callable(what):
            pred = what
        else:

            def pred(e: Message) -> bool:
                return _matches(e, what, match)

        deadline = time.monotonic() + timeout
        checked = 0
        with self._cond:
            while True:
                start = checked if checked <= len(self.events) else 0
                for i in range(start, len(self.events)):
                    e = self.events[i]
                    if e["t"] >= since and pred(e):
                        return e
                checked = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        raise AmiTapError(
            f"no event {what if isinstance(what, str) else 'matching the predicate'} {match or ''}"
            f" within {timeout}s; last events: {self._summary(since)}"
        )

    def first_hangup_request(self, since: float, *uniqueids: str,
                             timeout: float = 5.0) -> float:
        """Asterisk's stamp of the first hang-up request on these channels. Waited for: a
        SIPp caller can exit on its BYE's 200 OK before the event reaches this tap."""
        self.wait_event(lambda e: e.get("Event") == "HangupRequest"
                        and e.get("Uniqueid") in uniqueids, timeout, since)
        return min(float(e["Timestamp"]) for e in self.events_since(since, "HangupRequest")
                   if e["Uniqueid"] in uniqueids)

    def assert_no_event(self, name: str, within: float, since: float, **match: str) -> None:
        """Wait ``within`` seconds and fail if an event like this arrived after ``since``."""
        try:
            e = self.wait_event(name, within, since, **match)
        except AmiTapError:
            return
        raise AmiTapError(f"unexpected {name}: {e}")

    def _summary(self, since: float, n: int = 12) -> str:
        noisy = {"VarSet", "RTCPSent", "RTCPReceived", "TestEvent", "Newexten"}
        tail = [e for e in self.events if e["t"] >= since and e["Event"] not in noisy][-n:]
        return "; ".join(f"{e['Event']}({e.get('Channel') or e.get('AOR') or ''})" for e in tail)


def _matches(e: Message, name: str | None, match: dict[str, str]) -> bool:
    return (name is None or e.get("Event") == name) and all(e.get(k) == v for k, v in match.items())
