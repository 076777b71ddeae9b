"""Logins for people: agents, supervisors, QA and admins; passwords in, sessions out.

Roles follow STD-148 (supervisor, shift lead, agent, QA): an agent's session sees only
its own topic ``agent:<id>``; supervisors, QA and admins see everything. A session is
a row on the server (``callflow.api.sessions``), so it ends when its owner logs out,
changes their password, or an admin ends it, not hours later.

Guessing is throttled per username and per client address (``callflow.api.throttle``,
numbers in the Policy's ``security`` section); every failed login and every lockout is
written to ``audit_log`` with the address it came from. A try refused while throttled
is neither checked nor audited (a flood of them would flood the log): the failures and
the lockout behind the refusal are. A username that does not
exist costs the same time as one that does (``passwords.dummy_hash``), is throttled
the same way and gets the same answer, so neither timing nor refusals tell which
names exist.

Routes (``login_router``):

* ``POST /api/v1/session`` ``{"username", "password"}`` — log in: a session token;
* ``DELETE /api/v1/session`` — log out: this session ends;
* ``POST /api/v1/session/password`` ``{"current_password", "new_password"}`` — every
  session of the login ends, and a new one is answered;
* ``DELETE /api/v1/users/{username}/sessions`` — an admin ends every session of a login;
* ``GET``/``PUT /api/v1/session/language`` — the pages' language of this login (issue 18:
  one language per page, chosen per user; the packs: ``callflow.api.language``). The
  login's reply carries it too, so a page opens in it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from callflow.api.auth import Principal, TokenAuth
from callflow.api.credentials import bearer_token, require
from callflow.api.errors import api_error
from callflow.api.language import PageLanguage
from callflow.api.passwords import PasswordError, check_password, dummy_hash, hash_password
from callflow.api.sessions import TOKEN_PREFIX, SessionBook
from callflow.api.throttle import LoginThrottle, Refusal
from callflow.engine.clock import Clock
from callflow.engine.policy import SecurityPolicy
from callflow.errors import CallflowError
from callflow.store import repo
from callflow.store.db import Store

log = logging.getLogger(__name__)

ROLES = ("agent", "supervisor", "qa", "admin", "shift_lead", "department_manager")
USERNAME = Field(min_length=1, max_length=64)
PASSWORD = Field(min_length=1, max_length=256)


class SessionAuth(TokenAuth):
    """The deployment token (a supervisor) or a person's session; reads the store, so it
    is called from a worker thread."""

    def __init__(self, api_token: str, sessions: SessionBook, recheck_s: float) -> None:
        super().__init__({api_token: Principal(name="deployment", role="supervisor")})
        self.sessions = sessions
        self.recheck_s = recheck_s

    def authenticate(self, presented: str | None) -> Principal | None:
        if presented and presented.startswith(TOKEN_PREFIX):
            return self.sessions.principal(presented)
        return super().authenticate(presented)


class LoginRefused(CallflowError):
    """A login or password change refused: the HTTP status, code and words to answer."""

    def __init__(self, status: int, error: str, message: str,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.retry_after_s = retry_after_s


class LoginReply(BaseModel):
    token: str = Field(description="send as Authorization: Bearer TOKEN; never in a URL")
    username: str
    role: str
    agent_id: str | None
    expires_in_s: int = Field(description="the session ends after this long unused; every "
                                          "use renews it, up to security.session_max_h")
    language: str = Field("zh-CN", description="the pages' language of this login: its "
                                                "choice, else the deployment's default")
    language_set: bool = Field(False, description="false: the login chose none (a page "
                                                   "keeps the language it shows)")


class LanguageChoice(BaseModel):
    language: PageLanguage = Field(description="a language pack: zh-CN or en")


class LanguageReply(BaseModel):
    username: str
    language: str
    language_set: bool


class Logins:
    """Logging in and out, password changes and revocation, with throttling and audit.

    Every method reads or writes the store and hashes passwords: call it from a worker
    thread (the routes below are plain ``def`` for that)."""

    def __init__(self, store: Store, rules: SecurityPolicy, clock: Clock,
                 api_token: str, default_language: str = "zh-CN") -> None:
        self.sessions = SessionBook(store, rules, clock.wall)
        self.auth = SessionAuth(api_token, self.sessions, rules.session_check_s)
        self.throttle = LoginThrottle(rules)
        self._store = store
        self._clock = clock
        self.default_language = default_language

    def log_in(self, username: str, password: str, address: str) -> LoginReply:
        self._refuse_if_throttled(username, address)
        user = self._store.read(repo.get_user, username)
        # a made-up name is checked against a dummy hash: the same cost as a real one
        right = check_password(password, user.password_hash if user else dummy_hash())
        if user is None or not right:
            self._failed(username, address, "unknown_user" if user is None else "wrong_password")
            raise LoginRefused(401, "wrong_credentials", "wrong username or password")
        self.throttle.succeeded(username)
        issued = self.sessions.issue(user.id, address)
        self._audit(username, "session.started", f"login:{username}", address=address)
        return LoginReply(token=issued.token, username=username, role=user.role,
                          agent_id=user.agent_id, expires_in_s=issued.expires_in_s,
                          language=user.language or self.default_language,
                          language_set=user.language is not None)

    def log_out(self, principal: Principal, token: str) -> bool:
        ended = self.sessions.end(token, "logout")
        self._audit(principal.name, "session.ended", f"login:{principal.name}", why="logout")
        return ended

    def change_password(self, principal: Principal, current: str, new: str,
                        address: str) -> LoginReply:
        """Check the current password (throttled like a login), store the new one, end
        every session of the login and answer a fresh one for this client."""
        username = principal.name
        self._refuse_if_throttled(username, address)
        user = self._store.read(repo.get_user, username)
        if user is None or not check_password(current, user.password_hash):
            self._failed(username, address, "wrong_password")
            raise LoginRefused(403, "wrong_password", "the current password is wrong")
        try:
            new_hash = hash_password(new)
        except PasswordError as exc:
            raise LoginRefused(422, "weak_password", str(exc)) from None
        at = self._clock.wall()
        with self._store.session() as s:
            repo.set_password(s, username, new_hash)
            ended = repo.revoke_user_sessions(s, username, at, "password_changed")
            repo.audit(s, username, "login.password_changed", at, target=f"login:{username}",
                       detail={"address": address, "sessions_ended": ended})
        self.throttle.succeeded(username)
        issued = self.sessions.issue(user.id, address)
        return LoginReply(token=issued.token, username=username, role=user.role,
                          agent_id=user.agent_id, expires_in_s=issued.expires_in_s,
                          language=user.language or self.default_language,
                          language_set=user.language is not None)

    def language(self, principal: Principal) -> LanguageReply:
        """The pages' language of this login (its choice, else the default)."""
        user = self._store.read(repo.get_user, principal.name)
        if user is None:
            raise LoginRefused(404, "not_found", f"no login {principal.name!r}")
        return LanguageReply(username=user.username,
                             language=user.language or self.default_language,
                             language_set=user.language is not None)

    def choose_language(self, principal: Principal, language: str) -> LanguageReply:
        """Store the login's language: every page it opens from now on shows it."""
        if not self._store.run(repo.set_language, principal.name, language):
            raise LoginRefused(404, "not_found", f"no login {principal.name!r}")
        self._audit(principal.name, "login.language", f"login:{principal.name}",
                    language=language)
        return LanguageReply(username=principal.name, language=language, language_set=True)

    def revoke(self, admin: Principal, username: str) -> int:
        """An admin ends every session of a login; how many were live."""
        if self._store.read(repo.get_user, username) is None:
            raise LoginRefused(404, "not_found", f"no login {username!r}")
        ended = self.sessions.end_all(username, "revoked")
        self._audit(admin.name, "session.revoked", f"login:{username}", sessions_ended=ended)
        return ended

    def _refuse_if_throttled(self, username: str, address: str) -> None:
        refusal: Refusal | None = self.throttle.check(username, address, self._clock.now())
        if refusal is None:
            return
        wait = math.ceil(refusal.retry_after_s)
        what = "locked after too many failed logins" if refusal.why == "locked" \
            else "too many failed logins"
        raise LoginRefused(429, refusal.why, f"{what}: try again in {wait} s", wait)

    def _failed(self, username: str, address: str, why: str) -> None:
        lockouts = self.throttle.failed(username, address, self._clock.now())
        at = self._clock.wall()
        with self._store.session() as s:
            repo.audit(s, username, "login.failed", at, target=f"login:{username}",
                       detail={"address": address, "why": why})
            for lockout in lockouts:
                log.warning("login lockout of %s after %d failures", lockout.key,
                            lockout.failures)
                repo.audit(s, username, "login.locked", at, target=lockout.key,
                           detail={"address": address, "failures": lockout.failures,
                                   "locked_s": round(lockout.until_s - self._clock.now())})

    def _audit(self, actor: str, action: str, target: str, **detail: Any) -> None:
        self._store.run(repo.audit, actor, action, self._clock.wall(), target=target,
                        detail=detail)


