"""Asterisk's word on the carrier trunks, made into supervisor alarms (issue 16).

Thin: it maps AMI ``Registry`` events (by the registration's server URI) and
``ContactStatus`` events (by the trunk's AOR) to a trunk name and lets the pure rules
of ``engine/trunk_health.py`` decide; the alarms go out through the runtime like every
other (board, store). Only the trunks this deployment configured are watched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from callflow.engine import trunk_health
from callflow.engine.effects import ListRegistrations
from callflow.errors import CallflowError
from callflow.runtime.asterisk import AmiFrame
from callflow.runtime.core import Runtime
from callflow.trunks import Trunk

log = logging.getLogger(__name__)


class TrunkWatch:
    """Follows each configured trunk's registration and reachability."""

    def __init__(self, runtime: Runtime, trunks: Sequence[Trunk]) -> None:
        self.runtime = runtime
        self.health = trunk_health.TrunkHealth()
        self._by_server = {t.server_uri: t.name for t in trunks if t.auth == "register"}
        self._by_aor = {t.endpoint: t.name for t in trunks}
        self._by_endpoint = {t.endpoint: t.name for t in trunks if t.auth == "register"}
        self._checks: set[asyncio.Task[None]] = set()
        if trunks:
            runtime.on_ami("Registry", self._on_registry)
            runtime.on_ami("ContactStatus", self._on_contact)
            runtime.on_resync(self._after_resync)

    def _after_resync(self) -> None:
        """After every AMI (re)login: a registration refused while the engine was away
        (before it started, or during an AMI outage) is alarmed too -- Asterisk's
        ``Registry`` event for it is gone, its listing is not."""
        if not self._by_endpoint:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (pure tests)
            return
        task = loop.create_task(self._check_registrations())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_registrations(self) -> None:
        try:
            listing = await self.runtime.query(ListRegistrations())
        except CallflowError as exc:
            log.warning("trunk registrations not listed: %s", exc)
            return
        for item in listing:
            trunk = self._by_endpoint.get(item.get("ObjectName"))
            if trunk is None:
                continue
            alarms, self.health = trunk_health.registration(
                self.health, trunk, item.get("Status"), item.get("ServerUri"))
            self.runtime.execute(alarms)

    def _on_registry(self, frame: AmiFrame) -> None:
        if frame.get("ChannelType") != "PJSIP":
            return
        server = frame.get("Domain")
        trunk = self._by_server.get(server)
        if trunk is None:
            return
        status = frame.get("Status")
        log.info("trunk %s: registration %s (%s)", trunk, status, server)
        alarms, self.health = trunk_health.registration(self.health, trunk, status, server)
        self.runtime.execute(alarms)

    def _on_contact(self, frame: AmiFrame) -> None:
        trunk = self._by_aor.get(frame.get("AOR"))
        if trunk is None:
            return
        status, uri = frame.get("ContactStatus"), frame.get("URI")
        alarms, self.health = trunk_health.reachability(self.health, trunk, status, uri)
        if alarms:
            log.warning("trunk %s: %s unreachable", trunk, uri)
        self.runtime.execute(alarms)
