"""The agent desktop's edge: the ``/ws/desktop`` websocket and the page at ``/desktop``.

Protocol v1 is docs/agent-protocol.md (frames: desktop/protocol.py). The token comes
in the first frame (or a bearer header), never in the URL (api/wsconnection.py). The
server enforces who sees what: an agent's session token opens only its own topic
``agent:<id>`` (asking for another agent is refused at the handshake), so an agent
never receives another agent's call details. A supervisor (deployment token or a
supervisor's session) may open any agent's desktop with ``?agent=<id>`` and act
on it as a supervisor. The stream is the hub's (sequence numbers, resume with
``since``, bounded buffers with drop-to-snapshot), so a slow desktop never slows
the engine; a request is applied on the loop at once and answered with ``ack`` or
an ``error`` carrying the state machine's reason, the state unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, WebSocket

from callflow.agents.events import Actor
from callflow.agents.transfers import Refusal, desktop_target
from callflow.api.auth import Principal
from callflow.api.wsconnection import (
    HandshakeRefused,
    SessionCheck,
    StreamConnection,
    handshake_credentials,
    refuse,
)
from callflow.desktop.protocol import (
    CALL_REQUEST_TYPES,
    CONSULT_STEPS,
    AddressRequest,
    DesktopRequest,
    ack_frame,
    agent_event,
    error_frame,
    hello_frame,
    identity_pin_ack_frame,
    parse_desktop_frame,
    script_panel_frame,
    transfer_ack_frame,
)
from callflow.errors import StateError
from callflow.stream.protocol import FrameEncoder

if TYPE_CHECKING:
    from callflow.desktop.feature import AgentDesktop

log = logging.getLogger(__name__)

WS_DESKTOP_PATH = "/ws/desktop"
PAGE_PATH = "/desktop"  # the page (static/, served by callflow.api.pages)
STATIC_DIR = Path(__file__).resolve().parent / "static"


def _own_agent(principal: Principal) -> str | None:
    """An agent principal's work number (its one topic ``agent:<id>``)."""
    if principal.topics is None:
        return None
    own = [t.removeprefix("agent:") for t in principal.topics if t.startswith("agent:")]
    return own[0] if len(own) == 1 else None


def desktop_router(desk: AgentDesktop) -> APIRouter:
    router = APIRouter(tags=["agent desktop"])
    encoder = FrameEncoder()

    @router.websocket(WS_DESKTOP_PATH)
    async def desktop(websocket: WebSocket) -> None:
        await _serve(websocket, desk, encoder)

    return router


def _choose_agent(websocket: WebSocket, principal: Principal, desk: AgentDesktop) -> str:
    asked = websocket.query_params.get("agent") or None
    own = _own_agent(principal)
    if principal.role == "agent":
        if own is None:
            raise HandshakeRefused("this login is not linked to an agent")
        if asked is not None and asked != own:
            raise HandshakeRefused("forbidden topics for this principal")
        agent_id = own
    elif asked is None:
        raise HandshakeRefused("bad agent: a supervisor names the agent with ?agent=")
    else:
        agent_id = asked
    if not principal.may_see(f"agent:{agent_id}"):
        raise HandshakeRefused("forbidden topics for this principal")
    if desk.service.roster.by_id(agent_id) is None:
        raise HandshakeRefused("bad agent: not in the roster")
    return agent_id


