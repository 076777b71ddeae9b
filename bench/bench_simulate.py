"""``callflow simulate``'s speed: simulated call-days per second (issue 17: "a day of a
200-agent centre in under a minute on this machine"; issue 20: in ``make bench``).

A realistic made-up day (``agents/sim_inputs.py`` ``synthetic_day``: Poisson arrivals on
an intraday curve with a morning and an afternoon peak, log-normal talk of about 3
minutes, holds, ACW, impatient callers, a few ring-no-answers) is staffed per hour in
proportion to the curve, 200 agents at the peak, and replayed through the pure core
(agent state machine, routing, ring limit, ACW limit, callback offer) under the default
Policy; then the KPI module computes the day's figures. Printed: the wall and CPU time
of the simulation and of the figures, calls and events per second, simulated call-days
per second, and the day's service level (so a fast but wrong run shows).

The yardstick is the goal itself (a day in 60 s): ratio = (call-days per second) x 60,
pass when >= 1. The machine is shared, so CPU time is printed beside wall time.

    .venv/bin/python bench/bench_simulate.py --calls 25000 --agents 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callflow.agents.sim_inputs import INTRADAY, plans_by_hour, synthetic_day
from callflow.agents.simulation import SimOptions, simulate
from callflow.engine.policy import Policy
from callflow.engine.sim_report import figures

GOAL_S = 60.0


def staffing(peak_agents: int, floor: int = 8) -> dict[int, int]:
    """Agents per hour, in proportion to the arrival curve, ``peak_agents`` at the peak."""
    top = max(INTRADAY)
    return {h: max(floor, math.ceil(peak_agents * w / top)) for h, w in enumerate(INTRADAY)}


def one_day(calls: int, agents: int, seed: int) -> dict[str, Any]:
    policy = Policy.defaults()
    day = datetime(2026, 12, 7, tzinfo=UTC)
    arrivals = synthetic_day(calls, seed=seed)
    plans = plans_by_hour(staffing(agents), ("main",))
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(arrivals, plans, policy, SimOptions(day_start=day))
    sim_wall, sim_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    fig = figures(result.calls, result.spans, policy, day + timedelta(days=2))
    fig_wall, fig_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"calls": len(arrivals), "agents": len(plans), "events": result.events,
            "sim_wall_s": sim_wall, "sim_cpu_s": sim_cpu, "figures_wall_s": fig_wall,
            "figures_cpu_s": fig_cpu, "service_level": fig.service_level,
            "abandoned": fig.abandoned, "occupancy": fig.occupancy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=25_000, help="calls in the day [25000]")
    parser.add_argument("--agents", type=int, default=200, help="agents at the peak [200]")
    parser.add_argument("--runs", type=int, default=3, help="days simulated (median) [3]")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="write the result rows here")
    args = parser.parse_args()

    runs = [one_day(args.calls, args.agents, args.seed + i) for i in range(args.runs)]
    for r in runs:
        print(f"{r['calls']} calls, {r['agents']} agents, {r['events']} events: simulated in "
              f"{r['sim_wall_s']:.2f} s wall ({r['sim_cpu_s']:.2f} s CPU), figures "
              f"{r['figures_wall_s']:.2f} s wall ({r['figures_cpu_s']:.2f} s CPU); "
              f"service level {r['service_level'] * 100:.1f} %, {r['abandoned']} abandons, "
              f"occupancy {r['occupancy'] * 100:.1f} %")
    day_s = statistics.median(r["sim_wall_s"] + r["figures_wall_s"] for r in runs)
    cpu_s = statistics.median(r["sim_cpu_s"] + r["figures_cpu_s"] for r in runs)
    calls = statistics.median(r["calls"] for r in runs)
    days_per_s = 1 / day_s
    ratio = days_per_s * GOAL_S
    print(f"median: a day in {day_s:.2f} s wall ({cpu_s:.2f} s CPU): "
          f"{days_per_s:.3f} call-days/s, {calls / day_s:.0f} calls/s; goal a day in "
          f"{GOAL_S:.0f} s: {ratio:.1f}x")
    rows = [
        {"figure": f"simulate: call-days per second ({args.agents} agents, {calls:.0f} calls)",
         "ours": round(days_per_s, 4), "peer": f"goal: one day in {GOAL_S:.0f} s",
         "peer_value": round(1 / GOAL_S, 4), "ratio": round(ratio, 2), "unit": "days/s",
         "goal": ">= 1x (a day in under a minute)", "pass": ratio >= 1},
        {"figure": "simulate: simulated calls per second (CPU time)",
         "ours": round(calls / cpu_s, 1), "peer": f"goal: {calls:.0f} calls in {GOAL_S:.0f} s",
         "peer_value": round(calls / GOAL_S, 1), "ratio": round(GOAL_S / cpu_s, 2),
         "unit": "calls/s", "goal": ">= 1x", "pass": cpu_s <= GOAL_S},
    ]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
