"""The FastAGI server: one asyncio task per call, a hard cap on calls, a clean end to each.

Why asyncio and not pyst2's ``fastagi`` module or a thread pool: pyst2's ``fastagi.py``
imports the Python 2 ``SocketServer`` module (it cannot even be imported on Python 3)
and forks per call; a thread per call has no bound and ``AGI.__init__`` cannot run off
the main thread. Calls spend nearly all their time waiting on Asterisk, which is what
an event loop is for (see bench/bench_fastagi.py for the figures).

Every way a session can end is decided here, with what the dialplan then sees
(verified against Asterisk 22; the dialplan falls back to ``Queue()`` only on FAILURE,
so a call the engine cannot finish is never dropped, STD-001):

===============================  ==================  =================================
how the session ends             server writes       AGISTATUS in the dialplan
===============================  ==================  =================================
route returns, call still up     (close)             SUCCESS
route raises CallerHungUp        (close)             HANGUP (channel already gone)
(or returns after the hang-up,
or is cut ``hangup_grace`` later)
unknown script                   FAILURE             FAILURE -> fallback
over ``max_sessions``            FAILURE at once     FAILURE -> fallback
route raises anything else       FAILURE             FAILURE -> fallback
command timeout / garbage        FAILURE             FAILURE -> fallback
environment refused, its context FAILURE             FAILURE -> fallback
has no ``refused_routes`` entry
server stopped mid-call          FAILURE             FAILURE -> fallback
===============================  ==================  =================================
A refused environment (``agi.check_env``: a caller's value carried a newline into it,
issue 15) is never routed by what it says: its channel's context, as Asterisk answers
it, picks a route in ``refused_routes`` (the service maps the inbound context to the
inbound flow: the caller still reaches an agent, as an unknown caller on no DID), or
the dialplan's own fallback runs.

FAILURE is only written while the channel is alive. Asterisk reads it once the command
it is running returns: WAIT FOR DIGIT and STREAM FILE return at once when the script
writes, EXEC waits for its application to finish (both verified).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from callflow.dialplan.agi import FAILURE_LINE, MAX_LINE_BYTES, AgiSession, printable
from callflow.dialplan.agi_stream import AgiStream
from callflow.errors import AgiCommandTimeout, AgiProtocolError, CallerHungUp

log = logging.getLogger(__name__)

Route = Callable[[AgiSession], Awaitable[None]]


class FastAgiServer:
    """Serves ``agi://host:port/<script>`` requests by calling ``routes[script]``.

    ``max_sessions`` bounds the calls handled at once (including ones still sending
    their environment); the next one is refused with FAILURE at once, never queued.
    ``command_timeout`` is each session's default per-command timeout.
    ``hangup_grace``: how long a route may go on after the caller hung up (to read
    DIALSTATUS, report the outcome) before it is cancelled; Asterisk keeps the dead
    channel and its thread until the session ends, so no session outlives its call.
    ``refused_routes``: the route (by name) that takes a refused environment, by the
    channel's dialplan context (module docstring).
    """

    def __init__(self, host: str, port: int, routes: Mapping[str, Route], *,
                 max_sessions: int = 500, command_timeout: float = 30.0,
                 env_timeout: float = 5.0, hangup_grace: float = 10.0,
                 refused_routes: Mapping[str, str] | None = None) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.host = host
        self._requested_port = port
        self.routes: Mapping[str, Route] = MappingProxyType(dict(routes))
        self.refused_routes: Mapping[str, str] = MappingProxyType(dict(refused_routes or {}))
        self.max_sessions = max_sessions
        self.command_timeout = command_timeout
        self.env_timeout = env_timeout
        self.hangup_grace = hangup_grace
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = dict.fromkeys(
            ("connections", "sessions", "rejected", "unknown_routes", "errors",
             "protocol_errors", "refused_envs", "timeouts", "hangups", "lingered",
             "completed"), 0)
        self._active = 0
        self._max_active = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AgiStream(self._on_connect, max_line=MAX_LINE_BYTES, loop=loop),
            self.host, self._requested_port, backlog=max(128, self.max_sessions))
        log.info("FastAGI server listening on %s:%d (max %d sessions)",
                 self.host, self.port, self.max_sessions)

    async def stop(self) -> None:
        """Stop accepting, end every session (FAILURE to live calls), release the port."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        log.info("FastAGI server stopped (%d sessions cut short)", len(tasks))

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("FastAGI server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def stats(self) -> dict[str, int]:
        return {**self._counts, "active": self._active, "max_active": self._max_active}

    async def _on_connect(self, stream: AgiStream) -> None:
        """The connection's task (``AgiStream`` starts it): the whole session."""
        self._counts["connections"] += 1
        if self._active >= self.max_sessions:
            self._counts["rejected"] += 1
            log.warning("FastAGI: %d sessions active, refusing a call with FAILURE "
                        "(dialplan falls back)", self._active)
            await _refuse(stream)
            return
        task = stream.task              # this task (current_task() costs a getpid)
        assert task is not None
        self._tasks.add(task)
        self._active += 1
        self._max_active = max(self._max_active, self._active)
        try:
            await self._serve(stream, task)
        except asyncio.CancelledError:
            stream.close()      # stop() cancelled us: end the connection, log nothing
        except Exception:
            log.exception("FastAGI session from %s failed", stream.get_extra_info("peername"))
            stream.close()
        finally:
            self._active -= 1
            self._tasks.discard(task)

    async def _serve(self, stream: AgiStream, task: asyncio.Task[None]) -> None:
        peer = stream.get_extra_info("peername")
        try:
            session = await AgiSession.accept(stream, env_timeout=self.env_timeout,
                                              command_timeout=self.command_timeout)
        except AgiProtocolError as exc:
            self._counts["protocol_errors"] += 1
            log.error("FastAGI from %s: %s; answering FAILURE and closing", peer, exc)
            stream.write(FAILURE_LINE)
            stream.close()
            return
        route = self._route_for(session)
        if route is None and session.refused is not None:
            await session.close(fallback=True)
            return
        if route is None:
            self._counts["unknown_routes"] += 1
            log.error("FastAGI: no route for script %r (channel %s, uniqueid %s); "
                      "answering FAILURE so the dialplan falls back",
                      session.script, session.channel, session.uniqueid)
            await session.close(fallback=True)
            return
        self._counts["sessions"] += 1
        await self._run_route(route, session, task, stream.loop)

    def _route_for(self, session: AgiSession) -> Route | None:
        """The script's route; for a refused environment, its context's refused route."""
        if session.refused is None:
            return self.routes.get(session.script)
        self._counts["refused_envs"] += 1
        name = self.refused_routes.get(session.context)
        route = self.routes.get(name) if name is not None else None
        log.warning("FastAGI: environment refused on %s in context %s: %s; %s",
                    session.describe(), printable(session.context), session.refused,
                    f"route {name!r} takes it" if route is not None
                    else "answering FAILURE so the dialplan falls back")
        return route

    async def _run_route(self, route: Route, session: AgiSession, task: asyncio.Task[None],
                         loop: asyncio.AbstractEventLoop) -> None:
        fallback = True
        watch = _HangupWatch(session, task, loop, self.hangup_grace)
        session.add_hangup_callback(watch.caller_hung_up)
        try:
            await route(session)
            fallback = False
            if session.protocol_error is not None:      # the route swallowed it
                self._counts["protocol_errors"] += 1
            else:
                self._counts["completed"] += 1
        except CallerHungUp:
            fallback = False
            self._counts["hangups"] += 1
            log.info("FastAGI %s ended: caller hung up", session.describe())
        except AgiProtocolError as exc:
            self._counts["protocol_errors"] += 1
            log.error("FastAGI %s ended by a protocol error: %s", session.describe(), exc)
        except AgiCommandTimeout as exc:
            self._counts["timeouts"] += 1
            log.error("FastAGI %s ended by a command timeout: %s", session.describe(), exc)
        except asyncio.CancelledError:
            if not watch.lingering or task.uncancel() > 0:
                log.warning("FastAGI %s cut short (server stopping)", session.describe())
                raise
            fallback = False
            self._counts["lingered"] += 1
        except Exception:
            self._counts["errors"] += 1
            log.exception("FastAGI route %r failed on %s; the dialplan falls back",
                          session.script, session.describe())
        finally:
            watch.route_ended()
            await session.close(fallback=fallback and not session.hung_up)


class _HangupWatch:
    """Cuts a route that goes on ``grace`` seconds after the caller hung up.

    One small object a session where there were two closures, their cells and a list
    of timers (issue 20: fewer objects alive per waiting session, fewer young
    collections). A hang-up seen once the route ended (Asterisk closes after our close)
    arms nothing: it used to leave a timer holding the session for ``hangup_grace``
    and a false "still running" warning for every call (bench_fastagi).
    """

    __slots__ = ("_ended", "_grace", "_loop", "_session", "_task", "_timer", "lingering")

    def __init__(self, session: AgiSession, task: asyncio.Task[None],
                 loop: asyncio.AbstractEventLoop, grace: float) -> None:
        self._session = session
        self._task = task
        self._loop = loop
        self._grace = grace
        self._timer: asyncio.TimerHandle | None = None
        self._ended = False
        self.lingering = False
        """The route was cancelled for lingering (not by the server stopping)."""

    def caller_hung_up(self) -> None:
        """The session's hang-up callback (called once): arm the grace timer."""
        if not self._ended and self._timer is None:
            self._timer = self._loop.call_later(self._grace, self._end_lingering_route)

    def _end_lingering_route(self) -> None:
        self.lingering = True
        session = self._session
        log.warning("FastAGI route %r still running %g s after the caller hung up on "
                    "%s; ending it", session.script, self._grace, session.describe())
        self._task.cancel()

    def route_ended(self) -> None:
        """No more cutting: the timer, if armed, is cancelled and none is armed later."""
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


REFUSE_DRAIN_SECONDS = 1.0
REFUSE_DRAIN_BYTES = 64 * 1024


async def _refuse(stream: AgiStream) -> None:
    """FAILURE at once, then read what Asterisk was still sending before closing.

    Closing with its environment block unread would make our kernel answer with a
    reset, and a reset can overtake the FAILURE line (seen through a relay): the
    dialplan would then read a plain close, SUCCESS, and drop the caller. Bounded in
    time and bytes, so a flood of refused connections stays cheap.
    """
    stream.write(FAILURE_LINE)
    stream.write_eof()
    deadline = stream.loop.time() + REFUSE_DRAIN_SECONDS
    drained = 0
    try:
        while drained < REFUSE_DRAIN_BYTES and (line := await stream.readline(deadline)):
            drained += len(line)
    except (AgiProtocolError, TimeoutError):
        pass
    finally:
        stream.close()
