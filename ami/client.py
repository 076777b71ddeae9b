"""The AMI adapter: one connection to Asterisk, owned here, read on the event loop.

The core learns what happened from AMI events and tells Asterisk what to do with
AMI actions (design.md). A lost event means a wrong board and a wrong call record,
so this adapter's job is that the link fails loudly and heals by itself:

- **On the loop, no threads (issue 20).** Each connection is an ``asyncio.Protocol``
  (``_AmiConnection``): ``data_received`` parses the chunk with our own parser
  (``ami/frames.py``, which replaced asterisk-ami 0.1.7's framing for its defects,
  pinned in tests/unit/ami/test_ami_library.py) and routes it at once. It replaced
  asterisk-ami's reader thread plus a writer thread plus a hand-off of each batch to
  the loop, which ran at 0.55x a bare asyncio reader (bench/bench_ami.py): the
  thread switches and the GIL they fought over cost the difference.
- **One connection, a fresh one each time.** Every (re)connect builds a new
  ``_AmiConnection`` with its own parser, so nothing of a dead link's half frame
  leaks into the next.
- **Our watchdog decides when the link is dead**, not a socket timeout: a ``Ping``
  every ``ping_interval``; no frame at all for ``ping_timeout`` -> the link is
  declared down (``ping_timeout`` after its last frame), the transport is aborted
  and a new connection is made with backoff.
- **Nothing can end the link silently.** A connection always ends with one
  ``on_lost`` call, whatever ended it (EOF, read error, bad banner, a bug downstream
  of ``data_received``, which is logged and ends the link loudly rather than
  freezing events); the adapter reacts by reconnecting. Actions are asyncio futures
  resolved on the loop.
- **A single writer.** Every frame goes to the transport's buffer from the loop:
  bytes never interleave and the loop never blocks on a full socket.
- **Events reach subscribers in batches**, one per chunk read (up to 256 KiB: a few
  hundred events on a busy link), in wire order.
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

Every socket and protocol error is translated into ``callflow.errors``
(``AmiLinkDown``, ``AmiActionTimeout``, ``AmiActionFailed``, ``AmiProtocolError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


class _AmiConnection(asyncio.Protocol):
    """One TCP connection, read and written on the event loop (issue 20).

    It replaced an ``asterisk.ami.AMIClient`` subclass with a reader thread, a
    writer thread and a hand-off of each batch to the loop: the thread switch and
    the GIL it fought for cost ~40 % of the ingest rate against a bare asyncio
    reader (bench/bench_ami.py). Here ``data_received`` parses each chunk
    (``ami/frames.py``) and hands it to ``sink`` on the loop at once; writes go to
    the transport's buffer (never blocks, never interleaves: one loop, one writer).

    It always ends with ``on_lost`` exactly once, whatever ended it (EOF, a read or
    write error, a bad banner, a bug in ``sink``): an exception in the sink is
    logged and ends the connection loudly instead of freezing events silently.
    """

    def __init__(self, label: str, max_frame_bytes: int,
                 sink: Callable[[_AmiConnection, Parsed], None],
                 on_banner: Callable[[], None],
                 on_lost: Callable[[BaseException | None], None]) -> None:
        self.label = label
        self._sink = sink
        self._on_banner = on_banner
        self._on_lost = on_lost
        self._parser = AmiFrameParser(max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self.finished = False
        self.last_rx = time.monotonic()
        self.end_reason = ""
        self.version: str | None = None
        self._error: BaseException | None = None
        self._lost_told = False

    # -- lifecycle ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.end_reason:
            self.end_reason = f"read failed: {exc}"
            self._error = self._error or exc
        self.finished = True
        self._transport = None
        if not self._lost_told:
            self._lost_told = True
            _guarded(self.label, "on_lost", self._on_lost, self._error)

    def eof_received(self) -> bool:
        if not self.end_reason:
            self.end_reason = "Asterisk closed the connection (EOF)"
        return False  # close the transport: connection_lost follows

    def disconnect(self) -> None:
        """Drop the link now (``abort``: nothing queued is worth waiting for)."""
        self.finished = True
        transport = self._transport
        if transport is not None:
            transport.abort()

    # -- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes on the transport (never blocks)."""
        transport = self._transport
        if self.finished or transport is None or transport.is_closing():
            raise AmiLinkDown(f"{self.label}: connection is closed")
        transport.write(data)

    # -- reading ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        now = time.monotonic()
        self.last_rx = now
        parser = self._parser
        try:
            had_banner = parser.banner is not None
            parsed = parser.feed(data, now)
            if not had_banner and parser.banner is not None:
                self.version = parser.version
                _guarded(self.label, "on_banner", self._on_banner)
            if parsed.messages or parsed.problems:
                self._sink(self, parsed)
        except AmiProtocolError as exc:
            self._end(exc, str(exc))
        except Exception as exc:  # a bug downstream must end the link loudly
            log.exception("%s: AMI reader crashed", self.label)
            self._end(exc, f"reader crashed: {exc!r}")

    def _end(self, error: BaseException, reason: str) -> None:
        self._error = error
        if not self.end_reason:
            self.end_reason = reason
        self.disconnect()


