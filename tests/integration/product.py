"""The whole product (callflow.service.Service) running against the test Asterisk.

The service runs on its own event loop in a background thread, exactly as in
``callflow run``; tests stay synchronous (SIPp and the AMI tap block) and reach
into the loop only through ``call()``. Nothing is mocked: the FastAGI server
listens where the test Asterisk's dialplan points, the AMI adapter logs in with the
session's secret, the store is a real database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from logins import session_token

from callflow.agents.roster import Roster, RosterAgent
from callflow.engine.effects import DomainEvent
from callflow.engine.policy import Policy
from callflow.service import Service, ServiceOptions
from callflow.settings import Settings
from callflow.store.db import Store
from callflow.stream.frames import frames

T = TypeVar("T")


class Product:
    def __init__(self, settings: Settings, policy: Policy, roster: Roster,
                 options: ServiceOptions | None = None) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="callflow-service",
                                       daemon=True)
        self.thread.start()
        self.service = Service(settings, policy, roster, options)

    def start(self, timeout: float = 30.0) -> None:
        self.run(self.service.start(), timeout)
        assert self.service.ami is not None
        self.run(self.service.ami.wait_up(10), timeout)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the service's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn()`` on the loop thread (the runtime is not thread-safe by design)."""
        done: Future[T] = Future()

        def invoke() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the test thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return done.result(timeout)

    @property
    def runtime(self) -> Any:
        return self.service.runtime

    def tap_published(self) -> list[tuple[float, str, dict[str, Any]]]:
        """Every message the live stream gets from now on, as ``(wall time, topic,
        payload)``: the core's facts as the stream shapes them (callflow.stream.frames),
        noted the moment the core emits them."""
        seen: list[tuple[float, str, dict[str, Any]]] = []

        def note(event: DomainEvent) -> None:
            at = time.time()
            seen.extend((at, topic, payload)
                        for topic, payload in frames(event, self.runtime.epoch_of))

        self.call(lambda: self.runtime.on_event(note))
        return seen

    @property
    def store(self) -> Store:
        assert self.service.store is not None
        return self.service.store

    def session(self, username: str, role: str = "agent", agent_id: str | None = None) -> str:
        """A live session token of this login (made if missing, tests/logins.py)."""
        assert self.service.logins is not None
        return session_token(self.store, self.service.logins, username, role, agent_id)

    def rest(self, method: str, path: str, token: str, body: dict[str, Any] | None = None,
             timeout: float = 10.0) -> tuple[int, Any]:
        """One JSON request to the product's REST API as ``token``: (status, JSON body),
        error statuses included (a refusal is an answer to check, not an exception)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.settings.ports.api}{path}",
            data=None if body is None else json.dumps(body).encode(), method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every record emitted so far is in the database."""
        assert self.service.writer is not None
        self.call(lambda: None)  # effects queued by events already on the loop
        assert self.service.writer.flush(timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` on the loop until true (runtime state is only read there)."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def stop(self, *, check_invariants: bool = True) -> None:
        """Stop the service. Every live test is held to the call record's invariants
        (runtime/invariants.py): a breach fails it here. A test that stops the engine
        mid-call on purpose says ``check_invariants=False`` for that engine."""
        breaches: list[Any] = []
        try:
            if check_invariants and self.service.runtime is not None:
                runtime = self.service.runtime
                breaches = self.call(runtime.invariants.finish)
            self.run(self.service.stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
        assert not breaches, f"the call record's invariants were broken: {breaches}"


def make_roster(agent_ids: list[str], port_of: Callable[[str], int]) -> Roster:
    return Roster(tuple(
        RosterAgent(agent_id=a, name=f"Agent {a}", endpoint=f"agent{a}",
                    static_contact=f"sip:agent{a}@127.0.0.1:{port_of(a)}")
        for a in agent_ids))


def make_settings(tmp: Path, pbx: Any, asterisk_root: Path) -> Settings:
    return Settings(
        state_dir=tmp, database_url=f"sqlite:///{tmp / 'callflow.db'}",
        asterisk_root=asterisk_root, policy_file=None, ports=pbx.ports,
        ami_username=pbx.username, ami_secret=pbx.secret,
        api_token=secrets.token_urlsafe(16), country="cn", pbx_workdir=pbx.workdir,
        # the pages in English unless a test's user chooses otherwise (api/language.py)
        ui_language="en")


@contextlib.contextmanager
def running_product(pbx: Any, asterisk_root: Path, tmp: Path, policy: Policy,
                    agent_ids: list[str], options: ServiceOptions | None = None,
                    ) -> Iterator[Product]:
    """The real service against the session's Asterisk, stopped at the end."""
    product = Product(make_settings(tmp, pbx, asterisk_root), policy,
                      make_roster(agent_ids, pbx.agent_port), options)
    try:
        product.start()
        yield product
    finally:
        product.stop()
