"""Trunk alarms (engine/trunk_health.py): once per condition, re-armed when it ends."""

from __future__ import annotations

import pytest

from callflow.engine import supervision, trunk_health
from callflow.engine.trunk_health import TrunkHealth


@pytest.mark.std("STD-147")
def test_a_refused_registration_alarms_once_until_it_registers_again() -> None:
    alarms, health = trunk_health.registration(TrunkHealth(), "carrier", "Rejected", "sip:x")
    assert [(a.kind, a.detail["trunk"]) for a in alarms] == [
        ("trunk_registration_refused", "carrier")]
    again, health = trunk_health.registration(health, "carrier", "Rejected", "sip:x")
    assert again == () and health.down == {"carrier"}
    _, health = trunk_health.registration(health, "carrier", "Registered", "sip:x")
    assert health.down == frozenset()
    back, _ = trunk_health.registration(health, "carrier", "Rejected", "sip:x")
    assert len(back) == 1
    assert supervision.condition_of(back[0].kind, back[0].detail) == (
        "trunk_registration_refused", "carrier")


@pytest.mark.std("STD-147")
def test_an_unreachable_carrier_alarms_once_and_unknown_says_nothing() -> None:
    alarms, health = trunk_health.reachability(TrunkHealth(), "carrier", "Unknown", "sip:x")
    assert alarms == () and health == TrunkHealth()
    alarms, health = trunk_health.reachability(health, "carrier", "Unreachable", "sip:x")
    assert [a.kind for a in alarms] == ["trunk_unreachable"]
    assert trunk_health.reachability(health, "carrier", "Unreachable", "sip:x")[0] == ()
    _, health = trunk_health.reachability(health, "carrier", "Reachable", "sip:x")
    assert health.unreachable == frozenset()
    assert "trunk_unreachable" in supervision.CONDITION_ALARMS
