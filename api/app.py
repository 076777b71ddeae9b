"""The FastAPI application: health, offline OpenAPI docs, and the events websocket.

A thin edge (design.md): it authenticates, translates between the wire and the hub, and
holds no state of its own beyond open connections. Engine state reaches clients only
through ``EventHub``; a misbehaving client can cost itself its connection, never the
engine anything.

Every response, of every page and of the API, carries the same security headers
(``SecurityHeaders``): a Content-Security-Policy that allows only the server's own
files (the pages are plain JS and CSS files, no inline script or style), no framing
(``frame-ancestors 'none'`` and ``X-Frame-Options``), ``nosniff`` and no Referer. The
offline docs page is the one exception: Swagger UI starts from an inline script, which
its own policy allows by hash, nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callflow.api.auth import Principal, TokenAuth
from callflow.api.credentials import authenticate_requests
from callflow.api.demo_marker import DemoStatus, demo_router
from callflow.api.errors import document_errors, install_error_handlers
from callflow.api.privacy import redaction_for
from callflow.api.ws_batching import BatchingWebSockets
from callflow.api.wsconnection import (
    HandshakeRefused,
    StreamConnection,
    handshake_credentials,
    refuse,
)
from callflow.stream.hub import EventHub, TopicFilter
from callflow.stream.protocol import FrameEncoder, parse_client_frame

logger = logging.getLogger(__name__)

HealthFn = Callable[[], Awaitable[dict[str, dict[str, Any]]]]

WS_EVENTS_PATH = "/ws/events"
DOCS_ASSETS_PATH = "/docs/assets"
HEALTH_TIMEOUT_SECONDS = 2.0
MAX_TOPICS = 100
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
# The server rejects frames past this before the app sees them (1009 from the
# protocol layer); between MAX_CLIENT_FRAME_BYTES and this the app answers with an
# error frame first. It bounds what one client can make the server buffer.
WS_SERVER_MAX_FRAME_BYTES = 1024 * 1024

_SECRET_KEY = re.compile(r"pass|secret|token|key|credential|dsn|auth", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/@\s]*@", re.IGNORECASE)
_TOKEN_IN_QUERY = re.compile(r"(token=)[^&\s\"']*")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

#: The pages' policy: their own scripts, styles, images and connections only; recordings
#: play from blob: URLs (the audio is fetched with the bearer token); no framing.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass
class ApiDeps:
    """What the API needs from the rest of callflow (wired in callflow.cli)."""

    hub: EventHub
    health: HealthFn  # {"ami": {"ok": bool, ...}, "agi": {...}, "store": {...}}
    api_token: str  # generated per deployment (callflow/settings.py); never a default
    auth: TokenAuth | None = None  # who may connect; default: the deployment token only
    # why this deployment is a demo (api/demo_marker.py), None when it is not
    demo: DemoStatus = lambda: None


class ComponentHealth(BaseModel):
    """One component's health; extra scalar fields pass through once scrubbed."""

    model_config = ConfigDict(extra="allow")
    ok: bool
    detail: str | None = None


class HealthReport(BaseModel):
    """``down`` names the components that are not ok (absent when all are), so the status
    line alone says which part is down (e.g. ``store`` during a store outage)."""

    status: Literal["ok", "degraded"]
    down: list[str] = []  # the components that are not ok: what to look at first
    components: dict[str, ComponentHealth]
    demo: str | None = None  # why this deployment runs as a demo (api/demo_marker.py)


class RedactTokenFilter(logging.Filter):
    """Scrubs ``token=...`` from log lines: uvicorn logs paths with their query, and a client
    that still puts its token there is refused but logged before it is (api/credentials.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", message)
            record.args = None
        return True


class SecurityHeaders:
    """ASGI middleware: ``SECURITY_HEADERS`` on every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def docs_csp(page: str) -> str:
    """The docs page's policy: the page policy plus its inline script, allowed by hash (it
    embeds the OpenAPI URL, so the hash is taken of the page as served)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page))
    return PAGE_CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")


def install_log_redaction() -> None:
    """Attach ``RedactTokenFilter`` to uvicorn's loggers once (idempotent)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactTokenFilter) for f in target.filters):
            target.addFilter(RedactTokenFilter())


