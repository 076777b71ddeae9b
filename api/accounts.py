"""Logins for people: agents, supervisors, QA. Passwords hashed, sessions signed.

Roles follow STD-148 (supervisor, shift lead, agent, QA): an agent's session sees
only its own topic ``agent:<id>`` (agents see only their own calls); supervisors
and QA see everything. Session tokens are signed with the deployment's API token
(HMAC-SHA256) and carry their expiry, so any API node sharing that secret can
check them without a session table; a password change does not revoke tokens
already issued before their expiry (kept short, default 12 h, a shift).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from callflow.api.auth import Principal, TokenAuth
from callflow.errors import CallflowError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_PREFIX = "s1."
ROLES = ("agent", "supervisor", "qa", "admin")
SEE_ALL_ROLES = frozenset({"supervisor", "qa", "admin"})


class AccountError(CallflowError):
    """A login is malformed or refused."""


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def principal_for(username: str, role: str, agent_id: str | None) -> Principal:
    if role in SEE_ALL_ROLES:
        return Principal(name=username, role=role)
    topics = frozenset({f"agent:{agent_id}"}) if agent_id else frozenset()
    return Principal(name=username, role=role, topics=topics)


@dataclass(frozen=True)
class SessionClaims:
    username: str
    role: str
    agent_id: str | None
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, secret: str, ttl_s: float = 12 * 3600) -> None:
        self._key = hashlib.sha256(b"callflow-session\0" + secret.encode()).digest()
        self.ttl_s = ttl_s

    def issue(self, username: str, role: str, agent_id: str | None,
              now: float | None = None) -> str:
        claims = {"u": username, "r": role, "a": agent_id,
                  "e": round((now or time.time()) + self.ttl_s)}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{TOKEN_PREFIX}{body}.{sig}"

    def verify(self, token: str, now: float | None = None) -> SessionClaims | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        try:
            body, sig = token[len(TOKEN_PREFIX):].split(".")
            want = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, sig):
                return None
            claims = json.loads(_unb64(body))
            result = SessionClaims(str(claims["u"]), str(claims["r"]), claims.get("a"),
                                   float(claims["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if result.expires < (now or time.time()) or result.role not in ROLES:
            return None
        return result


class SessionAuth(TokenAuth):
    """The deployment token (a supervisor) or a signed session token of a person."""

    def __init__(self, api_token: str, signer: SessionSigner) -> None:
        super().__init__({api_token: Principal(name="deployment", role="supervisor")})
        self.signer = signer

    def authenticate(self, presented: str | None) -> Principal | None:
        if presented and presented.startswith(TOKEN_PREFIX):
            claims = self.signer.verify(presented)
            if claims is None:
                return None
            return principal_for(claims.username, claims.role, claims.agent_id)
        return super().authenticate(presented)


# --- HTTP --------------------------------------------------------------------------


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginReply(BaseModel):
    token: str
    username: str
    role: str
    agent_id: str | None
    expires_in_s: int


UserLookup = Callable[[str], "tuple[str, str, str | None] | None"]  # -> (hash, role, agent_id)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token")


def require(auth: TokenAuth, request: Request, *roles: str) -> Principal:
    """The request's principal, or 401 (no/bad credentials) / 403 (role not allowed)."""
    principal = auth.authenticate(bearer(request))
    if principal is None:
        raise HTTPException(status_code=401, detail="log in first",
                            headers={"WWW-Authenticate": "Bearer"})
    if roles and principal.role not in roles:
        raise HTTPException(status_code=403, detail=f"{principal.role} may not do this")
    return principal


def login_router(lookup: Callable[[str], tuple[str, str, str | None] | None],
                 signer: SessionSigner) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["accounts"])

    @router.post("/session", response_model=LoginReply)
    def login(body: LoginRequest) -> LoginReply:  # sync: scrypt and the lookup run off-loop
        """Exchange a username and password for a session token (Bearer)."""
        found = lookup(body.username)
        # hash even when the user is unknown, so timing does not tell which names exist
        stored = found[0] if found else hash_password(secrets.token_hex(8))
        if not check_password(body.password, stored) or found is None:
            raise HTTPException(status_code=401, detail="wrong username or password")
        _, role, agent_id = found
        return LoginReply(token=signer.issue(body.username, role, agent_id),
                          username=body.username, role=role, agent_id=agent_id,
                          expires_in_s=int(signer.ttl_s))

    return router