def _since(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("since")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise HandshakeRefused("bad since: expected a non-negative integer")
    return int(raw)


async def _serve(websocket: WebSocket, desk: AgentDesktop, encoder: FrameEncoder) -> None:
    # Accept, then close with a reason: a refused handshake would only show a bare 403.
    await websocket.accept()
    client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "?"
    service = desk.service
    try:
        credentials = await handshake_credentials(websocket, service.auth)
        agent_id = _choose_agent(websocket, credentials.principal, desk)
        since = _since(websocket)
    except HandshakeRefused as refused:
        log.info("desktop from %s refused: %s", client, refused.reason)
        await refuse(websocket, refused.reason)
        return
    principal = credentials.principal
    topic = f"agent:{agent_id}"
    member = service.roster.by_id(agent_id)
    language = service.prompts.pack.lang
    hello = hello_frame(
        policy=service.policy, language=language, agent_id=agent_id,
        agent_name=member.name if member else agent_id, username=principal.name,
        role=principal.role, apology_text=service.prompts.pack.text("greeting_apology"),
        day=service.today(), last_seq=service.hub.last_seq,
        server_time=service.clock.wall().timestamp())
    connection = _DesktopConnection(websocket, desk, agent_id, principal, encoder,
                                    credentials.check, language)
    if not await connection.send(hello):
        return
    # subscribed after the hello and before any await: nothing published in between is lost
    subscription = service.hub.subscribe(frozenset({topic}), since=since)
    log.info("desktop %s open for agent %s as %s (since=%s)", client, agent_id,
             principal.name, since)
    try:
        await connection.run(subscription)
    finally:
        subscription.close()
        desk.inactivity.closed(agent_id, id(connection))
        log.info("desktop %s for agent %s closed", client, agent_id)


class _DesktopConnection(StreamConnection):
    """One desktop: hub events out, the agent's requests in (applied at once, answered)."""

    def __init__(self, websocket: WebSocket, desk: AgentDesktop, agent_id: str,
                 principal: Principal, encoder: FrameEncoder, check: SessionCheck | None,
                 language: str) -> None:
        super().__init__(websocket, encoder, check)
        self._desk = desk
        self._agent_id = agent_id
        self._actor: Actor = "agent" if principal.role == "agent" else "supervisor"
        self._read_only = principal.role == "qa"  # QA follows agents, never steers them
        self.language = language  # the hello's: the script panel speaks it too
        self._actor_login = principal.name  # who asked, for the audit
        self._pending: set[asyncio.Task[None]] = set()  # replies still being worked out

    def parse(self, data: str | bytes) -> object:
        return parse_desktop_frame(data)

    def answer(self, request: object) -> str | None:
        if isinstance(request, AddressRequest):  # words only: no state, so QA may too
            return script_panel_frame(self.language, request.caller, request.id)
        assert isinstance(request, DesktopRequest)
        if request.type == "identity_pin" and not self._read_only:
            # the customer record is read off the loop: the one reply frame follows
            task = asyncio.create_task(self._identity_pin(request))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return None
        return self._apply(request)

    async def _identity_pin(self, request: DesktopRequest) -> None:
        """``identity_pin`` (STD-077): the caller is taken to the PIN step, or one error
        frame says why not (nothing changed)."""
        try:
            asked = await self._desk.ask_identity_pin(self._agent_id, self._actor_login)
        except StateError as refused:
            log.info("agent %s: identity_pin refused (%s)", self._agent_id, refused)
            await self.send(error_frame(refused.reason, refused.detail, request))
            return
        agent = self._desk.runtime.agents[self._agent_id]
        await self.send(identity_pin_ack_frame(request, agent.state.value, asked,
                                               self._desk.service.hub.last_seq))

    def _apply(self, request: DesktopRequest) -> str:
        """Apply one request on the loop, now; the reply is an ack or the refusal's reason."""
        runtime = self._desk.runtime
        if self._read_only:
            return error_frame("read_only", "a QA login follows the desktop, it changes nothing",
                               request)
        if request.type in CALL_REQUEST_TYPES:
            return self._call_request(request)
        try:
            if request.type == "login":
                agent = runtime.log_in(self._agent_id, request.extension, by=self._actor)
            elif request.type == "activity":  # STD-102: input seen, on the service page?
                if self._actor == "agent":
                    self._desk.inactivity.activity(self._agent_id, id(self),
                                                   request.service_page)
                agent = runtime.agents[self._agent_id]
            elif request.type == "escalate":  # STD-066: the board's alarm with the call
                agent = self._desk.escalate(self._agent_id, request.reason)
            else:
                agent = runtime.agent_event(self._agent_id, agent_event(request, self._actor))
        except StateError as refused:
            log.info("agent %s: %s refused (%s)", self._agent_id, request.type, refused)
            return error_frame(refused.reason, refused.detail, request)
        return ack_frame(request, agent.state.value, agent.reason,
                         self._desk.service.hub.last_seq)

    def _call_request(self, request: DesktopRequest) -> str:
        """A transfer (STD-049): refused with its reason, the call unchanged, or acked
        with where the caller goes; a warm transfer's second step acked with the state."""
        if request.type in CONSULT_STEPS:
            refused = self._desk.consult_step(self._agent_id, CONSULT_STEPS[request.type])
            if refused is not None:
                log.info("agent %s: %s refused (%s)", self._agent_id, request.type,
                         refused.reason)
                return error_frame(refused.reason, refused.detail, request)
            agent = self._desk.runtime.agents[self._agent_id]
            return ack_frame(request, agent.state.value, agent.reason,
                             self._desk.service.hub.last_seq)
        assert request.transfer is not None
        result = self._desk.transfer(self._agent_id, request.transfer)
        if isinstance(result, Refusal):
            log.info("agent %s: transfer refused (%s)", self._agent_id, result.reason)
            return error_frame(result.reason, result.detail, request)
        agent = self._desk.runtime.agents[self._agent_id]
        return transfer_ack_frame(request, agent.state.value, desktop_target(result),
                                  result.name, self._desk.service.hub.last_seq)
