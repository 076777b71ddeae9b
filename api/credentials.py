"""Where a request's credentials come from, and what a route requires of them.

A token travels only in the ``Authorization: Bearer`` header (websockets: the first
frame, ``callflow.api.wsconnection``), never in a URL: URLs end up in proxy logs,
browser history and Referer headers. A request that still puts ``token=`` in its query
is refused outright (400 ``token_in_url``) rather than ignored, so a client learns at
once and the token is not processed.

``Authenticate`` finds the principal once per request, in a worker thread (a session
is a database read, and the engine's loop must not wait on the database), and leaves
it in the request's scope; ``require`` then only reads it and checks the role.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from callflow.api.auth import Principal, TokenAuth
from callflow.api.errors import api_error

log = logging.getLogger(__name__)

#: Where ``Authenticate`` leaves the request's principal (None: no or bad credentials).
PRINCIPAL_KEY = "callflow.principal"
TOKEN_IN_URL = {"error": "token_in_url",
                "message": "credentials never go in a URL: send Authorization: Bearer TOKEN"}


def bearer_token(headers: Any) -> str | None:
    """The token of an ``Authorization: Bearer`` header (``headers``: a Headers mapping)."""
    scheme, _, value = str(headers.get("authorization", "")).partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token else None


def has_token_in_query(query: Any) -> bool:
    """Does a query string (a QueryParams mapping) carry a credential?"""
    return any(key.lower() in ("token", "access_token") for key in query)


class Authenticate:
    """ASGI middleware: refuses tokens in URLs and puts each request's principal in scope."""

    def __init__(self, app: ASGIApp, auth: TokenAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if has_token_in_query(request.query_params):
            log.warning("refused a request with a token in its URL: %s", request.url.path)
            await JSONResponse({"detail": TOKEN_IN_URL}, status_code=400)(scope, receive, send)
            return
        token = bearer_token(request.headers)
        principal = None
        if token is not None:
            principal = await anyio.to_thread.run_sync(self.auth.authenticate, token)
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)


def authenticate_requests(app: FastAPI, auth: TokenAuth) -> None:
    """Install ``Authenticate`` on ``app`` (the product's app and the features' tests)."""
    app.add_middleware(Authenticate, auth=auth)


def require(request: Request, *roles: str) -> Principal:
    """The request's principal, or 401 (no or bad credentials) / 403 (role not allowed)."""
    if PRINCIPAL_KEY not in request.scope:
        raise RuntimeError("Authenticate is not installed on this app (authenticate_requests)")
    principal = request.scope[PRINCIPAL_KEY]
    if not isinstance(principal, Principal):
        raise api_error(401, "unauthenticated", "log in first",
                        headers={"WWW-Authenticate": "Bearer"})
    if roles and principal.role not in roles:
        raise api_error(403, "forbidden", f"{principal.role} may not do this")
    return principal
