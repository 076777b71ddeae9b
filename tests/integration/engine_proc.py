"""The real service in a process of its own, so a live test can kill it like a crash.

``Product`` runs the service on a thread of the test process: stopping it is always
a clean stop. Issue 14 needs the engine to die the way a process dies (SIGKILL: no
``finally``, no last write, the kernel closing its AGI and AMI sockets while Asterisk
keeps the calls up), so ``EngineProcess`` starts ``python engine_proc.py <json>``, which
builds the same ``Service`` (same settings, roster and store file as the ``Product``
that is started after it) and logs the given agents in.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY = "engine ready"


class EngineProcess:
    """``python engine_proc.py``: ready once it printed ``READY``; ``kill()`` is SIGKILL."""

    def __init__(self, settings: Any, agent_ids: list[str], log_in: list[str],
                 log_file: Path, *, all_features: bool = False) -> None:
        config = {
            "state_dir": str(settings.state_dir), "database_url": settings.database_url,
            "asterisk_root": str(settings.asterisk_root), "ami": settings.ports.ami,
            "sip": settings.ports.sip, "agi": settings.ports.agi, "api": settings.ports.api,
            "rtp_start": settings.ports.rtp_start, "rtp_end": settings.ports.rtp_end,
            "ami_username": settings.ami_username, "ami_secret": settings.ami_secret,
            "api_token": settings.api_token,
            "pbx_workdir": str(settings.pbx_dir),
            "agents": {a: str(settings_contact(settings, a)) for a in agent_ids},
            "log_in": log_in,
            "all_features": all_features,
        }
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if READY in line:
                return
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"the engine process did not start:\n{self.log_tail()}")

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: the engine stops cleanly as ``callflow run`` does; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return code

    def kill(self) -> None:
        """A crash: SIGKILL, nothing of the engine runs after it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_file.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def settings_contact(settings: Any, agent_id: str) -> str:
    """Agent ``agent_id``'s static contact (the test session's SIPp softphone port)."""
    base = settings.ports.ami - 38  # Ports.from_base: ami = base + 38
    return f"sip:agent{agent_id}@127.0.0.1:{base + 100 + int(agent_id) - 1000}"


async def _serve(config: dict[str, Any]) -> None:
    from callflow.agents.roster import Roster, RosterAgent
    from callflow.agents.state import LogIn
    from callflow.cli import default_features
    from callflow.desktop.feature import AgentDesktop
    from callflow.engine.policy import Policy
    from callflow.service import Service, ServiceOptions
    from callflow.settings import Ports, Settings

    ports = Ports(ami=config["ami"], sip=config["sip"], agi=config["agi"], api=config["api"],
                  rtp_start=config["rtp_start"], rtp_end=config["rtp_end"])
    settings = Settings(
        state_dir=Path(config["state_dir"]), database_url=config["database_url"],
        asterisk_root=Path(config["asterisk_root"]), policy_file=None, ports=ports,
        ami_username=config["ami_username"], ami_secret=config["ami_secret"],
        api_token=config["api_token"], country="cn",
        pbx_workdir=Path(config["pbx_workdir"]))
    roster = Roster(tuple(RosterAgent(agent_id=a, name=f"Agent {a}", endpoint=f"agent{a}",
                                      static_contact=contact)
                          for a, contact in config["agents"].items()))
    features = default_features() if config.get("all_features") else [AgentDesktop()]
    service = Service(settings, Policy.defaults(), roster,
                      ServiceOptions(serve_api=False, features=features))
    await service.start()
    assert service.ami is not None and service.runtime is not None
    await service.ami.wait_up(10)
    for agent_id in config["log_in"]:
        service.runtime.agent_event(agent_id, LogIn())
    print(READY, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # as `callflow run`: a clean stop
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1])))
