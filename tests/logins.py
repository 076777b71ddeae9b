"""Sessions for tests: a login row and a live session, without the cost of a password.

Sessions live in the store (api/sessions.py) and belong to a login, so a test that
needs "an agent's token" makes the login first. Its password hash is one no password
matches, so nobody logs in with it; tests that exercise passwords use the real route.
"""

from __future__ import annotations

from callflow.api.accounts import Logins
from callflow.store import repo
from callflow.store.db import Store
from callflow.store.models import Agent

#: A well-formed hash that no password matches (the digest is not scrypt's output).
NO_PASSWORD = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 64


def session_token(store: Store, logins: Logins, username: str, role: str,
                  agent_id: str | None = None) -> str:
    """A live session token of ``username`` (created with ``role`` if it does not exist)."""
    user = store.read(repo.get_user, username)
    if user is None:
        if agent_id is not None:  # a login points at its agent's row: made if the roster lacks it
            with store.session() as s:
                if s.get(Agent, agent_id) is None:
                    repo.upsert_agent(s, agent_id, name=f"Agent {agent_id}")
        user = store.run(repo.set_user, username, role, NO_PASSWORD, agent_id=agent_id)
    return logins.sessions.issue(user.id, "test").token
