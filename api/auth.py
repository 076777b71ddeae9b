"""Who is on the other end of a connection, and which topics they may see.

A token maps to a ``Principal``; every stream is filtered by the principal's allowed
topics *before* the client's own topic choice, so a client can narrow what it gets but
never widen it. Today the one deployment token (callflow/settings.py generates it) is a
supervisor allowed every topic; per-agent tokens, whose principal sees only
``agent:<ext>``, slot into the same ``TokenAuth`` mapping later.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    """An authenticated caller of the API.

    ``topics=None`` means every topic (supervisors); otherwise the exact topic names.
    """

    name: str
    role: str
    topics: frozenset[str] | None = None

    def may_see(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics


SUPERVISOR = Principal(name="deployment", role="supervisor")


class TokenAuth:
    """Token → principal, compared in constant time against every known token."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        for token in principals:
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"API tokens must be at least {MIN_TOKEN_LENGTH} characters; "
                    "let callflow.settings generate one")
        self._principals = [(token.encode(), principal)
                            for token, principal in principals.items()]

    @classmethod
    def deployment(cls, api_token: str) -> TokenAuth:
        """The single deployment token, a supervisor allowed every topic."""
        return cls({api_token: SUPERVISOR})

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal for ``presented``, or None. No early exit, so timing tells nothing."""
        if not presented:
            return None
        candidate = presented.encode("utf-8", "surrogateescape")
        found: Principal | None = None
        for token, principal in self._principals:
            if hmac.compare_digest(token, candidate):
                found = principal
        return found
