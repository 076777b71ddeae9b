"""``callflow simulate`` against real recorded calls (issue 17: "simulating the recorded
calls under the same Policy reproduces the recorded service level within 2 percentage
points").

A burst of SIPp callers runs through the real product on the session's Asterisk: four
SIPp agents that pick up after 1.5 s, callers arriving about every 1.7 s on whole
seconds (3.3 minutes for 120 calls) who stay on the line 3-10 whole seconds in all (a
caller who waited long talks little, or gives up: the abandons are real), two seconds of
after-call work ended by the Policy's ACW limit. Then the recorded day is read back from
the store and simulated under the same Policy, with the staffing the agent states
recorded, 20 times with different draws of what the record cannot say (the patience of
callers who were answered); the mean predicted service level must be within 2 points of
the recorded one. The numbers are chosen so that the queue really builds up: the
recorded service level lies well inside (0, 1), so two points mean something.

It used to fail now and then (differences of 1.6 to 3.8 points): a caller who hung up
within tens of ms of an agent's pick-up gave up in the record and was answered in the
replay. The grid (``GRID_S``) puts hang-ups about half a second away from pick-ups, and
the run prints the closest it came. With that, and a lost wake-up in the runtime fixed
(a younger call slept while an agent was free, found by this test), three runs in a row
gave -0.0, +0.0 and -0.0 points, all 20 simulated runs equal to the record. The grid is
not a guarantee: in the third run one hang-up came 68 ms from a pick-up (a slow start on
the loaded machine) and that one caller differed (answered late in the replay, so the
service level did not move). One caller is 0.83 points, so a failure needs three such
callers all falling the same way: not seen in the runs so far (docs/simulate.md).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from product import running_product

from callflow.agents.state import LogIn
from callflow.engine.kpi import Period
from callflow.engine.policy import parse_policy
from callflow.engine.sim_report import table
from callflow.simulate import Staffing, day_from_store, run

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conftest import PbxHandle
    from sippctl import SippControl

    from callflow.engine.kpi import CallFact

#: ms each agent's phone rings before they pick up: the same for all, so that which agent a
#: call goes to (longest ready, decided by who became ready a few ms earlier) does not
#: change when it is answered; with 0.8 to 2.0 s by agent, a 10 ms difference between
#: the record and the replay sent a call to another agent and the day drifted apart.
#: Half a second off the whole-second grid below: see ``GRID_S``.
AGENTS = {"1001": 1500, "1002": 1500, "1003": 1500, "1004": 1500}
#: 120, not 60: with 60 calls one caller who hung up 30 ms before the agent picked up in
#: the record, and 50 ms after in the replay, moved the service level by 3.8 points
CALLS = 120
MEAN_GAP_S = 1.7
STAY_S = (3, 10)  # a caller's whole seconds on the line after Asterisk answered them
#: Callers start on whole seconds and stay whole seconds, so every caller hangs up on a
#: whole second (plus call set-up, tens of ms). An agent becomes ready on a hang-up plus
#: the 2 s ACW limit, or a withdrawn offer (a hang-up), and picks up 1.5 s later: half a
#: second off the grid. So a waiting caller's hang-up and an agent's pick-up are about
#: 0.5 s apart, never the tens of ms that decided a caller's fate by chance before (the
#: record said "gave up", the replay "answered"); waits, likewise, end about half a
#: second away from the service-level threshold (whole seconds).
GRID_S = 1.0
TOLERANCE = 0.02  # 2 percentage points
#: the prediction is the mean of this many simulated runs (callflow.simulate.run): one
#: caller's fate moves a single run's service level by about a point (120 calls)
RUNS = 20


def test_simulating_the_recorded_calls_reproduces_the_recorded_service_level(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    policy = parse_policy({
        "agents": {"acw_limit_s": 2},
        "kpi": {"service_level_threshold_rings": 1},  # 5 s at cn cadence
        # no progress announcement during the burst: a prompt being played is not a
        # wait the staffing decides, and the callers stay shorter than the callback offer
        "waiting": {"announcement_interval_s": 600, "callback_offer_s": 600},
    })
    rng = random.Random(17)
    plan = []
    at = 0.0
    for _ in range(CALLS):
        at += GRID_S * round(rng.expovariate(1 / MEAN_GAP_S) / GRID_S)
        plan.append((at, rng.randint(*STAY_S) * 1000))
    with running_product(asterisk, asterisk_root, tmp_path, policy, list(AGENTS)) as product:
        phones = [sipp.softphone(ext, "uas_answer.xml", ring_ms=ms, wait=False)
                  for ext, ms in AGENTS.items()]
        sipp.wait_ready(*phones)
        for ext in AGENTS:
            product.call(lambda a=ext: product.runtime.agent_event(a, LogIn()))
        started = datetime.now(UTC)
        t0 = time.monotonic()
        callers = []
        for offset, stay_ms in plan:
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            callers.append(sipp.caller("100", "uac_call.xml", talk_ms=stay_ms, timeout_s=60))
        for caller in callers:
            assert caller.wait(60) == 0, caller.diagnostics()
        product.wait_for(lambda: not any(c.ended_at is None
                                         for c in product.runtime.calls.values()), 15,
                         "every call to end")
        time.sleep(3)  # the last ACW ends (the limit), so every agent state is closed
        product.flush()
        period = Period(started - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1))
        day = day_from_store(product.store, period, {})
        took = time.monotonic() - t0
    outcome = run(day, policy, policy, Staffing(), seed=0, runs=RUNS)
    margins = _closest_calls(day.calls, threshold_s=5.0)
    recorded, predicted = outcome.recorded, outcome.predicted
    levels = sorted(round(r.service_level * 100, 1) for r in outcome.runs
                    if r.service_level is not None)
    print(f"\n{len(day.calls)} calls in {took:.0f} s through Asterisk; {RUNS} runs simulated "
          f"in {outcome.seconds * 1000:.0f} ms ({outcome.agents} agents as recorded); service "
          f"level by run {levels}; closest hang-up to a pick-up {margins[0]:.3f} s, closest wait "
          f"to the threshold {margins[1]:.3f} s; difference "
          f"{(predicted.service_level or 0) - (recorded.service_level or 0):+.4f}\n"
          + table(predicted, recorded))
    assert recorded.offered == CALLS
    assert recorded.abandoned >= 3  # real abandons in the day
    assert recorded.service_level is not None and predicted.service_level is not None
    assert 0.2 <= recorded.service_level <= 0.9, recorded.service_level
    assert outcome.agents == len(AGENTS)
    assert abs(predicted.service_level - recorded.service_level) <= TOLERANCE, (
        predicted.service_level, recorded.service_level)


def _closest_calls(calls: Sequence[CallFact], threshold_s: float) -> tuple[float, float]:
    """How near the day came to a coin toss: the smallest gap between a caller who gave
    up and any agent's pick-up, and the smallest gap between an answered caller's wait
    and the service-level threshold (seconds; printed, so a run shows its margin)."""
    answers = [c.answered_at for c in calls if c.answered_at is not None]
    hangups = [c.ended_at for c in calls if c.answered_at is None and c.ended_at is not None]
    near = min((abs((h - a).total_seconds()) for h in hangups for a in answers),
               default=float("inf"))
    waits = [abs((c.answered_at - c.t_in).total_seconds() - threshold_s)
             for c in calls if c.answered_at is not None]
    return near, min(waits, default=float("inf"))