def _guarded(label: str, what: str, callback: Callable[..., Any], *args: Any) -> None:
    """Run a connection callback; an exception is logged, never raised."""
    try:
        callback(*args)
    except Exception:
        log.exception("%s: AMI %s callback raised (ignored)", label, what)


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
        self._stats: dict[str, float] = dict.fromkeys((
            "connects", "reconnects", "disconnects", "watchdog_trips", "frames", "events",
            "batches", "reads", "last_lag", "max_lag", "pings", "pongs", "actions",
            "action_timeouts", "action_errors", "unmatched_responses", "list_events",
            "lists_unannounced", "lists_without_complete",
            "malformed", "malformed_frames", "malformed_lines", "decode_errors",
            "bad_separators", "handler_errors", "resync_failures", "loop_stalls",
            "boot_waits", "boot_waits_timed_out", "filters", "filters_refused"), 0)
        self._logged_kinds: set[str] = set()
        self._wanted: Callable[[], Iterable[str]] | None = None
        self._filters_refused = False

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
            session.conn.disconnect()

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

    # -- reading (on the loop) ------------------------------------------------------------

    def _on_chunk(self, conn: _AmiConnection, parsed: Parsed) -> None:
        """Loop, from ``data_received``: route responses and list events, deliver the
        rest as one batch (one batch per chunk read, in wire order).

        Once the connection has seen ``FullyBooted``, only the messages that may answer
        an action (the parser lists them: ``Parsed.answering``) are looked at one by
        one; the events between them join the batch a slice at a time (issue 20: a
        step per event was ~5 % of the ingest).
        """
        stats = self._stats
        stats["reads"] += 1
        for problem in parsed.problems:
            self._report(problem)
        messages = parsed.messages
        stats["frames"] += len(messages)
        events: list[AmiMessage] = []
        opened = self._opened
        if opened is not None and opened.conn is conn and not opened.booted.is_set():
            for message in messages:  # each in turn: FullyBooted is awaited
                if self._route(message):
                    events.append(message)
                    if message.name == "FullyBooted":
                        self._fully_booted(conn)
        else:
            start = 0
            for at in parsed.answering:
                events += messages[start:at]
                start = at + 1
                if self._route(messages[at]):
                    events.append(messages[at])
            events += messages[start:]
        self._hand_on(events)

    def _route(self, message: AmiMessage) -> bool:
        """A response or an event with an ActionID: to the action it answers; True for
        an event that answers none (it joins the batch)."""
        action_id = message.fields.get("ActionID")
        if action_id is not None and not isinstance(action_id, str):
            action_id = action_id[0]
        if message.kind == "response":
            if action_id and action_id.startswith(_PING_PREFIX):
                self._stats["pongs"] += 1
            elif not (action_id and self._resolve(action_id, message)):
                self._stats["unmatched_responses"] += 1
                log.debug("AMI response for no pending action: %r", message.fields)
            return False
        return not (action_id and self._pending and self._resolve(action_id, message))

    def _hand_on(self, events: list[AmiMessage]) -> None:
        """A chunk's events to the subscribers, or to the held ones during a resync."""
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
                await self._ask_filters(session)
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
        conn = _AmiConnection(  # its callbacks fire only once connected: session is set
            f"{self._label}-c{int(self._stats['connects']) + 1}", self.max_frame_bytes,
            self._on_chunk, lambda: self._banner_seen(session),
            lambda error: self._reader_ended(session, error))
        session = _Session(conn, loop.create_future(), loop.create_future())
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.create_connection(lambda: conn, sock=sock)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise AmiLinkDown(f"cannot connect to {self.host}:{self.port}: "
                              f"{exc or 'timeout'}") from None
        except BaseException:
            sock.close()
            raise
        try:
            failure = await asyncio.wait_for(session.banner,
                                             self.connect_timeout)
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
                 session.conn.version)

    def only_events(self, names: Callable[[], Iterable[str]]) -> None:
        """At every login, ask Asterisk to send only the events ``names()`` gives (and
        ``FullyBooted``, which the resync waits for), with one ``Filter`` action per name
        (Asterisk 22's advanced filter ``name(...)``: a hash compare, no regex). Asterisk
        then neither formats nor sends the events nobody here reads, and we neither read
        nor parse them (issue 20). Replies to our list actions are not events and are
        never filtered. ``names`` is asked at each login, so listeners added later count
        from the next connection on. If Asterisk refuses a filter, a partial set would
        hide events silently: the link is dropped and every later login goes without
        filters (everything flows, as before), counted in ``filters_refused``."""
        self._wanted = names

    async def _ask_filters(self, session: _Session) -> None:
        if self._wanted is None or self._filters_refused:
            return
        names = sorted(set(self._wanted()) | {"FullyBooted"})
        results = await asyncio.gather(*(
            self._request(session, "Filter", {"Operation": "Add", "MatchCriteria": f"name({n})"},
                          timeout=None, is_list=False) for n in names), return_exceptions=True)
        failed = [(n, r) for n, r in zip(names, results, strict=True)
                  if isinstance(r, BaseException)]
        for _name, result in failed:
            if isinstance(result, AmiLinkDown):
                raise result
        if failed:
            self._filters_refused = True
            self._stats["filters_refused"] += 1
            name, error = failed[0]
            log.error("%s: Asterisk refused the event filter for %s (%s): reconnecting "
                      "without filters (every event will be sent)", self._label, name, error)
            raise AmiLinkDown(f"event filter refused: {error}")
        self._stats["filters"] = len(names)

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
