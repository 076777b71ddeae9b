"""``callflow demo``: simulated callers and agents against a running ``callflow run``.

The order is a person's: the agents' softphones start and REGISTER, the agents log in
at their desktops and get ready, then callers start to call. A caller hangs up
``--patience`` seconds after Asterisk took the call (waiting, then talking: a caller who
waited long talks little, or gives up in the queue); an agent hangs up only if the caller
has not after ``--talk`` seconds, so the customer hangs up first, as STD-110 wants.

On Ctrl-C (or at the end of ``--duration``) the callers stop calling and the calls in
progress end by themselves within ``--patience``; the agents log out, each after the call
it is on (a callback the dialer placed ends within ``--talk``); the softphones
unregister, and every SIPp process is stopped. A second Ctrl-C cuts the wait short: the
calls cut off then stay in Asterisk until it hangs them up (``callflow pbx stop --force``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from callflow.agents.roster import Roster, RosterAgent
from callflow.demo.desks import DemoDesk
from callflow.demo.phones import Sipp, SippPhones
from callflow.demo.pidfile import remove_pid, write_pid
from callflow.errors import CallflowError
from callflow.settings import Settings, private_dir

log = logging.getLogger(__name__)

Printer = Callable[[str], None]
REGISTER_EXPIRES_S = 3600
#: where the demo's SIPp ports start, above the deployment's SIP port
DEFAULT_PORT_OFFSET = 300


@dataclass(frozen=True)
class DemoOptions:
    """What ``callflow demo`` is asked for (each a command-line option)."""

    agents: int = 4
    rate_per_min: float = 6.0
    duration_s: float = 0.0  # 0: until Ctrl-C
    ring_ms: int = 2000
    talk_s: float = 30.0  # an agent hangs up after this, if the other side has not
    wrap_s: float = 3.0
    patience_s: float = 20.0  # a caller hangs up after this long on the line
    max_callers: int = 10
    did: str = "100"
    caller_prefix: str = "1380000"
    port_base: int = 0  # 0: the deployment's SIP port + DEFAULT_PORT_OFFSET
    drain_s: float | None = None  # default: patience + 5 s

    def check(self) -> None:
        if self.agents < 1:
            raise CallflowError("--agents must be at least 1")
        if not 0 < self.rate_per_min <= 600:
            raise CallflowError("--rate must be 0-600 calls a minute")
        if self.duration_s < 0 or self.talk_s <= 0 or self.patience_s <= 0:
            raise CallflowError("--duration, --talk and --patience must be positive")
        if not self.did.isdigit() or not 2 <= len(self.did) <= 32:
            raise CallflowError("--did must be 2-32 digits")
        if not self.caller_prefix.isdigit() or len(self.caller_prefix) > 12:
            raise CallflowError("--caller-prefix must be at most 12 digits")


def demo_agents(roster: Roster, count: int) -> list[RosterAgent]:
    """The first ``count`` roster agents with a softphone password (registering phones)."""
    usable = [a for a in roster.agents if a.password]
    if not usable:
        raise CallflowError("no agent in the roster has a softphone password "
                            "(agents.toml `password`): the demo registers their phones")
    return usable[:count]


def _print(line: str) -> None:
    """Print, but never let a closed terminal or pipe stop the clean-up."""
    with contextlib.suppress(OSError, ValueError):
        print(line, flush=True)


class Demo:
    """One run of the demo; ``run()`` returns once everything it started has stopped."""

    def __init__(self, settings: Settings, roster: Roster, options: DemoOptions,
                 out: Printer | None = None) -> None:
        options.check()
        self.settings = settings
        self.options = options
        self.agents = demo_agents(roster, options.agents)
        self.print = out or _print
        host = settings.bind_host
        self.api_url = f"ws://{host}:{settings.ports.api}"
        self.port_base = options.port_base or settings.ports.sip + DEFAULT_PORT_OFFSET
        # the SIPp scenarios and logs of the last run, for a look when something is off
        self._work = settings.state_dir / "demo-sipp"
        shutil.rmtree(self._work, ignore_errors=True)
        private_dir(self._work)
        self.phones = SippPhones(self._work, host, settings.ports.sip, self.port_base)
        self.stop = asyncio.Event()
        self.interrupts = 0

    def phone_port(self, index: int) -> int:
        return self.port_base + 1 + index

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        write_pid(self.settings.state_dir)
        desks: list[asyncio.Task[None]] = []
        registered: list[tuple[RosterAgent, int]] = []
        try:
            opts = self.options
            for i, agent in enumerate(self.agents):
                # talk times differ a little between agents, as people's do
                talk_ms = int(opts.talk_s * 1000 * (0.8 + 0.4 * i / max(1, len(self.agents))))
                self.phones.softphone(agent.endpoint, self.phone_port(i), opts.ring_ms, talk_ms)
            for i, agent in enumerate(self.agents):
                assert agent.password is not None
                await asyncio.to_thread(
                    self.phones.register, agent.endpoint, agent.password, self.phone_port(i),
                    self.port_base + 30 + i, REGISTER_EXPIRES_S)
                registered.append((agent, i))
            self.print(f"demo: {len(self.agents)} agents' softphones registered "
                       f"({', '.join(a.endpoint for a in self.agents)})")
            desk_objs = [DemoDesk(self.api_url, self.settings.api_token, a.agent_id,
                                  a.endpoint, opts.wrap_s) for a in self.agents]
            desks = [asyncio.create_task(d.run()) for d in desk_objs]
            await self._wait_logged_in(desk_objs, desks)
            self.print(f"demo: agents logged in; callers dial {opts.did} at "
                       f"{opts.rate_per_min:g} a minute (at most {opts.max_callers} at once)")
            callers = self.phones.callers(
                opts.did, self.port_base, opts.rate_per_min, opts.max_callers,
                int(opts.patience_s * 1000), opts.caller_prefix)
            try:
                await self._until_stopped(desks)
            finally:
                # whatever stopped us, the callers on the line hang up by themselves
                # (within --patience) while the agents still serve them
                self.print("demo: stopping: no new callers; the calls in progress end by "
                           "themselves (Ctrl-C again to cut them off)")
                await self._drain(callers)
            seen = self.interrupts
            logouts = asyncio.gather(*(d.log_out(opts.talk_s + 5) for d in desk_objs))
            while not logouts.done() and self.interrupts <= seen:
                await asyncio.sleep(0.1)  # an agent on a call is logged out after it
            if not logouts.done():
                logouts.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await logouts
            out = logouts.result() if not logouts.cancelled() else [False] * len(desk_objs)
            stuck = [d.agent_id for d, done in zip(desk_objs, out, strict=True) if not done]
            if stuck:
                self.print(f"demo: agents {', '.join(stuck)} could not be logged out "
                           "(still on a call?)")
            return 0
        finally:
            for task in desks:
                task.cancel()
            for task in desks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for agent, i in registered:
                assert agent.password is not None
                try:
                    await asyncio.to_thread(
                        self.phones.register, agent.endpoint, agent.password,
                        self.phone_port(i), self.port_base + 30 + i, 0)
                except CallflowError as exc:
                    log.warning("could not unregister %s: %s", agent.endpoint, exc)
            self.phones.stop_all()
            remove_pid(self.settings.state_dir)
            self.print(f"demo: stopped; no SIPp process left (their logs: {self._work})")

    def _interrupt(self) -> None:
        self.interrupts += 1
        self.stop.set()

    async def _wait_logged_in(self, desks: list[DemoDesk],
                              tasks: list[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + 15
        while not all(d.logged_in.is_set() for d in desks):
            failed = [t for t in tasks if t.done()]
            if failed:
                exc = failed[0].exception() if not failed[0].cancelled() else None
                raise CallflowError(f"an agent's desktop connection to {self.api_url} "
                                    f"ended: {exc or 'closed'} (is `callflow run` up?)")
            if time.monotonic() > deadline:
                raise CallflowError("the agents could not log in within 15 s")
            if self.stop.is_set():
                return
            await asyncio.sleep(0.1)

    async def _until_stopped(self, desks: list[asyncio.Task[None]]) -> None:
        duration = self.options.duration_s or None
        waiter = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([waiter, *desks], timeout=duration,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        ended = [t for t in desks if t.done()]
        if ended and not self.stop.is_set():
            raise CallflowError("an agent's desktop connection closed: is `callflow run` "
                                "still up?")

    async def _drain(self, callers: Sipp) -> None:
        """No new callers (SIGUSR1: SIPp's soft stop); wait for the calls to end."""
        if callers.running:
            callers.proc.send_signal(signal.SIGUSR1)
        limit = self.options.drain_s
        if limit is None:
            limit = self.options.patience_s + 5
        deadline = time.monotonic() + limit
        seen = self.interrupts
        while callers.running and time.monotonic() < deadline and self.interrupts <= seen:
            await asyncio.sleep(0.2)
        if callers.running:
            self.print("demo: cutting off the calls still in progress (Asterisk keeps them "
                       "until `callflow pbx stop --force`)")
            callers.stop()
        # the agents' own phones hang up when their talk time is over
        await asyncio.sleep(0.5)
