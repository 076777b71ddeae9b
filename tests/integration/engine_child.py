"""The real service in a process of its own, for live tests that kill the engine.

A test that must show what an engine death loses cannot stop the in-process service
(its threads and memory would outlive the "death"); it starts this script, which
runs ``callflow.service.Service`` exactly as ``product.Product`` does, and SIGKILLs
it. Usage (one JSON argument, see ``child_config``)::

    python tests/integration/engine_child.py '{"state_dir": ..., "log_in": ["1001"]}'

It prints ``READY`` once AMI is up and the agents are logged in, then runs until
killed; its log goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from callflow.agents.roster import Roster, RosterAgent
from callflow.engine.policy import parse_policy
from callflow.service import Service, ServiceOptions
from callflow.settings import Ports, Settings


def child_config(settings: Settings, roster: Roster, log_in: list[str],
                 policy: dict[str, Any] | None = None) -> str:
    """The JSON argument for this script."""
    return json.dumps({
        "state_dir": str(settings.state_dir), "database_url": settings.database_url,
        "asterisk_root": str(settings.asterisk_root), "ports": asdict(settings.ports),
        "ami_username": settings.ami_username, "ami_secret": settings.ami_secret,
        "api_token": settings.api_token, "agents": [asdict(a) for a in roster.agents],
        "log_in": log_in, "policy": policy or {}})


async def run(config: dict[str, Any]) -> None:
    settings = Settings(
        state_dir=Path(config["state_dir"]), database_url=config["database_url"],
        asterisk_root=Path(config["asterisk_root"]), policy_file=None,
        ports=Ports(**config["ports"]), ami_username=config["ami_username"],
        ami_secret=config["ami_secret"], api_token=config["api_token"], country="cn")
    roster = Roster(tuple(RosterAgent(**{**a, "queues": tuple(a["queues"])})
                          for a in config["agents"]))
    service = Service(settings, parse_policy(config["policy"]), roster, ServiceOptions())
    await service.start()
    assert service.ami is not None and service.runtime is not None
    await service.ami.wait_up(10)
    for agent_id in config["log_in"]:
        service.runtime.log_in(agent_id)
    print("READY", flush=True)
    await asyncio.Event().wait()  # until SIGKILL


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