def server_config(app: FastAPI, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings the API is meant to run with (production and tests alike).

    No permessage-deflate: it would compress every frame once per client, on the loop
    the engine runs on, undoing the encode-once of ``FrameEncoder``; board frames are
    small and the network is a LAN. ``BatchingWebSockets``: a client's batch of events goes
    out in one write (api/ws_batching.py).
    """
    options: dict[str, Any] = {"host": host, "port": port, "ws_max_size": WS_SERVER_MAX_FRAME_BYTES,
                               "ws_per_message_deflate": False, "log_config": None,
                               "lifespan": "on", "ws": BatchingWebSockets}
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _docs_assets_dir() -> Path:
    # fastapi-offline ships Swagger UI 5 (needed for FastAPI's OpenAPI 3.1) and its CSS.
    return Path(str(resources.files("fastapi_offline") / "static"))


def _version() -> str:
    try:
        return metadata.version("callflow")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(deps: ApiDeps) -> FastAPI:
    """Build the app; raises ValueError when the deployment token is missing or weak."""
    auth = deps.auth or TokenAuth.deployment(deps.api_token)
    install_log_redaction()
    app = FastAPI(
        title="callflow",
        version=_version(),
        description=("Contact-centre call-flow engine on Asterisk. The live event stream "
                     f"is the websocket `{WS_EVENTS_PATH}` "
                     "(protocol v1: docs/websocket-protocol.md)."),
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=_docs_assets_dir()), name="docs-assets")
    app.state.deps = deps
    install_error_handlers(app)
    document_errors(app)
    authenticate_requests(app, auth)
    app.add_middleware(SecurityHeaders)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        # root_path: the same page works behind a reverse proxy that mounts us on a prefix.
        root = request.scope.get("root_path", "")
        assets = f"{root}{DOCS_ASSETS_PATH}"
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url or '/openapi.json'}",
            title="callflow API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            # No online validator badge: the docs must not reach out anywhere.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["content-security-policy"] = docs_csp(bytes(page.body).decode())
        return page

    @app.get("/healthz", operation_id="healthz", response_model=HealthReport,
             responses={503: {"model": HealthReport, "description": "degraded"}},
             tags=["operations"], openapi_extra={"security": []})
    async def healthz() -> JSONResponse:
        """Unauthenticated for load balancers: 200 when every component is ok, else 503."""
        report = await _health_report(deps.health, secrets=[deps.api_token])
        report.demo = deps.demo()
        code = 200 if report.status == "ok" else 503
        return JSONResponse(report.model_dump(exclude_none=True), status_code=code,
                            headers={"Cache-Control": "no-store"})

    app.include_router(demo_router(deps.demo))
    encoder = FrameEncoder()
    masked_encoder = FrameEncoder()  # the frames of principals who see numbers masked (STD-078)

    @app.websocket(WS_EVENTS_PATH)
    async def events(websocket: WebSocket) -> None:
        await _serve_events(websocket, deps.hub, auth, encoder, masked_encoder)

    return app


async def _health_report(health: HealthFn, secrets: list[str]) -> HealthReport:
    try:
        raw = await asyncio.wait_for(health(), HEALTH_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("health check timed out after %s s", HEALTH_TIMEOUT_SECONDS)
        raw = {"health": {"ok": False,
                          "detail": f"health check timed out after {HEALTH_TIMEOUT_SECONDS} s"}}
    except Exception as exc:
        logger.exception("health check failed")
        raw = {"health": {"ok": False, "detail": f"health check failed: {type(exc).__name__}"}}
    if not isinstance(raw, dict):
        raw = {"health": {"ok": False, "detail": "health check returned no components"}}
    components = {str(name): _scrub_component(value, secrets) for name, value in raw.items()}
    down = [name for name, c in components.items() if not c.ok]
    return HealthReport(status="degraded" if down else "ok", down=down, components=components)


def _scrub_text(text: str, secrets: list[str]) -> str:
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:200]


def _scrub_component(raw: object, secrets: list[str]) -> ComponentHealth:
    """Keep ``ok`` (only a real True counts), a short detail and harmless scalars.

    The health endpoint is unauthenticated, so nothing that looks like a credential
    (by key name, URL user-info or the deployment token itself) may pass through.
    """
    if not isinstance(raw, dict):
        return ComponentHealth(ok=False, detail="component reported no status")
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("ok", "detail") or not isinstance(key, str) or _SECRET_KEY.search(key):
            continue
        if isinstance(value, str):
            extra[key] = _scrub_text(value, secrets)
        elif isinstance(value, bool | int | float) or value is None:
            extra[key] = value
    detail = raw.get("detail")
    return ComponentHealth(
        ok=raw.get("ok") is True,
        detail=_scrub_text(str(detail), secrets) if detail is not None else None,
        **extra,
    )


def _stream_request(websocket: WebSocket, principal: Principal) -> tuple[TopicFilter, int | None]:
    """Parse ``since`` and ``topics``; the filter never lets through more than the principal."""
    raw_since = websocket.query_params.get("since")
    since: int | None = None
    if raw_since is not None and raw_since != "":
        if not raw_since.isdigit() or len(raw_since) > 18:
            raise HandshakeRefused("bad since: expected a non-negative integer")
        since = int(raw_since)
    raw_topics = websocket.query_params.get("topics")
    if raw_topics is None or raw_topics == "":
        return principal.may_see, since
    requested = raw_topics.split(",")
    if len(requested) > MAX_TOPICS:
        raise HandshakeRefused(f"bad topics: more than {MAX_TOPICS}")
    if not all(TOPIC_PATTERN.fullmatch(topic) for topic in requested):
        raise HandshakeRefused("bad topics: names are 1-128 of A-Z a-z 0-9 _ . : -")
    if not all(principal.may_see(topic) for topic in requested):
        raise HandshakeRefused("forbidden topics for this principal")
    return frozenset(requested).__contains__, since


async def _serve_events(websocket: WebSocket, hub: EventHub, auth: TokenAuth,
                        encoder: FrameEncoder, masked_encoder: FrameEncoder) -> None:
    # Accept first, then close with a code and reason: a refused handshake would only
    # give the client a bare HTTP 403, and browsers would not see why.
    await websocket.accept()
    client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "?"
    try:
        credentials = await handshake_credentials(websocket, auth)
        topic_filter, since = _stream_request(websocket, credentials.principal)
    except HandshakeRefused as refused:
        logger.info("websocket from %s refused: %s", client, refused.reason)
        await refuse(websocket, refused.reason)
        return
    principal = credentials.principal
    subscription = hub.subscribe(topic_filter, since=since)
    view = redaction_for(principal)
    connection = _EventsConnection(websocket, encoder if view is None else masked_encoder,
                                   credentials.check, view)
    logger.info("websocket %s subscribed as %s (since=%s)", client, principal.name, since)
    try:
        await connection.run(subscription)
    finally:
        subscription.close()
        logger.info("websocket %s closed", client)


class _EventsConnection(StreamConnection):
    """A board or other client of ``/ws/events``: it may only ping."""

    def parse(self, data: str | bytes) -> object:
        return parse_client_frame(data)
