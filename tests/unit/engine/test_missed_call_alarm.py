"""STD-147: a missed call (an inbound call that ended abandoned) is a board alarm at once,
once per call; short abandons, callbacks, answered calls and calls still live are not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callflow.engine.calls import InboundCall, Outcome, Phase
from callflow.engine.effects import Alarm
from callflow.engine.supervision import MISSED_KEPT, SupervisionMemory, check_missed_call

T0 = 1_800_000_000.0


def ended(call_id: str, outcome: Outcome | None, *, routed_after_s: float = 0.0,
          waited_s: float = 42.0, phase: Phase = Phase.ENDED) -> InboundCall:
    return InboundCall(call_id=call_id, channel=f"PJSIP/trunk-{call_id}", caller="13800138000",
                       did="100", queue="main", entered_at=T0, phase=phase,
                       routed_at=T0 + routed_after_s,
                       ended_at=T0 + routed_after_s + waited_s, outcome=outcome)


@pytest.mark.std("STD-147")
def test_an_abandoned_call_alarms_once_with_its_wait_after_the_menu() -> None:
    verdict = check_missed_call(ended("c1", Outcome.ABANDONED, routed_after_s=8),
                                SupervisionMemory())
    assert verdict.alarms == (Alarm("missed_call", {"call_id": "c1", "caller": "13800138000",
                                                    "queue": "main", "waited_s": 42.0},
                                    std="STD-147"),)
    # the same call's record again (Asterisk's CEL times arriving later): nothing new
    assert check_missed_call(ended("c1", Outcome.ABANDONED), verdict.memory).alarms == ()


@pytest.mark.std("STD-147")
def test_other_endings_and_live_calls_are_not_missed_calls() -> None:
    memory = SupervisionMemory()
    for outcome in (Outcome.ANSWERED, Outcome.SHORT_ABANDON, Outcome.CALLBACK,
                    Outcome.FALLBACK, Outcome.PBX_FAILURE, None):
        assert check_missed_call(ended("c2", outcome), memory).alarms == (), outcome
    live = ended("c3", Outcome.ABANDONED, phase=Phase.ROUTING)
    assert check_missed_call(replace(live, ended_at=None), memory).alarms == ()


def test_the_memory_of_alarmed_calls_is_bounded() -> None:
    memory = SupervisionMemory()
    for n in range(MISSED_KEPT + 10):
        memory = check_missed_call(ended(f"c{n}", Outcome.ABANDONED), memory).memory
    assert len(memory.missed) == MISSED_KEPT and memory.missed[-1] == f"c{MISSED_KEPT + 9}"
