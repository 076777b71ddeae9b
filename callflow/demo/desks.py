"""The demo's agents at their desktops: logged in, ready, wrapping up, ready again.

Each simulated agent holds the agent desktop's own websocket (``/ws/desktop``, the
protocol ``desktop/static/desktop.js`` speaks), as the deployment's supervisor (the API
token in the state directory) naming the agent with ``?agent=``. So the agent's states
change through the same rules as a person's clicks: log in at the desk, ready, after-call
work ended after ``wrap_s``, ready again after a system not-ready (e.g. a missed call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

log = logging.getLogger(__name__)

DESKTOP_PATH = "/ws/desktop"
#: refusals the demo expects and handles: an agent still logged in from an earlier demo,
#: a log-out asked for mid-call (it is asked again once the call is over)
EXPECTED_REFUSALS = frozenset({"already_logged_in", "on_call"})


def owed_forms(message: Any, agent_id: str) -> Iterator[str]:
    """The call whose wrap-up form ``agent_id`` owes, from every agent_state payload of the
    frame ("" when none is owed; STD-092)."""
    if isinstance(message, dict):
        if message.get("agent_id") == agent_id and "wrapup_call" in message:
            yield str(message.get("wrapup_call") or "")
        for value in message.values():
            yield from owed_forms(value, agent_id)
    elif isinstance(message, list):
        for item in message:
            yield from owed_forms(item, agent_id)


def agent_states(message: Any, agent_id: str) -> Iterator[str]:
    """Every state of ``agent_id`` a desktop frame carries (snapshot or live payload)."""
    if isinstance(message, dict):
        if message.get("agent_id") == agent_id and isinstance(message.get("state"), str):
            yield message["state"]
        for value in message.values():
            yield from agent_states(value, agent_id)
    elif isinstance(message, list):
        for item in message:
            yield from agent_states(item, agent_id)


class DemoDesk:
    """One agent's desktop connection for the length of the demo."""

    def __init__(self, api_url: str, token: str, agent_id: str, endpoint: str,
                 wrap_s: float) -> None:
        self.url = f"{api_url}{DESKTOP_PATH}?agent={agent_id}"
        self.token = token
        self.agent_id = agent_id
        self.endpoint = endpoint
        self.wrap_s = wrap_s
        self.state = "unknown"
        self.logged_in = asyncio.Event()
        self.logged_out = asyncio.Event()
        self.stopping = False
        self.closed = False
        self._ws: ClientConnection | None = None
        self._pending: asyncio.Task[None] | None = None
        self.owed = ""  # the call whose wrap-up form is owed (outbound calls, STD-092)
        self.disposition = ""  # the first of the Policy's dispositions (hello frame)

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await self._ws.send(json.dumps(frame))

    async def run(self) -> None:
        """Log in, then keep the agent working until cancelled (then log out)."""
        async with connect(self.url, open_timeout=10) as ws:
            self._ws = ws
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            await self._send({"type": "login", "extension": self.endpoint})
            try:
                async for raw in ws:
                    try:
                        message = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(message, dict) and message.get("type") == "error":
                        quiet = message.get("error") in EXPECTED_REFUSALS
                        log.log(logging.DEBUG if quiet else logging.WARNING,
                                "agent %s desktop: %s", self.agent_id, message)
                    if isinstance(message, dict) and message.get("type") == "hello":
                        codes = [d.get("code") for d in (message.get("wrapup") or {}).get(
                            "dispositions", []) if isinstance(d, dict)]
                        self.disposition = next((c for c in codes if isinstance(c, str)), "")
                    for owed in owed_forms(message, self.agent_id):
                        self.owed = owed
                    for state in agent_states(message, self.agent_id):
                        self._on_state(state)
            finally:
                self.closed = True
                if self._pending is not None:
                    self._pending.cancel()

    def _on_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if state != "logged_out":
            self.logged_in.set()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.stopping:
            if state == "logged_out":
                self.logged_out.set()
            elif state in ("ready", "not_ready", "busy", "acw"):
                self._pending = asyncio.ensure_future(self._later(0, "logout"))
            return
        if state == "logged_out" and not self.logged_in.is_set():
            return  # the login is on its way
        if state == "acw":
            self._pending = asyncio.ensure_future(self._later(self.wrap_s, "end_acw"))
        elif state in ("not_ready", "busy"):
            self._pending = asyncio.ensure_future(self._later(1.0, "ready"))

    async def _later(self, delay: float, kind: str) -> None:
        await asyncio.sleep(delay)
        if self.owed and self.disposition and kind in ("end_acw", "ready", "logout"):
            # the form first: ready and end_acw are refused while it is owed (STD-092)
            await self._send({"type": "wrapup", "call_id": self.owed,
                              "disposition": self.disposition, "notes": "demo call"})
        await self._send({"type": kind})

    async def log_out(self, timeout_s: float) -> bool:
        """Log the agent out, after the call they are on if any; False if not done in time."""
        self.stopping = True
        if self.state == "logged_out":
            return True
        await self._send({"type": "logout"})
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.logged_out.is_set():
            if self.closed or asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True
