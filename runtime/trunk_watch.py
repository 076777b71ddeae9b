"""Asterisk's word on the carrier trunks, made into supervisor alarms (issue 16).

Thin: it maps AMI ``Registry`` events (by the registration's server URI) and
``ContactStatus`` events (by the trunk's AOR) to a trunk name and lets the pure rules
of ``engine/trunk_health.py`` decide; the alarms go out through the runtime like every
other (board, store). Only the trunks this deployment configured are watched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from callflow.engine import trunk_health
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
        if trunks:
            runtime.on_ami("Registry", self._on_registry)
            runtime.on_ami("ContactStatus", self._on_contact)

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
