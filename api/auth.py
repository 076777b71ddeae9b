"""Who is on the other end of a connection, and which topics they may see.

A token maps to a ``Principal``; every stream is filtered by the principal's allowed
topics *before* the client's own topic choice, so a client can narrow what it gets but
never widen it. The deployment token (callflow/settings.py generates it) is a
supervisor allowed every topic; a person's session (``callflow.api.sessions``) is a
principal of their role, and an agent's sees only ``agent:<work number>`` (STD-148:
agents see only their own calls).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from callflow.engine.rules import enforces

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    """An authenticated caller of the API.

    ``topics=None`` means every topic (supervisors); otherwise the exact topic names.
    """

    name: str
    role: str
    topics: frozenset[str] | None = None
    team: str | None = None  # a shift lead's team (the board opens on it; their tickets)

    def may_see(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics


SUPERVISOR = Principal(name="deployment", role="supervisor")
#: Roles that see every topic; an agent sees only their own.
SEE_ALL_ROLES = frozenset({"supervisor", "qa", "admin"})
#: The escalation chain's people (STD-137): they follow the board and their own topic
#: ``user:<login>``, where the ticket steps assigned to them arrive.
LEAD_ROLES = frozenset({"shift_lead", "department_manager"})


@enforces("STD-148")
def principal_for(username: str, role: str, agent_id: str | None,
                  team: str | None = None) -> Principal:
    """A person's principal: their role, and for an agent only their own topic; a shift
    lead or department manager sees the board, the alarms and their own topic."""
    if role in SEE_ALL_ROLES:
        return Principal(name=username, role=role)
    if role in LEAD_ROLES:
        return Principal(name=username, role=role, team=team,
                         topics=frozenset({"board", "alarms", f"user:{username}"}))
    topics = frozenset({f"agent:{agent_id}"}) if agent_id else frozenset()
    return Principal(name=username, role=role, topics=topics)


class TokenAuth:
    """Token → principal, compared in constant time against every known token.

    ``recheck_s``: how often a long-lived connection must present its token again
    (None: these tokens never end; sessions do, see ``callflow.api.accounts``).
    """

    recheck_s: float | None = None

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
