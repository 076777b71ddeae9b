"""When a carrier trunk is down, as pure rules (issue 16; STD-147 supervisor alarms).

Asterisk says two things about a trunk: whether its outbound registration holds (the
``Registry`` AMI event: ``Registered``, ``Rejected`` -- a 401/403 the credentials could
not answer, or no answer at all -- ``Unregistered``...) and whether the carrier answers
qualify OPTIONS (``ContactStatus`` of the trunk's AOR: ``Reachable``/``Unreachable``).
A trunk that cannot register or does not answer carries no call: the supervisor must
hear of it once, at once, and not again while the condition stands (the alarms are
``CONDITION_ALARMS``, deduplicated like a softphone's); a trunk that is back re-arms
its alarm. ``TrunkHealth`` is the memory; each rule returns the alarms to raise and the
new memory. No clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from callflow.engine.effects import Alarm
from callflow.engine.rules import enforces

REGISTRATION_REFUSED = "trunk_registration_refused"
UNREACHABLE = "trunk_unreachable"
#: ``Registry`` statuses that mean the carrier does not accept us (Asterisk 22:
#: res_pjsip_outbound_registration's status strings)
REFUSED_STATUSES = frozenset({"Rejected"})
REGISTERED_STATUSES = frozenset({"Registered"})


@dataclass(frozen=True)
class TrunkHealth:
    """The trunks whose condition is alarmed already."""

    refused: frozenset[str] = frozenset()
    unreachable: frozenset[str] = frozenset()

    @property
    def down(self) -> frozenset[str]:
        """Trunks that carry no call now (refused or unreachable)."""
        return self.refused | self.unreachable


@enforces("STD-147")
def registration(health: TrunkHealth, trunk: str, status: str, server: str
                 ) -> tuple[tuple[Alarm, ...], TrunkHealth]:
    """A ``Registry`` status of ``trunk``: refused -> one alarm; registered -> re-armed."""
    if status in REFUSED_STATUSES:
        if trunk in health.refused:
            return (), health
        alarm = Alarm(REGISTRATION_REFUSED, {"trunk": trunk, "status": status,
                                             "server": server}, std="STD-147")
        return (alarm,), replace(health, refused=health.refused | {trunk})
    if status in REGISTERED_STATUSES:
        return (), replace(health, refused=health.refused - {trunk})
    return (), health


@enforces("STD-147")
def reachability(health: TrunkHealth, trunk: str, status: str, uri: str
                 ) -> tuple[tuple[Alarm, ...], TrunkHealth]:
    """A ``ContactStatus`` of ``trunk``'s AOR: ``Unreachable`` -> one alarm;
    ``Reachable`` -> re-armed; anything else (not qualified yet) says nothing."""
    if status == "Unreachable":
        if trunk in health.unreachable:
            return (), health
        alarm = Alarm(UNREACHABLE, {"trunk": trunk, "uri": uri}, std="STD-147")
        return (alarm,), replace(health, unreachable=health.unreachable | {trunk})
    if status == "Reachable":
        return (), replace(health, unreachable=health.unreachable - {trunk})
    return (), health
