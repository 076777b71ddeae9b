"""Hot-desking: which softphone an agent works at, and whose facts a desk's events are.

The roster gives every agent a home PJSIP endpoint, but an agent logs in "with their
work number and the extension they sit at" (issue 5). From the login on, the agent's
calls ring that desk, and what PJSIP reports about that desk (its contact status,
the channels Asterisk dials to it) belongs to the agent seated there. Desks are the
endpoints Asterisk knows, i.e. the roster's endpoints (asterisk-conf/pjsip.conf.j2
renders one per roster agent); nobody can sit at a desk that does not exist or that
another logged-in agent occupies.

Pure functions over the runtime's agent map, so the rules are tested without a PBX.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from callflow.agents.events import AgentState
from callflow.agents.roster import Roster
from callflow.agents.state import AgentSnapshot
from callflow.errors import StateError

_TRAILING_DIGITS = re.compile(r"(\d+)$")


def resolve_desk(roster: Roster, raw: str) -> str:
    """The endpoint ``raw`` names: the endpoint itself (``agent1003``) or its number (``1003``).

    Raises ``StateError("unknown_extension")`` for anything else, so a typo at login is
    refused instead of leaving the agent unreachable.
    """
    text = raw.strip()
    endpoints = [a.endpoint for a in roster.agents]
    if text in endpoints:
        return text
    if text.isdigit():
        found = [e for e in endpoints if (m := _TRAILING_DIGITS.search(e)) and m.group(1) == text]
        if len(found) == 1:
            return found[0]
    shown = text[:32] if text.isprintable() else repr(text[:32])
    raise StateError("unknown_extension", f"{shown!r} is not an extension of this centre")


def seated_at(agents: Iterable[AgentSnapshot], endpoint: str) -> AgentSnapshot | None:
    """The agent logged in at ``endpoint`` now, if any."""
    return next((a for a in agents
                 if a.state is not AgentState.LOGGED_OUT and a.extension == endpoint), None)


def agent_for_endpoint(agents: Mapping[str, AgentSnapshot], roster: Roster,
                       endpoint: str) -> str | None:
    """Whose agent the facts about ``endpoint`` are.

    The agent seated there; with nobody seated, the endpoint's roster owner while that
    owner is logged out (so a logged-out agent's softphone status is still shown on the
    board and is right when they log in at home). None: the desk is nobody's now.
    """
    seated = seated_at(agents.values(), endpoint)
    if seated is not None:
        return seated.agent_id
    owner = roster.by_endpoint(endpoint)
    if owner is None:
        return None
    snapshot = agents.get(owner.agent_id)
    if snapshot is None or snapshot.state is not AgentState.LOGGED_OUT:
        return None
    return owner.agent_id


def check_free(agents: Mapping[str, AgentSnapshot], agent_id: str, endpoint: str) -> None:
    """Refuse a login at a desk another logged-in agent occupies (one agent per softphone)."""
    seated = seated_at(agents.values(), endpoint)
    if seated is not None and seated.agent_id != agent_id:
        raise StateError("extension_taken",
                         f"agent {seated.agent_id} is logged in at {endpoint}")
