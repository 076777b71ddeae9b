"""What a simulated day is made of: callers and agents, from a recorded day or made up.

The simulation (``agents/simulation.py``) needs, per caller, things a call record says
only in part. The modelling choices, made here once:

* **Arrival time** is ``t_in`` (the call reached routing): greetings and menus before it
  do not depend on staffing.
* **Answer delay** belongs to the agent when the day says who they are: a recorded
  agent picks up after the median ring time of their own answered offers, whichever
  call rings (the live proof showed why: a caller who left while a slow agent's phone
  rang was answered in a replay that gave the call a fast agent's time). Per call, from
  the recorded offers: an offer that rang out (ring-no-answer, busy, declined) rings out
  again in the replay, whoever gets it; an answered offer rang ``ended - started``
  seconds, the time used with agents the day does not know (``--agents``). A caller
  who left while it rang, or a call never offered, gets the day's median.
* **Talk** is ``t_end - t_ans`` with the hold episodes at their recorded offsets; an
  unanswered call gets the talk of a recorded answered call drawn at random (seeded).
* **After-call work** is the agent's own time in ACW for the call; one that lasted the
  Policy's ACW limit was ended by the limit, so it stays "until the limit" (None) and a
  changed limit changes it.
* **Patience.** An abandon's patience is its recorded wait. An answered caller's is
  unknown but longer than the wait they had: drawn from the abandons' patience longer
  than that wait, or unlimited when no abandon waited longer (the recorded wait is a
  lower bound; drawing keeps the abandon curve of the day when staffing shrinks).
  A caller who chose a callback left at that moment, so that is their patience too.
* **Callbacks.** A caller who chose one takes it at the first offer; one who heard the
  offer and kept waiting does not; one who never heard it takes it with the day's
  acceptance rate (callbacks over callers who heard the offer; ``default_acceptance``
  when nobody heard one).
* **Staffing** is each agent's time on duty: logged in and in a call state, ready, ACW,
  or not-ready for a reason the simulation re-creates itself (ring-no-answer); breaks
  and chosen not-ready reasons are off duty.

Everything is pure: facts in, ``Arrival`` and ``AgentPlan`` out; randomness only from
the ``random.Random(seed)`` handed over.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from statistics import median

from callflow.agents.simulation import AgentPlan, Arrival, first_callback_offer_s
from callflow.engine.kpi import ANSWERED, CallFact, StateSpan, seconds
from callflow.engine.policy import REJECTED, RING_NO_ANSWER, Policy

DAY_S = 86_400.0
#: offer results that say the agent's phone did not pick up (agents/state.py, engine/calls.py)
NOT_PICKED_UP = frozenset({"no_answer", "busy", "declined", "unavailable", "forwarded",
                           "failed"})
#: not-ready reasons the simulation re-creates itself (so they count as time on duty)
SIMULATED_REASONS = frozenset({RING_NO_ANSWER, REJECTED})
ON_DUTY_STATES = frozenset({"ready", "ringing", "on_call", "on_hold", "acw"})


def acw_by_call(spans: Iterable[StateSpan]) -> dict[str, float]:
    """Seconds in ACW per call (the agent state, C-3), ended spans only."""
    out: dict[str, float] = defaultdict(float)
    for span in spans:
        if span.state == "acw" and span.call_uniqueid and span.ended_at is not None:
            out[span.call_uniqueid] += max(0.0, seconds(span.started_at, span.ended_at))
    return dict(out)


def arrivals_from_facts(calls: Sequence[CallFact], spans: Sequence[StateSpan],
                        policy: Policy, day_start: datetime, *, seed: int = 0,
                        default_acceptance: float = 0.3) -> list[Arrival]:
    """The recorded day's callers (see the module docstring for each choice).

    ``policy`` is the Policy the day was recorded under (its ACW limit and callback offer
    explain the records); the simulation may then run under another one."""
    rng = random.Random(seed)
    # a caller who left in the menu never reached routing: not offered (KPI definitions)
    ordered = sorted((c for c in calls if c.reached_routing),
                     key=lambda c: (c.t_in, c.uniqueid))
    acw = acw_by_call(spans)
    limit = policy.agents.acw_limit_s
    offer_at = first_callback_offer_s(policy)

    delays_seen: list[float] = []
    talks: list[float] = []
    acws: list[float | None] = []
    patience_seen: list[float] = []
    took = declined = 0
    for c in ordered:
        for o in c.offers:
            if o.result == ANSWERED and o.ended_at is not None:
                delays_seen.append(seconds(o.started_at, o.ended_at))
        if c.answered_at is not None and c.ended_at is not None:
            talks.append(seconds(c.answered_at, c.ended_at))
            acws.append(_acw_of(acw.get(c.uniqueid, 0.0), limit))
        elif c.answered_at is None and c.ended_at is not None and c.outcome != "pbx_failure":
            patience_seen.append(seconds(c.t_in, c.ended_at))
        if offer_at is not None:
            if c.outcome == "callback":
                took += 1
            elif seconds(c.t_in, c.answered_at or c.ended_at or c.t_in) > offer_at:
                declined += 1
    typical_delay = median(delays_seen) if delays_seen else 2.0
    acceptance = took / (took + declined) if took + declined else default_acceptance
    patience_seen.sort()

    out = []
    for c in ordered:
        at = seconds(day_start, c.t_in)
        delays: list[float | None] = []
        for o in c.offers:
            if o.result == ANSWERED and o.ended_at is not None:
                delays.append(seconds(o.started_at, o.ended_at))
            elif o.result in NOT_PICKED_UP:
                delays.append(None)
        if c.answered_at is not None and not any(d is not None for d in delays):
            start = c.ring_started_at or c.answered_at
            delays.append(max(0.0, seconds(start, c.answered_at)))
        if not delays or delays[-1] is None:
            delays.append(typical_delay)
        if c.answered_at is not None and c.ended_at is not None:
            talk = seconds(c.answered_at, c.ended_at)
            acw_s = _acw_of(acw.get(c.uniqueid, 0.0), limit)
            holds = tuple((seconds(c.answered_at, h.started_at),
                           seconds(h.started_at, h.ended_at))
                          for h in c.holds if h.ended_at is not None)
        else:
            talk = rng.choice(talks) if talks else 60.0
            acw_s = rng.choice(acws) if acws else None
            holds = ()
        wait = seconds(c.t_in, c.answered_at or c.ended_at or c.t_in)
        if c.answered_at is None and c.ended_at is not None and c.outcome != "pbx_failure":
            patience: float | None = wait
        else:
            longer = patience_seen[bisect_right(patience_seen, wait):]
            patience = rng.choice(longer) if longer else None
        if c.outcome == "callback":
            takes = True
        elif offer_at is not None and wait > offer_at:
            takes = False  # heard the offer and kept waiting
        else:
            takes = rng.random() < acceptance
        out.append(Arrival(call_id=c.uniqueid, at=at, queue=c.queue, patience_s=patience,
                           talk_s=talk, answer_delays=tuple(delays), acw_s=acw_s,
                           holds=holds, takes_callback=takes))
    return out


def _acw_of(recorded: float, limit: float) -> float | None:
    """The agent's own ACW, or None when the Policy's limit is what ended it."""
    if limit > 0 and recorded >= limit - 0.25:
        return None
    return recorded


def rona_recovery_s(spans: Iterable[StateSpan], default: float = 30.0) -> float:
    """How long agents took to come back from a ring-no-answer not-ready, on average."""
    lengths = [seconds(s.started_at, s.ended_at) for s in spans
               if s.state == "not_ready" and s.reason == RING_NO_ANSWER
               and s.ended_at is not None]
    return sum(lengths) / len(lengths) if lengths else default


def plans_from_spans(spans: Iterable[StateSpan], day_start: datetime, *,
                     queues_of: Mapping[str, tuple[str, ...]], default_queues: tuple[str, ...],
                     day_s: float = DAY_S, open_until: datetime | None = None,
                     gap_s: float = 1.0, calls: Iterable[CallFact] = ()) -> list[AgentPlan]:
    """Each recorded agent's time on duty (the module docstring says what counts), and
    from ``calls`` how fast each picks up (the median of their answered offers)."""
    own: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        for o in c.offers:
            if o.result == ANSWERED and o.ended_at is not None:
                own[o.agent_id].append(seconds(o.started_at, o.ended_at))
    by_agent: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for span in spans:
        on = span.state in ON_DUTY_STATES or (span.state == "not_ready"
                                              and (span.reason or "") in SIMULATED_REASONS)
        end_at = span.ended_at or open_until
        if not on or end_at is None:
            continue
        start = max(0.0, seconds(day_start, span.started_at))
        end = min(day_s, seconds(day_start, end_at))
        if end > start:
            by_agent[span.agent_id].append((start, end))
    plans = []
    for agent_id in sorted(by_agent):
        merged: list[tuple[float, float]] = []
        for start, end in sorted(by_agent[agent_id]):
            if merged and start <= merged[-1][1] + gap_s:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        delays = own.get(agent_id)
        plans.append(AgentPlan(agent_id, tuple(merged), queues_of.get(agent_id, default_queues),
                               median(delays) if delays else None))
    return plans


def plans_uniform(count: int, queues: tuple[str, ...], day_s: float = DAY_S,
                  prefix: str = "S") -> list[AgentPlan]:
    """``count`` agents serving every queue all day (``--agents N``)."""
    width = max(3, len(str(count)))
    return [AgentPlan(f"{prefix}{i + 1:0{width}d}", ((0.0, day_s),), queues)
            for i in range(count)]


def plans_by_hour(counts: Mapping[int, int], queues: tuple[str, ...],
                  prefix: str = "S") -> list[AgentPlan]:
    """Agents on duty per hour of the day (``--staffing FILE``): hour ``h`` has
    ``counts[h]`` agents, an hour not named keeps the previous hour's (0 before the first)."""
    per_hour = []
    current = 0
    for hour in range(24):
        current = counts.get(hour, current)
        per_hour.append(current)
    most = max(per_hour) if per_hour else 0
    width = max(3, len(str(most)))
    plans = []
    for i in range(most):
        spans: list[tuple[float, float]] = []
        for hour, n in enumerate(per_hour):
            if i < n:
                start, end = hour * 3600.0, (hour + 1) * 3600.0
                if spans and spans[-1][1] == start:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((start, end))
        plans.append(AgentPlan(f"{prefix}{i + 1:0{width}d}", tuple(spans), queues))
    return plans