# --- HTTP --------------------------------------------------------------------------


class LoginRequest(BaseModel):
    username: str = USERNAME
    password: str = PASSWORD


class PasswordChange(BaseModel):
    current_password: str = PASSWORD
    new_password: str = PASSWORD


class LogoutReply(BaseModel):
    ended: bool = Field(description="false when the session had already ended")


class RevokeReply(BaseModel):
    username: str
    sessions_ended: int


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _refused(exc: LoginRefused) -> Exception:
    headers = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    extra = {} if exc.retry_after_s is None else {"retry_after_s": exc.retry_after_s}
    return api_error(exc.status, exc.error, exc.message, headers=headers, **extra)


def _session_token(request: Request) -> str:
    token = bearer_token(request.headers)
    if token is None or not token.startswith(TOKEN_PREFIX):
        raise api_error(400, "not_a_session", "the deployment token is not a session")
    return token


def login_router(logins: Logins) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["accounts"])

    @router.post("/session", response_model=LoginReply, openapi_extra={"security": []})
    def log_in(body: LoginRequest, request: Request) -> LoginReply:
        """Exchange a username and password for a session token (Bearer). Refused with
        429 and ``Retry-After`` while the username or the address is throttled."""
        try:
            return logins.log_in(body.username, body.password, _address(request))
        except LoginRefused as exc:
            raise _refused(exc) from None

    @router.delete("/session", response_model=LogoutReply)
    def log_out(request: Request) -> LogoutReply:
        """End this session now (its websockets close within ``security.session_check_s``)."""
        principal = require(request)
        return LogoutReply(ended=logins.log_out(principal, _session_token(request)))

    @router.post("/session/password", response_model=LoginReply)
    def change_password(body: PasswordChange, request: Request) -> LoginReply:
        """Change one's own password: every session of the login ends, a new one is
        answered."""
        principal = require(request)
        _session_token(request)
        try:
            return logins.change_password(principal, body.current_password,
                                          body.new_password, _address(request))
        except LoginRefused as exc:
            raise _refused(exc) from None

    @router.get("/session/language", response_model=LanguageReply)
    def language(request: Request) -> LanguageReply:
        """The pages' language of this session's login."""
        principal = require(request)
        _session_token(request)
        try:
            return logins.language(principal)
        except LoginRefused as exc:
            raise _refused(exc) from None

    @router.put("/session/language", response_model=LanguageReply)
    def choose_language(body: LanguageChoice, request: Request) -> LanguageReply:
        """Choose the pages' language of this session's login (zh-CN or en); the pages'
        switch sends it, then reloads in it."""
        principal = require(request)
        _session_token(request)
        try:
            return logins.choose_language(principal, body.language)
        except LoginRefused as exc:
            raise _refused(exc) from None

    @router.delete("/users/{username}/sessions", response_model=RevokeReply)
    def revoke(request: Request,
               username: str = Path(min_length=1, max_length=64)) -> RevokeReply:
        """An admin ends every session of a login (audited)."""
        admin = require(request, "admin")
        try:
            return RevokeReply(username=username, sessions_ended=logins.revoke(admin, username))
        except LoginRefused as exc:
            raise _refused(exc) from None

    return router
