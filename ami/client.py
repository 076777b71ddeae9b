"""The AMI adapter: one connection to Asterisk, owned here, over asterisk-ami 0.1.7.

The core learns what happened from AMI events and tells Asterisk what to do with
AMI actions (design.md). A lost event means a wrong board and a wrong call record,
so this adapter's job is that the link fails loudly and heals by itself:

- **One connection, a fresh client each time.** Every (re)connect builds a new
  ``_AmiConnection`` (an ``asterisk.ami.AMIClient`` subclass): asterisk-ami's reader
  thread cannot be revived once it ends, and ``AutoReconnect`` only re-logs-in on
  the same dead client.
- **Reader thread without a socket timeout.** asterisk-ami reads with a 3 s socket
  timeout, so an idle link dies silently after 3 s. Here the socket blocks with no
  timeout and *our* watchdog decides: a ``Ping`` every ``ping_interval``; no frame
  at all for ``ping_timeout`` -> the link is declared down (``ping_timeout`` after
  its last frame), the socket is shut down without the blocking
  ``disconnect()`` (it joins the reader, which sits in ``recv``), and a new client
  connects with backoff.
- **Nothing can kill the reader silently.** Its loop catches everything and always
  ends with ``on_disconnect``; listener callbacks are wrapped; the adapter reacts
  to ``on_disconnect`` by reconnecting. No callback ever reads
  ``FutureResponse.response`` (that blocks the reader thread on itself); actions
  are asyncio futures resolved on the loop.
- **A single writer.** asterisk-ami's ``send`` uses ``socket.send`` (may truncate)
  from whichever thread calls it (bytes interleave). Every frame goes through one
  queue to one writer thread per connection, which uses ``sendall`` under one lock,
  so the event loop never blocks on a full socket either.
- **Events reach the loop in batches.** The reader parses each ``recv`` chunk
  (``ami/frames.py``) and queues the messages; one
  ``call_soon_threadsafe`` is scheduled only when no hand-off is pending, so a busy
  link costs one loop wake-up per batch, not per event (the per-event hand-off
  halved throughput in the measurements of libraries.md).
- **EventList actions are aggregated** by ActionID: the ``Response`` (``EventList:
  start``), every event carrying that ActionID, up to the ``...Complete`` event.
  Those list events go to the caller of ``action_list``, not to subscribers.
  A list ends at an event with ``EventList: Complete`` or whose name ends in
  ``Complete`` (``QueueStatusComplete``...), so it still ends where a version leaves
  the header out. A list action whose ``Response`` has no ``EventList: start``
  (older versions, some actions) used to resolve at once, empty, while its events
  were still coming: now its events are collected the same way, and if no
  ``...Complete`` event comes the list ends after ``list_quiet`` seconds without one
  of its events (or at the action timeout) and is returned with what came, its
  ``warning`` saying so; both cases are counted (``lists_unannounced``,
  ``lists_without_complete``) and logged once per action. A list that did announce
  itself and then sends no ``...Complete`` still raises ``AmiActionTimeout`` (with
  the number of events received): Asterisk promised an end, so a snapshot without
  it is not trusted as whole.
- **Malformed input is counted and logged once per kind**: every ``FrameProblem``
  of the parser adds to ``malformed`` and to its kind's counter (``bad_separators``
  for glued frames split apart, ``malformed_lines``, ``decode_errors``,
  ``malformed_frames`` for lost ones); the first of each kind is logged (WARNING if
  repaired, ERROR if lost), later ones at DEBUG, so a peer that breaks every frame
  cannot flood the log while the counters still show every case.

Resync (decided here): the ``on_connected`` hooks run after every successful login,
the first one included, once Asterisk says ``FullyBooted``, and **before** any event
of that connection is delivered. Asterisk accepts AMI logins while it is still
loading modules, and a module's actions do not exist before it is loaded (measured
after a restart: ``PJSIPShowContacts`` -> "Invalid/unknown command" 0.5 s after the
port opened, and the whole resync was lost). Asterisk sends ``FullyBooted`` right
after the login reply when it is up (main/manager.c ``action_login``), else once when
it gets there (main/asterisk.c ``publish_fully_booted``); the hooks wait for it, at
most ``boot_timeout`` seconds (a login whose events mask leaves out the system class
never gets it: then they run anyway, counted in ``boot_waits_timed_out``).
While they run, actions work (the hooks call ``action_list``) but events are held;
when the hooks are done (or failed, logged, or hit ``resync_timeout``) the held
events are delivered in order and only then is the link ``up``. So the core sees
the snapshot first and everything after it; an event that happened just before
the snapshot may be delivered after it, so handlers must be idempotent (they are:
runtime.py ignores duplicates).

Every asterisk-ami and socket exception is translated into ``callflow.errors``
(``AmiLinkDown``, ``AmiActionTimeout``, ``AmiActionFailed``, ``AmiProtocolError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asterisk.ami import AMIClient  # type: ignore[import-untyped]

from callflow.ami.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    AmiFrameParser,
    AmiListResult,
    AmiMessage,
    FrameProblem,
    Parsed,
    encode_action,
)
from callflow.errors import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiError,
    AmiLinkDown,
    AmiProtocolError,
)

__all__ = ["AmiClient", "AmiListResult", "AmiMessage"]

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[AmiMessage]], None]
ConnectedHook = Callable[[], Awaitable[None]]

_RECV_BYTES = 64 * 1024  # libraries.md: 64 KiB reads beat asterisk-ami's 1 KiB default
_PING_PREFIX = "cf-ping-"
_EMPTY_LIST_RE = re.compile(r"^No [A-Za-z]+( [A-Za-z]+)? found$")
_PROBLEM_COUNTERS: dict[str, str] = {
    "separator": "bad_separators",
    "bad_lines": "malformed_lines",
    "decode": "decode_errors",
    "no_head": "malformed_frames",
    "oversize": "malformed_frames",
}
"""The stats counter of each FrameProblem kind (``malformed`` counts them all)."""
_instance_ids = itertools.count(1)


class _AmiConnection(AMIClient):  # type: ignore[misc]  # untyped library
    """One TCP connection: asterisk-ami's client shape, its defective parts replaced.

    Kept from asterisk-ami: the client/listener model (``add_listener``,
    ``on_connect``/``on_disconnect``) and one daemon reader thread per client.
    Replaced, each for a defect of 0.1.7: ``connect`` (3 s socket timeout),
    ``listen`` (a listener exception or an early EOF kills the thread without
    ``on_disconnect``), ``_next_pack`` (unbounded, quadratic buffer; see
    ami_frames), ``send`` (``socket.send`` from any thread), ``disconnect`` (joins
    the reader on the caller's thread).
    """

    def __init__(self, sock: socket.socket, label: str, max_frame_bytes: int,
                 sink: Callable[[_AmiConnection, Parsed], None]) -> None:
        peer = sock.getpeername()
        address, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
        super().__init__(address=address, port=port, timeout=None, buffer_size=_RECV_BYTES)
        self.label = label
        self._socket = sock
        self._sink = sink
        self._parser = AmiFrameParser(max_frame_bytes)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self.finished = threading.Event()
        self.last_rx = time.monotonic()
        self.end_reason = ""

    # -- lifecycle ------------------------------------------------------------------

    def connect(self) -> None:
        """Start the reader and writer threads on the already connected socket."""
        self._thread = threading.Thread(target=self.listen, name=f"{self.label}-reader",
                                        daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.label}-writer",
                                        daemon=True)
        self._writer.start()
        self._thread.start()

    def disconnect(self) -> None:
        """Shut the socket down and return at once (never joins: safe on the loop).

        ``shutdown`` wakes the reader out of ``recv`` (``close`` alone does not on
        Linux); the reader itself closes the socket on its way out, after the
        writer has stopped, so no thread can touch a reused file descriptor.
        """
        self.finished.set()
        self._outbox.put(None)
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> bool:
        """Wait for the reader thread to end (off the loop); True if it did."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the single writer thread (never blocks)."""
        if self.finished.is_set():
            raise AmiLinkDown(f"{self.label}: connection is closed")
        self._outbox.put(data)

    def send(self, pack: Any) -> None:
        """asterisk-ami's send, routed through the single writer (str(pack) + CRLF)."""
        self.write((str(pack) + "\r\n").encode(self.encoding))

    def _write_loop(self) -> None:
        while True:
            data = self._outbox.get()
            if data is None:
                return
            try:
                with self._write_lock:
                    self._socket.sendall(data)
            except OSError as exc:
                if not self.finished.is_set():
                    self.end_reason = f"write failed: {exc}"
                    log.warning("%s: AMI write failed: %s", self.label, exc)
                self.disconnect()
                return

    # -- reading ----------------------------------------------------------------------

    def listen(self) -> None:
        """Reader thread body: always ends with ``on_disconnect``, whatever happens."""
        error: BaseException | None = None
        sock = self._socket
        parser = self._parser
        try:
            while not self.finished.is_set():
                data = sock.recv(self._buffer_size)
                if not data:
                    if not self.end_reason:
                        self.end_reason = "Asterisk closed the connection (EOF)"
                    break
                now = time.monotonic()
                self.last_rx = now
                had_banner = parser.banner is not None
                parsed = parser.feed(data, now)
                if not had_banner and parser.banner is not None:
                    self._ami_version = parser.version
                    self._fire_on_connect()
                if (parsed.messages or parsed.problems) and not self.finished.is_set():
                    self._sink(self, parsed)
        except AmiProtocolError as exc:
            error = exc
            self.end_reason = str(exc)
        except OSError as exc:
            if not self.finished.is_set():
                error = exc
                self.end_reason = f"read failed: {exc}"
        except BaseException as exc:  # the thread must never die without telling us
            error = exc
            self.end_reason = f"reader crashed: {exc!r}"
            log.exception("%s: AMI reader thread crashed", self.label)
        finally:
            self.disconnect()
            if self._writer is not None:
                self._writer.join(1.0)
            with contextlib.suppress(OSError):
                sock.close()
            self._fire_on_disconnect(error=error)

    def _fire_on_connect(self, **kwargs: Any) -> None:
        for listener in self._listeners:
            _guarded(self.label, "on_connect", listener.on_connect, source=self, **kwargs)

    def _fire_on_disconnect(self, **kwargs: Any) -> None:
        for listener in self._listeners:
            _guarded(self.label, "on_disconnect", listener.on_disconnect, source=self, **kwargs)


def _guarded(label: str, what: str, callback: Callable[..., Any], **kwargs: Any) -> None:
    """Run a listener callback on the reader thread; an exception is logged, never raised."""
    try:
        callback(**kwargs)
    except Exception:
        log.exception("%s: AMI %s listener raised (ignored, reader keeps running)", label, what)


@dataclass
class _Pending:
    """An action waiting for its answer (on the loop only)."""

    conn: _AmiConnection
    name: str
    future: asyncio.Future[Any]
    is_list: bool
    response: AmiMessage | None = None
    events: list[AmiMessage] = field(default_factory=list)
    unannounced: bool = False                  # a list whose Response lacked EventList
    quiet: asyncio.TimerHandle | None = None   # ends an unannounced list after silence


@dataclass
class _Session:
    """Loop-side state of one connection."""

    conn: _AmiConnection
    banner: asyncio.Future[str]  # "" once the banner was read, else why the link ended
    lost: asyncio.Future[str]
    stall_reset: float = 0.0
    booted: asyncio.Event = field(default_factory=asyncio.Event)  # FullyBooted seen


class AmiClient:
    """The one AMI connection of a callflow process (see the module docstring)."""

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 action_timeout: float = 5.0, ping_interval: float = 1.0,
                 ping_timeout: float = 2.0, connect_timeout: float = 3.0,
                 reconnect_backoff: tuple[float, float] = (0.2, 5.0),
                 events: str = "on", resync_timeout: float = 30.0,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 list_quiet: float = 0.5, boot_timeout: float = 15.0) -> None:
        if ping_interval >= ping_timeout:
            raise ValueError("ping_interval must be shorter than ping_timeout, or a healthy "
                             "idle link would be declared dead between two pings")
        if list_quiet <= 0:
            raise ValueError("list_quiet must be positive")
        self.host, self.port, self.username = host, port, username
        self._secret = secret
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_backoff = reconnect_backoff
        self.events_mask = events
        self.resync_timeout = resync_timeout
        self.boot_timeout = boot_timeout
        self.max_frame_bytes = max_frame_bytes
        self.list_quiet = list_quiet
        self._label = f"ami{next(_instance_ids)}"
        self._ids = itertools.count(1)
        self._handlers: list[BatchHandler] = []
        self._hooks: list[ConnectedHook] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None  # logged in (actions allowed)
        self._opened: _Session | None = None  # the connection being supervised
        self._up = False                         # logged in and resynced
        self._up_event = asyncio.Event()
        self._stopping = False
        self._last_error = "not started"
        self._pending: dict[str, _Pending] = {}
        self._holding = False
        self._held: list[AmiMessage] = []
        self._inbox: list[tuple[_AmiConnection, Parsed]] = []
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False
        self._stats: dict[str, float] = dict.fromkeys((
            "connects", "reconnects", "disconnects", "watchdog_trips", "frames", "events",
            "batches", "handoffs", "last_lag", "max_lag", "pings", "pongs", "actions",
            "action_timeouts", "action_errors", "unmatched_responses", "list_events",
            "lists_unannounced", "lists_without_complete",
            "malformed", "malformed_frames", "malformed_lines", "decode_errors",
            "bad_separators", "handler_errors", "resync_failures", "loop_stalls",
            "boot_waits", "boot_waits_timed_out"), 0)
        self._logged_kinds: set[str] = set()

    # -- public interface -------------------------------------------------------------

    def subscribe(self, handler: BatchHandler) -> None:
        """``handler(batch)`` runs on the loop for every batch of events, in wire order.

        Responses and the events of ``action_list`` replies are not in batches. An
        exception in a handler is logged and counted; later batches still arrive.
        """
        self._handlers.append(handler)

    def on_connected(self, hook: ConnectedHook) -> None:
        """Run ``await hook()`` after every login, before that connection's events flow."""
        self._hooks.append(hook)

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task = self._loop.create_task(self._supervise(), name=f"{self._label}-supervisor")

    async def wait_up(self, timeout: float) -> None:
        """Wait until logged in and resynced; AmiLinkDown (with the last error) if not."""
        try:
            await asyncio.wait_for(self._up_event.wait(), timeout)
        except TimeoutError:
            raise AmiLinkDown(f"AMI {self.host}:{self.port} not up within {timeout:g} s "
                              f"(last error: {self._last_error})") from None

    async def stop(self) -> None:
        """Log off politely if possible, drop the link, end the threads; < 1 s."""
        self._stopping = True
        session = self._session
        if session is not None and self._up:
            with contextlib.suppress(AmiError):
                await self._request(session, "Logoff", {}, timeout=0.25, is_list=False)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if session is not None:
            await asyncio.to_thread(session.conn.join, 0.5)

    async def action(self, name: str, *, _timeout: float | None = None,
                     **fields: str | list[str]) -> AmiMessage:
        """Send one action and return its Response.

        ``_timeout`` (underscored: AMI header names are case-insensitive, so a plain
        ``timeout`` would collide with Originate's ``Timeout``) overrides
        ``action_timeout``. Raises AmiLinkDown, AmiActionTimeout, AmiActionFailed
        (``Response: Error``) or AmiProtocolError (a field would break the frame).
        """
        result = await self._request(self._session_or_raise(name), name, fields,
                                     timeout=_timeout, is_list=False)
        assert isinstance(result, AmiMessage)
        return result

    async def send(self, name: str, fields: Mapping[str, str | list[str]], *,
                   timeout: float | None = None) -> AmiMessage:
        """``action`` with the fields as a mapping (no header name can collide with a
        keyword of ours)."""
        result = await self._request(self._session_or_raise(name), name, dict(fields),
                                     timeout=timeout, is_list=False)
        assert isinstance(result, AmiMessage)
        return result

    async def action_list(self, name: str, *, _timeout: float | None = None,
                          **fields: str | list[str]) -> AmiListResult:
        """Send an EventList action (CoreShowChannels, PJSIPShowContacts, QueueStatus...).

        The timeout covers the whole list, up to its ``...Complete`` event. Asterisk's
        PJSIP listings answer an empty list with ``Response: Error`` / ``Message: No
        Contacts found``: that is returned as an empty list, not raised. A Response
        without ``EventList: start`` is collected all the same (module docstring);
        if no ``...Complete`` event ended it, ``complete`` is None and ``warning``
        says why the list may be short.
        """
        result = await self._request(self._session_or_raise(name), name, fields,
                                     timeout=_timeout, is_list=True)
        assert isinstance(result, AmiListResult)
        return result

    @property
    def up(self) -> bool:
        """Logged in and resynced; False from the moment a loss is noticed until then."""
        return self._up

    @property
    def stats(self) -> dict[str, float]:
        """Counters; ``last_lag``/``max_lag`` = seconds from recv to delivery on the loop."""
        return dict(self._stats)

    # -- actions ------------------------------------------------------------------------

    def _session_or_raise(self, name: str) -> _Session:
        session = self._session
        if session is None:
            raise AmiLinkDown(f"cannot send {name}: AMI link is down ({self._last_error})")
        return session

    async def _request(self, session: _Session, name: str, fields: dict[str, Any], *,
                       timeout: float | None, is_list: bool) -> AmiMessage | AmiListResult:
        action_id = f"{self._label}-{next(self._ids)}"
        data = encode_action(name, action_id, fields)
        loop = asyncio.get_running_loop()
        pending = _Pending(session.conn, name, loop.create_future(), is_list)
        self._pending[action_id] = pending
        self._stats["actions"] += 1
        limit = self.action_timeout if timeout is None else timeout
        try:
            session.conn.write(data)
            return await asyncio.wait_for(pending.future, limit)
        except TimeoutError:
            if pending.unannounced and pending.response is not None:
                return self._cut_short_list(pending, f"the {limit:g} s action timeout")
            self._stats["action_timeouts"] += 1
            got = (f" ({len(pending.events)} list event(s) came, no ...Complete event)"
                   if pending.response is not None else "")
            raise AmiActionTimeout(f"AMI {name} (ActionID {action_id}) got no complete "
                                   f"response within {limit:g} s{got}") from None
        finally:
            self._pending.pop(action_id, None)
            if pending.quiet is not None:
                pending.quiet.cancel()
            if not pending.future.done():
                pending.future.cancel()

    def _resolve(self, action_id: str, message: AmiMessage) -> bool:
        """Route a response or list event to its action; True if it belonged to one."""
        pending = self._pending.get(action_id)
        if pending is None or pending.future.done():
            return False
        if message.is_response:
            self._answer(pending, message)
            return True
        if not pending.is_list:
            return False  # e.g. OriginateResponse of an Originate: a real event
        if message.get("EventList").lower() == "complete" or message.name.endswith("Complete"):
            self._end_list(pending, message)
        else:
            pending.events.append(message)
            self._stats["list_events"] += 1
            if pending.quiet is not None:
                self._arm_quiet(pending)
        return True

    def _answer(self, pending: _Pending, message: AmiMessage) -> None:
        """An action's Response: its result, its error, or the head of its list."""
        if pending.is_list and _EMPTY_LIST_RE.match(message.get("Message")):
            pending.future.set_result(AmiListResult(message, [], None))
        elif message.name.lower() == "error":
            self._stats["action_errors"] += 1
            pending.future.set_exception(AmiActionFailed(
                f"AMI {pending.name} failed: {message.get('Message') or 'Response: Error'}"))
        elif not pending.is_list:
            pending.future.set_result(message)
        else:
            pending.response = message
            if message.get("EventList").lower() != "start":
                pending.unannounced = True
                self._stats["lists_unannounced"] += 1
                self._arm_quiet(pending)

    def _arm_quiet(self, pending: _Pending) -> None:
        """(Re)start the silence that ends an unannounced list (module docstring)."""
        if pending.quiet is not None:
            pending.quiet.cancel()
        loop = asyncio.get_running_loop()
        pending.quiet = loop.call_later(self.list_quiet, self._quiet_list, pending)

    def _quiet_list(self, pending: _Pending) -> None:
        pending.quiet = None
        if not pending.future.done():
            pending.future.set_result(self._cut_short_list(
                pending, f"{self.list_quiet:g} s without one of its events"))

    def _end_list(self, pending: _Pending, complete: AmiMessage) -> None:
        """The ``...Complete`` event: the list is whole, announced or not."""
        response = pending.response or AmiMessage("Success", {}, complete.received_at,
                                                  "response")
        if pending.unannounced:
            self._log_once(f"list-unannounced:{pending.name}", logging.WARNING,
                           "AMI %s: Asterisk answered without 'EventList: start'; its %d "
                           "event(s) were collected up to %s (counted in "
                           "stats['lists_unannounced'])", pending.name, len(pending.events),
                           complete.name)
        pending.future.set_result(AmiListResult(response, pending.events, complete))

    def _cut_short_list(self, pending: _Pending, ended_by: str) -> AmiListResult:
        """An unannounced list that no ``...Complete`` event ended: what came, and why."""
        assert pending.response is not None
        self._stats["lists_without_complete"] += 1
        warning = (f"AMI {pending.name}: the Response had no 'EventList: start' and no "
                   f"...Complete event came; the list ended after {ended_by} with "
                   f"{len(pending.events)} event(s), it may be incomplete")
        self._log_once(f"list-without-complete:{pending.name}", logging.WARNING,
                       "%s (counted in stats['lists_without_complete'])", warning)
        return AmiListResult(pending.response, pending.events, None, warning)

    def _fail_pending(self, conn: _AmiConnection, reason: str) -> None:
        for pending in list(self._pending.values()):
            if pending.conn is conn and not pending.future.done():
                pending.future.set_exception(AmiLinkDown(
                    f"AMI link lost while waiting for {pending.name}: {reason}"))

    # -- reader thread -> loop ------------------------------------------------------------

    def _from_reader(self, conn: _AmiConnection, parsed: Parsed) -> None:
        """Reader thread: queue one chunk's messages; wake the loop once per batch."""
        with self._inbox_lock:
            self._inbox.append((conn, parsed))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the process is ending
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """Loop: route responses and list events, deliver everything else as one batch."""
        with self._inbox_lock:
            items, self._inbox = self._inbox, []
            self._drain_scheduled = False
        self._stats["handoffs"] += 1
        events: list[AmiMessage] = []
        stats = self._stats
        pending = self._pending
        for conn, parsed in items:
            for problem in parsed.problems:
                self._report(problem)
            messages = parsed.messages
            stats["frames"] += len(messages)
            for message in messages:
                action_id = message.fields.get("ActionID")
                if action_id is not None and not isinstance(action_id, str):
                    action_id = action_id[0]
                if message.kind == "response":
                    if action_id and action_id.startswith(_PING_PREFIX):
                        stats["pongs"] += 1
                    elif not (action_id and self._resolve(action_id, message)):
                        stats["unmatched_responses"] += 1
                        log.debug("AMI response for no pending action: %r", message.fields)
                elif not (action_id and pending and self._resolve(action_id, message)):
                    events.append(message)
                    if message.name == "FullyBooted":
                        self._fully_booted(conn)
        if not events:
            return
        if self._holding:
            self._held.extend(events)
            return
        self._deliver(events)

    def _fully_booted(self, conn: _AmiConnection) -> None:
        opened = self._opened
        if opened is not None and opened.conn is conn:
            opened.booted.set()

    def _deliver(self, events: list[AmiMessage]) -> None:
        stats = self._stats
        lag = time.monotonic() - events[0].received_at
        stats["last_lag"] = lag
        stats["max_lag"] = max(stats["max_lag"], lag)
        stats["events"] += len(events)
        stats["batches"] += 1
        batch = tuple(events)
        for handler in self._handlers:
            try:
                handler(batch)
            except Exception:
                stats["handler_errors"] += 1
                log.exception("AMI batch handler %r raised (batch of %d skipped for it)",
                              handler, len(batch))

    def _report(self, problem: FrameProblem) -> None:
        """Count a parser problem, log it (once per kind), fail the action it cost."""
        stats = self._stats
        stats["malformed"] += 1
        counter = _PROBLEM_COUNTERS[problem.kind]
        stats[counter] += 1
        if problem.skipped:
            self._log_once(f"frame:{problem.kind}", logging.ERROR,
                           "AMI: malformed frame from Asterisk: %s (counted in stats[%r])",
                           problem.describe(), counter)
            pending = self._pending.get(problem.action_id)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(AmiProtocolError(
                    f"AMI {pending.name}: its response was malformed: {problem.reason}"))
        else:
            self._log_once(f"frame:{problem.kind}", logging.WARNING,
                           "AMI: repaired frame from Asterisk: %s (counted in stats[%r])",
                           problem.describe(), counter)

    def _log_once(self, kind: str, level: int, message: str, *args: object) -> None:
        """Log the first anomaly of ``kind`` at ``level``, the later ones at DEBUG.

        Every one is counted in ``stats`` by the caller; this only keeps a peer that
        repeats the same fault from flooding the log.
        """
        if kind in self._logged_kinds:
            level = logging.DEBUG
        else:
            self._logged_kinds.add(kind)
            message += " [first of its kind: the next ones are logged at DEBUG level]"
        log.log(level, message, *args)

    # -- connection supervision -----------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, log in, resync, wait for the loss; again, with backoff, until stop()."""
        low, high = self.reconnect_backoff
        delay = low
        while not self._stopping:
            session: _Session | None = None
            watchdog: asyncio.Task[None] | None = None
            up_since = 0.0
            try:
                session = await self._open()
                self._opened = session
                watchdog = asyncio.create_task(self._watchdog(session),
                                               name=f"{self._label}-watchdog")
                self._holding = True  # this connection's events wait for its resync
                await self._login(session)
                await self._wait_booted(session)
                await self._resync(session)
                if not session.lost.done():
                    up_since = time.monotonic()
                    self._up = True
                    self._up_event.set()
                reason = await session.lost
                self._last_error = reason
                log.log(logging.INFO if self._stopping else logging.WARNING,
                        "%s: AMI link to %s:%s lost: %s", self._label, self.host, self.port,
                        reason)
            except AmiError as exc:
                self._last_error = str(exc)
                log.warning("%s: AMI connect to %s:%s failed: %s (retry in %.1f s)",
                            self._label, self.host, self.port, exc, delay)
            except Exception as exc:  # a bug here must not end reconnection for good
                self._last_error = repr(exc)
                log.exception("%s: AMI supervisor error (retry in %.1f s)", self._label, delay)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                self._opened = None
                self._teardown(session)
            if self._stopping:
                return
            if up_since:
                self._stats["disconnects"] += 1
                if time.monotonic() - up_since >= high:
                    delay = 0.0  # a link that lived a while: try again at once, then back off
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, low), high)

    async def _open(self) -> _Session:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise AmiLinkDown(f"cannot resolve {self.host}: {exc}") from None
        family, socktype, proto, _, address = infos[0]
        sock = socket.socket(family, socktype, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(True)  # no timeout: the watchdog judges the link, not recv
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise AmiLinkDown(f"cannot connect to {self.host}:{self.port}: "
                              f"{exc or 'timeout'}") from None
        except BaseException:
            sock.close()
            raise
        conn = _AmiConnection(sock, f"{self._label}-c{int(self._stats['connects']) + 1}",
                              self.max_frame_bytes, self._from_reader)
        session = _Session(conn, loop.create_future(), loop.create_future())
        conn.add_listener(
            on_connect=lambda source: self._threadsafe(self._banner_seen, session),
            on_disconnect=lambda source, error=None: self._threadsafe(
                self._reader_ended, session, error))
        conn.connect()
        try:
            failure = await asyncio.wait_for(session.banner, self.connect_timeout)
        except TimeoutError:
            conn.disconnect()
            raise AmiLinkDown(f"no AMI banner from {self.host}:{self.port} within "
                              f"{self.connect_timeout:g} s") from None
        except BaseException:
            conn.disconnect()
            raise
        if failure:
            raise AmiLinkDown(failure)
        return session

    def _threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: nothing to tell
                loop.call_soon_threadsafe(callback, *args)

    def _banner_seen(self, session: _Session) -> None:
        if not session.banner.done():
            session.banner.set_result("")

    def _reader_ended(self, session: _Session, error: BaseException | None) -> None:
        reason = session.conn.end_reason or (f"reader ended: {error!r}" if error else "closed")
        if not session.banner.done():
            session.banner.set_result(reason or "closed before the banner")
        self._mark_lost(session, reason)

    def _mark_lost(self, session: _Session, reason: str) -> None:
        """The link is gone: stop accepting actions, fail those in flight, wake supervise."""
        if self._session is session:
            self._session = None
            self._up = False
            self._up_event.clear()
        self._fail_pending(session.conn, reason)
        if not session.lost.done():
            session.lost.set_result(reason)

    async def _login(self, session: _Session) -> None:
        fields = {"Username": self.username, "Secret": self._secret, "Events": self.events_mask}
        try:
            await self._request(session, "Login", fields, timeout=None, is_list=False)
        except AmiActionFailed as exc:
            raise AmiActionFailed(f"AMI login as {self.username!r} refused ({exc})") from None
        self._session = session
        self._stats["connects"] += 1
        if self._stats["connects"] > 1:
            self._stats["reconnects"] += 1
        log.info("%s: AMI logged in to %s:%s (AMI %s)", self._label, self.host, self.port,
                 session.conn._ami_version)

    async def _wait_booted(self, session: _Session) -> None:
        """Hold the resync until Asterisk has loaded its modules (module docstring)."""
        if session.booted.is_set():
            return
        self._stats["boot_waits"] += 1
        log.info("%s: Asterisk is still booting; the resync waits for FullyBooted",
                 self._label)
        booted = asyncio.ensure_future(session.booted.wait())
        either: set[asyncio.Future[Any]] = {booted, session.lost}
        try:
            await asyncio.wait(either, timeout=self.boot_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            booted.cancel()
        if session.lost.done():
            raise AmiLinkDown(f"AMI link lost while Asterisk booted: {session.lost.result()}")
        if not session.booted.is_set():
            self._stats["boot_waits_timed_out"] += 1
            log.warning("%s: no FullyBooted within %g s of the login (is the system event "
                        "class off?); resyncing anyway", self._label, self.boot_timeout)

    async def _resync(self, session: _Session) -> None:
        try:
            for hook in self._hooks:
                if session.lost.done():
                    raise AmiLinkDown(f"AMI link lost during resync: {session.lost.result()}")
                try:
                    await asyncio.wait_for(hook(), self.resync_timeout)
                except AmiLinkDown:
                    raise
                except Exception:
                    self._stats["resync_failures"] += 1
                    log.exception("%s: AMI resync hook %r failed; events flow on", self._label,
                                  hook)
        finally:
            self._release_held()

    def _release_held(self) -> None:
        """Deliver the events held during login and resync: they are facts, in order."""
        self._holding = False
        held, self._held = self._held, []
        if held:
            self._deliver(held)

    async def _watchdog(self, session: _Session) -> None:
        """Declare the link dead when nothing at all arrived for ``ping_timeout``.

        Any frame proves the link alive (events flow through the same Asterisk
        session thread that answers pings); a Ping every ``ping_interval`` makes sure
        an idle link still produces one. The task sleeps until the next ping or the
        silence deadline, whichever is first, so a dead link is declared
        ``ping_timeout`` after its last frame, not a polling tick later.
        """
        conn = session.conn
        ping_ids = itertools.count(1)
        now = time.monotonic()
        session.stall_reset = now
        next_ping = now
        planned_wake = now
        while True:
            now = time.monotonic()
            if now - planned_wake > self.ping_timeout / 2:
                # the loop itself was stalled: pings were not sent, so silence proves nothing
                self._stats["loop_stalls"] += 1
                log.warning("%s: event loop stalled for %.2f s; AMI watchdog re-armed",
                            self._label, now - planned_wake)
                session.stall_reset = now
                next_ping = now
            if now >= next_ping:
                next_ping = now + self.ping_interval
                self._stats["pings"] += 1
                with contextlib.suppress(AmiLinkDown):
                    conn.write(encode_action("Ping", f"{_PING_PREFIX}{next(ping_ids)}", {}))
            heard = max(conn.last_rx, session.stall_reset)
            if now - heard >= self.ping_timeout:
                self._stats["watchdog_trips"] += 1
                conn.end_reason = (f"no frame from Asterisk for {now - heard:.2f} s "
                                   f"(ping unanswered)")
                self._mark_lost(session, conn.end_reason)
                return
            planned_wake = min(next_ping, heard + self.ping_timeout)
            await asyncio.sleep(max(planned_wake - now, 0.001))

    def _teardown(self, session: _Session | None) -> None:
        """Drop a connection without blocking the loop; fail what waited on it."""
        self._up = False
        self._up_event.clear()
        self._release_held()
        if session is None:
            return
        session.conn.disconnect()
        self._mark_lost(session, session.conn.end_reason or self._last_error)
        if not session.banner.done():
            session.banner.cancel()