#: A contact centre's intraday arrival curve: the share of the day's calls per hour
#: (quiet night, a morning peak around 10:00, a second one after lunch).
INTRADAY = (0.4, 0.3, 0.2, 0.2, 0.2, 0.4, 1.0, 2.8, 6.5, 9.0, 9.6, 9.0, 7.0, 6.8, 8.4,
            8.6, 7.8, 6.2, 4.8, 3.6, 2.8, 2.0, 1.4, 0.8)


def synthetic_day(calls: int, *, seed: int = 0, queues: Sequence[str] = ("main",),
                  talk_mean_s: float = 180.0, acw_mean_s: float = 25.0,
                  patience_mean_s: float = 150.0, ring_mean_s: float = 4.0,
                  rona_share: float = 0.01, hold_share: float = 0.15,
                  callback_share: float = 0.3) -> list[Arrival]:
    """A realistic made-up day (benchmarks and tests): Poisson arrivals following
    ``INTRADAY``, log-normal talk, exponential patience, a few ring-no-answers."""
    rng = random.Random(seed)
    total = sum(INTRADAY)
    out = []
    n = 0
    for hour, weight in enumerate(INTRADAY):
        expected = calls * weight / total
        at = hour * 3600.0
        while True:
            at += rng.expovariate(expected / 3600.0) if expected > 0 else 3600.0
            if at >= (hour + 1) * 3600.0:
                break
            n += 1
            talk = rng.lognormvariate(math.log(talk_mean_s) - 0.18, 0.6)
            delays: tuple[float | None, ...] = (max(0.3, rng.gauss(ring_mean_s, 1.5)),)
            if rng.random() < rona_share:
                delays = (None, *delays)
            holds: tuple[tuple[float, float], ...] = ()
            if rng.random() < hold_share:
                holds = ((talk * rng.uniform(0.2, 0.6), rng.uniform(10, 60)),)
            acw = rng.expovariate(1 / acw_mean_s)
            out.append(Arrival(
                call_id=f"sim-{n:06d}", at=at, queue=rng.choice(list(queues)),
                patience_s=rng.expovariate(1 / patience_mean_s), talk_s=talk,
                answer_delays=delays, acw_s=acw, holds=holds,
                takes_callback=rng.random() < callback_share))
    return out
