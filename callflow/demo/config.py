"""The demo carrier's settings, from ``CALLFLOW_DEMO_*`` environment variables.

Deployment facts (like ports), not service standards: they say how the pretend network
behaves, not how the centre must. ``CALLFLOW_DEMO_CARRIER`` decides whether it is wired
at all: ``auto`` (the default) turns it on exactly when no outbound trunk is configured,
``off`` never, ``on`` insists (and fails to start beside a real trunk).

| variable | meaning [default] |
|---|---|
| ``CALLFLOW_DEMO_CARRIER`` | ``auto``, ``on`` or ``off`` [auto] |
| ``CALLFLOW_DEMO_NUMBERS`` | five numbers, comma-separated: answers, busy, never answers,
  drops, not in service [5550101,...,5550105] |
| ``CALLFLOW_DEMO_ANSWER_RINGS`` | rings before the answering and dropping numbers answer [2] |
| ``CALLFLOW_DEMO_TALK_S`` | seconds the answering number stays up [60] |
| ``CALLFLOW_DEMO_DROP_AFTER_S`` | seconds after answering the dropping number is dropped [3] |
| ``CALLFLOW_DEMO_DROP_CAUSE`` | the Q.850 cause it is dropped with [38] |
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from callflow.errors import PbxConfigError, SettingsError
from callflow.pbx.demo_carrier import DemoCarrier

MODES = ("auto", "on", "off")
NUMBER_ROLES = ("answer", "busy", "no_answer", "drop", "not_in_service")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(f"CALLFLOW_{name}", str(default)).strip()
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"CALLFLOW_{name} must be an integer, got {raw!r}") from None


def demo_carrier_from_env(ring_s: float, *, trunk_configured: bool,
                          env: Mapping[str, str] | None = None) -> DemoCarrier | None:
    """The demo carrier to render, or None when it is off.

    ``ring_s`` is one ring at the deployment's cadence (``Policy.ring_cycle_s``), so
    "answers after 2 rings" sounds like 2 rings; ``trunk_configured`` is whether a real
    outbound trunk (today: a customer contact) is configured."""
    env = os.environ if env is None else env
    mode = env.get("CALLFLOW_DEMO_CARRIER", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise SettingsError(f"CALLFLOW_DEMO_CARRIER must be one of {', '.join(MODES)}, "
                            f"got {mode!r}")
    if mode == "off" or (mode == "auto" and trunk_configured):
        return None
    if trunk_configured:
        raise SettingsError("CALLFLOW_DEMO_CARRIER=on, but an outbound trunk is configured: "
                            "the demo carrier is only for a deployment without one")
    numbers = dict(zip(NUMBER_ROLES, DemoCarrier().numbers_in_order(), strict=True))
    raw = env.get("CALLFLOW_DEMO_NUMBERS", "").strip()
    if raw:
        given = [n.strip() for n in raw.split(",")]
        if len(given) != len(NUMBER_ROLES):
            raise SettingsError("CALLFLOW_DEMO_NUMBERS must list five numbers: "
                                + ", ".join(NUMBER_ROLES) + f"; got {raw!r}")
        numbers = dict(zip(NUMBER_ROLES, given, strict=True))
    carrier = DemoCarrier(
        **numbers, answer_rings=_int(env, "DEMO_ANSWER_RINGS", 2), ring_s=ring_s,
        talk_s=_int(env, "DEMO_TALK_S", 60), drop_after_s=_int(env, "DEMO_DROP_AFTER_S", 3),
        drop_cause=_int(env, "DEMO_DROP_CAUSE", 38))
    try:
        carrier.validate()
    except PbxConfigError as exc:
        raise SettingsError(f"{exc} (CALLFLOW_DEMO_*)") from None
    return carrier
