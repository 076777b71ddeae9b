"""Sessions kept on the server: issued at login, renewed by use, ended on demand.

A session token is 256 random bits behind the prefix ``s2.``; the store keeps only its
SHA-256 (store/models.py ``LoginSession``), so the server can end a session at once
(logout, a password change, an admin) instead of waiting for a signed token to run
out. A session ends when unused for ``security.session_idle_min`` and, whatever its
use, ``security.session_max_h`` after the login. Each use moves the idle end on, but
writes it at most once a minute (``RENEW_STEP_S``), so a busy page costs one read per
request and one write a minute.

Every method reads or writes the store, so it runs in a worker thread, never on the
loop the engine runs on (``callflow.api.accounts`` calls it that way).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from callflow.api.auth import Principal, principal_for
from callflow.engine.policy import SecurityPolicy
from callflow.store import repo
from callflow.store.db import Store

TOKEN_PREFIX = "s2."
#: The idle end is written again only once it is this much older than it would be now.
RENEW_STEP_S = 60.0


@dataclass(frozen=True)
class Issued:
    """A new session: the token (shown to its owner once) and its idle lifetime."""

    token: str
    expires_in_s: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class SessionBook:
    """The sessions of one deployment, in its store."""

    def __init__(self, store: Store, rules: SecurityPolicy,
                 now: Callable[[], datetime]) -> None:
        self._store = store
        self._idle = timedelta(minutes=rules.session_idle_min)
        self._max = timedelta(hours=rules.session_max_h)
        self._now = now

    def issue(self, user_id: int, address: str) -> Issued:
        """A new session for this user (the caller checked the password)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        at = self._now()
        ends = at + self._max
        self._store.run(repo.add_session, user_id, token_hash(token), at=at,
                        expires_at=min(at + self._idle, ends), ends_at=ends, address=address)
        return Issued(token, int(min(self._idle, self._max).total_seconds()))

    def principal(self, token: str) -> Principal | None:
        """Who holds this token, or None (unknown, revoked, idle too long, past its end)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        at = self._now()
        found = self._store.read(repo.live_session, token_hash(token), at)
        if found is None:
            return None
        session, user = found
        renewed = min(at + self._idle, session.ends_at)
        if (renewed - session.expires_at).total_seconds() >= RENEW_STEP_S:
            self._store.run(repo.renew_session, session.id, renewed)
        return principal_for(user.username, user.role, user.agent_id, user.team)

    def end(self, token: str, reason: str) -> bool:
        """End this session now; False when it was not live."""
        return self._store.run(repo.revoke_session, token_hash(token), self._now(), reason)

    def end_all(self, username: str, reason: str) -> int:
        """End every session of this login; how many were live."""
        return self._store.run(repo.revoke_user_sessions, username, self._now(), reason)
