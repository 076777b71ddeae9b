"""The tickets feature's HTTP API on a real store, as the tests of tickets/ drive it.

One build of the app (error handlers, session auth, the feature's routers over a
service of the store, the Policy and a clock) and one way to call it, so the API tests
differ only in their Policy, their people and their facts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from logins import session_token

from callflow.api.accounts import Logins
from callflow.api.credentials import authenticate_requests
from callflow.api.errors import install_error_handlers
from callflow.engine.clock import Clock, RealClock
from callflow.engine.policy import Policy
from callflow.store.db import Store
from callflow.tickets.feature import TicketsFeature

TOKEN = "t" * 24


class TicketApi:
    """The app, its feature and the session tokens of the people a test logs in."""

    def __init__(self, store: Store, policy: Policy, clock: Clock, *,
                 execute: Callable[[Any], Any] = lambda effects: None, **service: Any) -> None:
        self.store = store
        self.logins = Logins(store, policy.security, RealClock(), TOKEN)
        self.feature = TicketsFeature()
        self.feature._service = SimpleNamespace(  # type: ignore[assignment]
            store=store, auth=self.logins.auth, policy=policy, clock=clock,
            runtime=SimpleNamespace(calls={}, execute=execute), **service)
        self.app = FastAPI()
        install_error_handlers(self.app)
        authenticate_requests(self.app, self.logins.auth)
        for router in self.feature.routers():
            self.app.include_router(router)
        self.tokens: dict[str, str] = {}

    def log_in(self, who: str, username: str, role: str, agent_id: str | None = None) -> None:
        """A live session of ``username`` (made with ``role`` if new), called ``who``."""
        self.tokens[who] = session_token(self.store, self.logins, username, role, agent_id)

    def call(self, method: str, url: str, who: str | None, **kw: Any) -> httpx.Response:
        """One request as ``who`` (None: no credentials)."""
        if who is not None:
            kw["headers"] = {"Authorization": f"Bearer {self.tokens[who]}"}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(method, url, **kw)
        return asyncio.run(go())
