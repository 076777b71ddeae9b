"""The board's alarm rules (engine/supervision.py) over plain data and a fake clock.

Each rule alarms once per condition, re-arms when the condition clears, and the
interval memory starts again at midnight; the AMI link has a grace period only when
it never came up.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from callflow.engine.calls import InboundCall, Phase
from callflow.engine.clock import FakeClock
from callflow.engine.effects import Alarm
from callflow.engine.supervision import (
    IntervalRing,
    QueueFigures,
    SupervisionMemory,
    check_ami_link,
    check_long_waits,
    check_queue,
    new_day,
)

NOTHING = SupervisionMemory()
MAX_WAIT_S = 60.0
GRACE_S = 15.0


def figures(sl: float | None, rings: tuple[float | None, ...] = (), queue: str = "main",
            t0: float = 1_800_000_000.0) -> QueueFigures:
    return QueueFigures(queue, service_level=sl, decided=10, service_level_target_pct=80.0,
                        average_ring_target=2.0,
                        intervals=tuple(IntervalRing(t0 + i * 1800, r)
                                        for i, r in enumerate(rings)))


def kinds(alarms: tuple[Alarm, ...]) -> list[str]:
    return [a.kind for a in alarms]


# --- service level ------------------------------------------------------------------------


def test_low_service_level_alarms_once_and_rearms_when_back_on_target() -> None:
    verdict = check_queue(figures(0.5), NOTHING)
    assert verdict.alarms == (Alarm("service_level_below_target", {
        "queue": "main", "service_level_pct": 50.0, "target_pct": 80.0, "decided": 10},
        std="KPI"),)
    still_low = check_queue(figures(0.6), verdict.memory)
    assert still_low.alarms == ()
    unknown = check_queue(figures(None), still_low.memory)  # no decided call: no change
    assert unknown.alarms == () and unknown.memory.low_service_level == {"main"}
    back = check_queue(figures(0.8), unknown.memory)  # at the target is on target
    assert back.alarms == () and back.memory.low_service_level == frozenset()
    again = check_queue(figures(0.79), back.memory)
    assert kinds(again.alarms) == ["service_level_below_target"]
    assert again.alarms[0].detail["service_level_pct"] == 79.0


def test_each_queue_has_its_own_service_level_alarm() -> None:
    first = check_queue(figures(0.5, queue="main"), NOTHING)
    second = check_queue(figures(0.5, queue="vip"), first.memory)
    assert kinds(second.alarms) == ["service_level_below_target"]
    assert second.memory.low_service_level == {"main", "vip"}


# --- average answer ring per interval (STD-006) -------------------------------------------------


@pytest.mark.std("STD-006")
def test_an_interval_above_the_average_ring_alarms_once_for_the_day() -> None:
    verdict = check_queue(figures(None, (1.0, 2.5, None)), NOTHING)
    assert verdict.alarms == (Alarm("answer_ring_average_high", {
        "queue": "main", "interval_start": 1_800_001_800.0, "average_ring": 2.5,
        "target": 2.0}, std="STD-006"),)
    # the interval is still high (and gets worse), a later one goes high too
    later = check_queue(figures(None, (1.0, 3.0, 2.0, 2.333)), verdict.memory)
    assert [a.detail["interval_start"] for a in later.alarms] == [1_800_005_400.0]
    assert later.alarms[0].detail["average_ring"] == 2.33
    # an interval that comes back under the target is not re-armed the same day
    calmer = check_queue(figures(None, (1.0, 1.5, 2.0, 1.0)), later.memory)
    assert check_queue(figures(None, (1.0, 3.0, 2.0, 3.0)), calmer.memory).alarms == ()


def test_midnight_clears_the_interval_and_service_level_memory_only() -> None:
    clock = FakeClock()
    waiting = call("c1", entered_at=clock.wall().timestamp())
    clock.advance(MAX_WAIT_S)
    memory = check_long_waits([waiting], clock.wall().timestamp(), MAX_WAIT_S,
                              NOTHING).memory
    memory = check_ami_link(True, 0.0, GRACE_S, "127.0.0.1", 5038, memory).memory
    memory = check_queue(figures(0.5, (3.0,)), memory).memory
    assert memory.ring_intervals == {("main", 0)} and memory.low_service_level == {"main"}
    tomorrow = new_day(memory)
    assert tomorrow == replace(memory, ring_intervals=frozenset(),
                               low_service_level=frozenset())
    # the new day's first interval has the same index: it alarms again, and so does the SL
    assert kinds(check_queue(figures(0.5, (3.0,)), tomorrow).alarms) == [
        "service_level_below_target", "answer_ring_average_high"]


# --- callers waiting past the maximum (STD-043) -------------------------------------------------


def call(call_id: str, entered_at: float, phase: Phase = Phase.ROUTING,
         answered_at: float | None = None, queue: str = "main") -> InboundCall:
    return InboundCall(call_id=call_id, channel=f"PJSIP/trunk-{call_id}", caller="13800138000",
                       did="4000", queue=queue, entered_at=entered_at, phase=phase,
                       answered_at=answered_at)


@pytest.mark.std("STD-043")
def test_a_caller_waiting_past_the_maximum_alarms_once() -> None:
    clock = FakeClock()
    calls = [call("c1", clock.wall().timestamp())]
    clock.advance(MAX_WAIT_S - 0.1)
    early = check_long_waits(calls, clock.wall().timestamp(), MAX_WAIT_S, NOTHING)
    assert early.alarms == () and early.memory == NOTHING
    clock.advance(0.1)
    due = check_long_waits(calls, clock.wall().timestamp(), MAX_WAIT_S, early.memory)
    assert due.alarms == (Alarm("caller_waiting_long", {
        "call_id": "c1", "queue": "main", "waited_s": 60.0, "limit_s": MAX_WAIT_S},
        std="STD-043"),)
    clock.advance(30)
    ringing = [replace(calls[0], phase=Phase.OFFERING)]
    later = check_long_waits(ringing, clock.wall().timestamp(), MAX_WAIT_S, due.memory)
    assert later.alarms == () and later.memory.long_waits == {"c1"}


def test_answered_or_connected_calls_are_not_waiting() -> None:
    clock = FakeClock()
    t0 = clock.wall().timestamp()
    clock.advance(MAX_WAIT_S * 2)
    calls = [call("talking", t0, Phase.CONNECTED, answered_at=t0 + 5),
             call("answered", t0, Phase.OFFERING, answered_at=t0 + 5),
             call("ended", t0, Phase.ENDED),
             call("ringing", t0, Phase.OFFERING, queue="vip")]
    verdict = check_long_waits(calls, clock.wall().timestamp(), MAX_WAIT_S, NOTHING)
    assert [(a.detail["call_id"], a.detail["queue"], a.detail["waited_s"])
            for a in verdict.alarms] == [("ringing", "vip", 120.0)]


def test_a_call_that_is_gone_is_forgotten() -> None:
    clock = FakeClock()
    calls = [call("c1", clock.wall().timestamp()), call("c2", clock.wall().timestamp())]
    clock.advance(MAX_WAIT_S)
    both = check_long_waits(calls, clock.wall().timestamp(), MAX_WAIT_S, NOTHING)
    assert kinds(both.alarms) == ["caller_waiting_long"] * 2
    clock.advance(1)
    one_left = check_long_waits(calls[1:], clock.wall().timestamp(), MAX_WAIT_S, both.memory)
    assert one_left.alarms == () and one_left.memory.long_waits == {"c2"}


# --- the AMI link ----------------------------------------------------------------------------


@pytest.mark.std("STD-147")
def test_a_link_that_never_came_up_alarms_after_the_grace_period_once() -> None:
    clock = FakeClock()
    started = clock.now()
    clock.advance(GRACE_S)
    within = check_ami_link(False, clock.now() - started, GRACE_S, "127.0.0.1", 5038, NOTHING)
    assert within == check_ami_link(False, 0.0, GRACE_S, "127.0.0.1", 5038, NOTHING)
    assert within.alarms == () and within.ami_link is None and within.memory == NOTHING
    clock.advance(0.5)
    late = check_ami_link(False, clock.now() - started, GRACE_S, "127.0.0.1", 5038,
                          within.memory)
    assert late.alarms == (Alarm("ami_link_down", {"host": "127.0.0.1", "port": 5038},
                                 std="STD-147"),)
    assert late.ami_link is False and late.memory.ami_down
    clock.advance(60)
    still = check_ami_link(False, clock.now() - started, GRACE_S, "127.0.0.1", 5038,
                           late.memory)
    assert still.alarms == () and still.ami_link is None and still.memory == late.memory


def test_a_link_seen_up_alarms_at_once_when_it_drops_and_once_per_outage() -> None:
    up = check_ami_link(True, 1.0, GRACE_S, "127.0.0.1", 5038, NOTHING)
    assert up.alarms == () and up.ami_link is None  # it was never announced down
    assert up.memory == replace(NOTHING, ami_seen_up=True)
    down = check_ami_link(False, 2.0, GRACE_S, "127.0.0.1", 5038, up.memory)
    assert kinds(down.alarms) == ["ami_link_down"] and down.ami_link is False
    assert check_ami_link(False, 3.0, GRACE_S, "127.0.0.1", 5038, down.memory).alarms == ()
    back = check_ami_link(True, 4.0, GRACE_S, "127.0.0.1", 5038, down.memory)
    assert back.alarms == () and back.ami_link is True and not back.memory.ami_down
    steady = check_ami_link(True, 5.0, GRACE_S, "127.0.0.1", 5038, back.memory)
    assert steady.ami_link is None
    second = check_ami_link(False, 6.0, GRACE_S, "127.0.0.1", 5038, steady.memory)
    assert kinds(second.alarms) == ["ami_link_down"]  # a new outage is a new alarm
