"""Who the agents are and which SIP endpoint each one's softphone is.

The roster is deployment data (not a service standard): a TOML file of agents with
their work number (工号, announced in the greeting, STD-014), name and PJSIP
endpoint. On first run ``make run`` generates one with a few agents and a random
SIP password each, so a shipped config never carries a default secret.
"""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from callflow.errors import CallflowError


class RosterError(CallflowError):
    """The roster file is unreadable or an entry is invalid (the message names it)."""


@dataclass(frozen=True)
class RosterAgent:
    agent_id: str  # work number
    name: str
    endpoint: str  # PJSIP endpoint / AOR name, e.g. "agent1001"
    password: str | None = None  # softphone REGISTER password (None = static contact)
    static_contact: str | None = None  # sip:agent1001@127.0.0.1:5081 for test softphones
    queues: tuple[str, ...] = ("main",)  # the queues (skills) this agent serves


@dataclass(frozen=True)
class Roster:
    agents: tuple[RosterAgent, ...]

    def by_id(self, agent_id: str) -> RosterAgent | None:
        return next((a for a in self.agents if a.agent_id == agent_id), None)

    def by_endpoint(self, endpoint: str) -> RosterAgent | None:
        return next((a for a in self.agents if a.endpoint == endpoint), None)

    def agent_for_channel(self, channel: str) -> RosterAgent | None:
        """``PJSIP/agent1001-0000002a`` -> the agent whose endpoint is ``agent1001``."""
        endpoint = endpoint_of_channel(channel)
        return None if endpoint is None else self.by_endpoint(endpoint)


def endpoint_of_channel(channel: str) -> str | None:
    """``PJSIP/agent1001-0000002a`` -> ``agent1001``; None for other technologies."""
    tech, _, rest = channel.partition("/")
    if tech.upper() != "PJSIP" or not rest:
        return None
    return rest.rsplit("-", 1)[0]


def load_roster(path: Path) -> Roster:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RosterError(f"roster file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"{path}: {exc}") from None
    agents = []
    for i, entry in enumerate(data.get("agent", [])):
        try:
            agent_id = str(entry["id"])
            agents.append(RosterAgent(
                agent_id=agent_id,
                name=str(entry.get("name", agent_id)),
                endpoint=str(entry.get("endpoint", f"agent{agent_id}")),
                password=entry.get("password"),
                static_contact=entry.get("static_contact"),
                queues=tuple(str(q) for q in entry.get("queues", ["main"])),
            ))
        except KeyError as exc:
            raise RosterError(f"{path}: agent[{i}] lacks {exc.args[0]!r}") from None
        if not agent_id.isdigit():
            raise RosterError(
                f"{path}: agent[{i}].id must be digits (a work number), got {agent_id!r}")
    ids = [a.agent_id for a in agents]
    if len(set(ids)) != len(ids):
        raise RosterError(f"{path}: duplicate agent ids")
    return Roster(tuple(agents))


def write_default_roster(path: Path, first: int = 1001, count: int = 4) -> Roster:
    """First-run roster: ``count`` registering softphones with generated passwords."""
    lines = ["# callflow agents: work number, name, PJSIP endpoint, softphone password",
             "# (generated on first run; edit freely, then restart callflow)", ""]
    for n in range(first, first + count):
        lines += ["[[agent]]", f'id = "{n}"', f'name = "Agent {n}"', f'endpoint = "agent{n}"',
                  f'password = "{secrets.token_urlsafe(12)}"', ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    path.chmod(0o600)
    return load_roster(path)
