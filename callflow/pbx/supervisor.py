"""Keep the engine's Asterisk running: notice its death, say so, start it again.

An Asterisk killed, crashed, or told ``core restart now`` (which cannot re-exec in the
no-chroot mode and exits) must not leave the centre dead until a person notices
(issue 14). The supervisor checks the process every ``check_s`` (a PID poll, so a
death is seen within that time, not when the AMI watchdog gives up), tells the service
(``on_down``: the calls that were up are lost to a PBX failure, agents are freed),
starts Asterisk again with backoff, and tells the service once it is back (``on_up``;
the AMI client reconnects and resyncs by itself). After ``max_restarts`` restarts
within ``window_s`` it stops trying and says so (``on_gave_up``): a PBX that dies
every few seconds needs a person, not a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from callflow.errors import PbxError
from callflow.pbx.process import AsteriskProcess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisionRules:
    """The Policy's ``supervision.pbx_*`` numbers."""

    check_s: float = 0.5
    backoff_max_s: float = 8.0
    max_restarts: int = 5
    window_s: float = 300.0

    def pauses(self) -> list[float]:
        """The pauses after failed starts: doubling from ``check_s`` up to the maximum."""
        out, pause = [], self.check_s
        while pause < self.backoff_max_s:
            out.append(pause)
            pause *= 2
        return [*out, self.backoff_max_s]


class PbxSupervisor:
    """Watches one ``AsteriskProcess`` (``state``: up, down, restarting, gave_up)."""

    def __init__(self, process: AsteriskProcess, *, on_down: Callable[[str], None],
                 on_up: Callable[[float], None], on_gave_up: Callable[[str], None],
                 rules: SupervisionRules | None = None) -> None:
        self.process = process
        self.rules = rules or SupervisionRules()
        self._on_down, self._on_up, self._on_gave_up = on_down, on_up, on_gave_up
        self.state = "up" if process.running else "down"
        self.restarts = 0
        self.last_error = ""
        self._recent: deque[float] = deque()

    async def run(self) -> None:
        while self.state != "gave_up":
            await asyncio.sleep(self.rules.check_s)
            if self.process.running:
                continue
            down_at = time.monotonic()
            reason = f"Asterisk (pid {self.process.pid}) is gone"
            log.error("%s; starting it again", reason)
            self.state = "down"
            self._on_down(reason)
            await self._restart(down_at)

    async def _restart(self, down_at: float) -> None:
        for attempt, pause in enumerate(self.rules.pauses(), 1):
            now = time.monotonic()
            while self._recent and now - self._recent[0] > self.rules.window_s:
                self._recent.popleft()
            if len(self._recent) >= self.rules.max_restarts:
                self._give_up(f"{len(self._recent)} restarts within "
                              f"{self.rules.window_s:g} s; last error: {self.last_error}")
                return
            self.state = "restarting"
            self._recent.append(now)
            try:
                await asyncio.to_thread(self.process.restart)
            except PbxError as exc:
                self.last_error = str(exc).splitlines()[0]
                log.error("Asterisk restart %d failed: %s (next in %gs)", attempt,
                          self.last_error, pause)
                await asyncio.sleep(pause)
                continue
            self.restarts += 1
            self.state = "up"
            log.warning("Asterisk is back (pid %s) %.2fs after it went down",
                        self.process.pid, time.monotonic() - down_at)
            self._on_up(time.monotonic() - down_at)
            return
        self._give_up(f"could not start Asterisk again: {self.last_error}")

    def _give_up(self, why: str) -> None:
        self.state = "gave_up"
        log.error("giving up on Asterisk: %s", why)
        self._on_gave_up(why)
