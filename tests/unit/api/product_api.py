"""The product's whole API in-process: ``Service.build_app`` over ASGI, no Asterisk.

The service (store, core, every default feature) runs on an anyio portal's loop and
every request is sent on that loop too, as uvicorn would; the store is a real SQLite
file. Shared (through conftest's ``product_api``) by the fuzz run and the tests of
headers, metrics and credentials.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
from fastapi import FastAPI
from logins import session_token

from callflow.agents.roster import Roster, RosterAgent
from callflow.cli import default_features
from callflow.engine.policy import parse_policy
from callflow.service import Service, ServiceOptions
from callflow.settings import Ports, Settings

TOKEN = "deployment-token-product-0123456789"
#: One opening for everybody (no work number): no TTS run per agent.
POLICY = parse_policy({"greetings": {"agent_identity": "none"}})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ProductApi:
    portal: anyio.from_thread.BlockingPortal
    service: Service
    app: FastAPI

    def token(self, role: str) -> str | None:
        """A fresh session of ``<role>1`` (agents: 1001), or None for role ``none``."""
        if role == "none":
            return None
        assert self.service.store is not None and self.service.logins is not None
        return session_token(self.service.store, self.service.logins, f"{role}1", role,
                             "1001" if role == "agent" else None)

    def request(self, method: str, url: str, token: str | None = None,
                **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.portal.call(self.send, method, url, headers, kw)

    async def send(self, method: str, url: str, headers: dict[str, str],
                   kw: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=("192.0.2.1", 50000))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://testserver") as client:
            return await client.request(method, url, headers=headers, **kw)


@contextlib.contextmanager
def running_product_api(state: Path, migrated_sqlite_file: Path) -> Iterator[ProductApi]:
    """The service started in ``state`` (a copy of the migrated database), its app built."""
    shutil.copyfile(migrated_sqlite_file, state / "callflow.db")
    settings = Settings(state_dir=state, database_url=f"sqlite:///{state / 'callflow.db'}",
                        asterisk_root=state, policy_file=None, api_token=TOKEN,
                        ports=Ports(ami=_free_port(), agi=0, api=_free_port()))
    roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}") for a in ("1001", "1002")))
    with anyio.from_thread.start_blocking_portal() as portal:
        service = Service(settings, POLICY, roster,
                          ServiceOptions(serve_api=False, features=default_features()))
        portal.call(service.start)
        try:
            yield ProductApi(portal, service, service.build_app())
        finally:
            portal.call(service.stop)
