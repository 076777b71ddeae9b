"""The roster file: agents.toml read into the model (agents/roster.py), or written on first run.

The roster is deployment data (not a service standard): a TOML file of agents with
their work number (工号, announced in the greeting, STD-014), name and PJSIP
endpoint. On first run ``make run`` generates one with a few agents and a random
SIP password each, so a shipped config never carries a default secret.
"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

from callflow.agents.roster import Roster, RosterAgent
from callflow.errors import CallflowError


class RosterError(CallflowError):
    """The roster file is unreadable or an entry is invalid (the message names it)."""


def _team(value: object, path: Path, i: int) -> str | None:
    """An agent's team: 1-64 printable characters, or none."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise RosterError(f"{path}: agent[{i}].team must be 1-64 printable characters")
    return value


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
                team=_team(entry.get("team"), path, i),
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
