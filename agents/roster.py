"""Who the agents are and which SIP endpoint each one's softphone is.

The roster is deployment data (not a service standard): agents with their work
number (工号, announced in the greeting, STD-014), name and PJSIP endpoint. This is
the model and its pure lookups; reading and writing the TOML file it comes from is
the Asterisk harness's job (callflow/pbx/roster.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from callflow.engine.channels import endpoint_of


@dataclass(frozen=True)
class RosterAgent:
    agent_id: str  # work number
    name: str
    endpoint: str  # PJSIP endpoint / AOR name, e.g. "agent1001"
    password: str | None = None  # softphone REGISTER password (None = static contact)
    static_contact: str | None = None  # sip:agent1001@127.0.0.1:5081 for test softphones
    queues: tuple[str, ...] = ("main",)  # the queues (skills) this agent serves
    team: str | None = None  # the team (班组) the board's per-team view groups (STD-145)


@dataclass(frozen=True)
class Roster:
    agents: tuple[RosterAgent, ...]

    def by_id(self, agent_id: str) -> RosterAgent | None:
        return next((a for a in self.agents if a.agent_id == agent_id), None)

    def by_endpoint(self, endpoint: str) -> RosterAgent | None:
        return next((a for a in self.agents if a.endpoint == endpoint), None)

    def agent_for_channel(self, channel: str) -> RosterAgent | None:
        """``PJSIP/agent1001-0000002a`` -> the agent whose endpoint is ``agent1001``."""
        endpoint = endpoint_of(channel)
        return self.by_endpoint(endpoint) if endpoint else None
