"""The day simulation (agents/simulation.py): deterministic, and moved the right way by
staffing and by the Policy's ring limit, callback offer and ACW limit. Fake clock only:
the simulation's own event queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callflow.agents.sim_inputs import (
    arrivals_from_facts,
    plans_by_hour,
    plans_from_spans,
    plans_uniform,
    synthetic_day,
)
from callflow.agents.simulation import AgentPlan, Arrival, SimOptions, SimResult, simulate
from callflow.engine.policy import Policy, parse_policy
from callflow.engine.sim_report import figures, table

DAY = datetime(2026, 12, 7, tzinfo=UTC)
OPTIONS = SimOptions(day_start=DAY)


def run(arrivals: list[Arrival], agents: int | list[AgentPlan], policy: Policy) -> SimResult:
    plans = plans_uniform(agents, ("main",)) if isinstance(agents, int) else agents
    return simulate(arrivals, plans, policy, OPTIONS)


def day_figures(result: SimResult, policy: Policy):  # type: ignore[no-untyped-def]
    return figures(result.calls, result.spans, policy, DAY + timedelta(days=2))


def busy_hour(calls: int = 400, seed: int = 3) -> list[Arrival]:
    """A peak: ``calls`` in the 10:00 hour, from the synthetic day's generator."""
    return [a for a in synthetic_day(calls * 11, seed=seed) if 36_000 <= a.at < 39_600]


def test_the_same_seed_gives_the_same_day_event_for_event() -> None:
    policy = Policy.defaults()
    first = run(synthetic_day(600, seed=7), 6, policy)
    second = run(synthetic_day(600, seed=7), 6, policy)
    assert first.calls == second.calls and first.spans == second.spans
    assert first.events == second.events
    other = run(synthetic_day(600, seed=8), 6, policy)
    assert other.calls != first.calls


def test_the_same_seed_draws_the_same_callers_from_a_recorded_day() -> None:
    policy = Policy.defaults()
    recorded = run(busy_hour(), 10, policy)
    one = arrivals_from_facts(recorded.calls, recorded.spans, policy, DAY, seed=1)
    two = arrivals_from_facts(recorded.calls, recorded.spans, policy, DAY, seed=1)
    assert one == two


def test_more_agents_answer_more_calls_within_the_service_level_and_sooner() -> None:
    policy = Policy.defaults()
    arrivals = busy_hour()
    by_staff = {n: day_figures(run(arrivals, n, policy), policy) for n in (16, 20, 26)}
    levels = [by_staff[n].service_level for n in (16, 20, 26)]
    waits = [by_staff[n].asa_s for n in (16, 20, 26)]
    abandons = [by_staff[n].abandoned for n in (16, 20, 26)]
    print({n: (f.service_level, f.asa_s, f.abandoned) for n, f in by_staff.items()})
    assert levels[0] < levels[1] < levels[2]  # type: ignore[operator]
    assert waits[0] > waits[1] > waits[2]  # type: ignore[operator]
    assert abandons[0] > abandons[2]


def test_staffing_per_hour_puts_agents_on_duty_in_their_hours_only() -> None:
    policy = Policy.defaults()
    plans = plans_by_hour({10: 3, 11: 0}, ("main",))
    assert [p.on_duty for p in plans] == [((36_000.0, 39_600.0),)] * 3
    calls = [Arrival(f"c{i}", 30_000.0 + i * 5000, talk_s=30, patience_s=1200)
             for i in range(4)]  # 08:20, 09:43, 11:06, 12:30
    result = run(calls, plans, policy)
    outcome = {c.uniqueid: c.outcome for c in result.calls}
    # the 08:20 caller gives up before 10:00; 09:43 is answered at 10:00; the rest never
    assert outcome == {"c0": "abandoned", "c1": "answered", "c2": "abandoned",
                       "c3": "abandoned"}
    [answered] = [c for c in result.calls if c.uniqueid == "c1"]
    assert answered.answered_at == DAY + timedelta(seconds=36_000 + 2.0)


@pytest.mark.std("STD-008")
def test_a_shorter_ring_limit_makes_more_ring_no_answers() -> None:
    arrivals = [Arrival(f"c{i}", i * 60.0, talk_s=40, answer_delays=(3.0 + (i % 10),))
                for i in range(200)]  # agents pick up after 3..12 s
    three = parse_policy({"answering": {"ring_limit_rings": 3}})  # 15 s at cn cadence
    one = parse_policy({"answering": {"ring_limit_rings": 1}})  # 5 s
    long_limit = day_figures(run(arrivals, 4, three), three)
    short_limit = day_figures(run(arrivals, 4, one), one)
    assert long_limit.ring_no_answer == 0
    assert short_limit.ring_no_answer > 100  # every offer past 5 s rings out
    # an agent who let it ring out became not-ready (STD-008), as the live machine does
    result = run(arrivals, 4, one)
    assert any(s.state == "not_ready" and s.reason == "ring_no_answer" for s in result.spans)


@pytest.mark.std("STD-047")
def test_the_callback_offer_of_the_policy_decides_who_is_called_back() -> None:
    arrivals = busy_hour()
    late = parse_policy({"waiting": {"callback_offer_s": 120}})
    early = parse_policy({"waiting": {"callback_offer_s": 20}})
    off = parse_policy({"waiting": {"callbacks_enabled": False}})
    counts = {name: day_figures(run(arrivals, 17, p), p).callbacks
              for name, p in (("late", late), ("early", early), ("off", off))}
    print(counts)
    assert counts["off"] == 0
    assert counts["early"] > counts["late"] > 0


@pytest.mark.std("STD-100")
def test_the_acw_limit_ends_after_call_work_that_runs_on() -> None:
    arrivals = [Arrival("c1", 0.0, talk_s=10, answer_delays=(1.0,), acw_s=None),
                Arrival("c2", 1.0, talk_s=10, answer_delays=(1.0,), patience_s=None)]
    policy = parse_policy({"agents": {"acw_limit_s": 7}})
    result = run(arrivals, 1, policy)
    [acw] = [s for s in result.spans if s.state == "acw" and s.call_uniqueid == "c1"]
    assert (acw.ended_at - acw.started_at).total_seconds() == pytest.approx(7.0)
    second = result.calls[1]
    # c1: ring 1 s, talk 10 s, ACW 7 s -> c2 offered at 18 s, answered at 19 s
    assert second.answered_at == DAY + timedelta(seconds=19.0)


def test_simulating_a_recorded_day_reproduces_its_service_level() -> None:
    """The round trip the live test makes on Asterisk, in miniature: a day "recorded"
    by one simulation, turned back into callers and staffing, simulated again."""
    policy = Policy.defaults()
    recorded = run(busy_hour(), 22, policy)
    as_recorded = day_figures(recorded, policy)
    arrivals = arrivals_from_facts(recorded.calls, recorded.spans, policy, DAY, seed=5)
    plans = plans_from_spans(recorded.spans, DAY, queues_of={}, default_queues=("main",))
    assert len(plans) == 22
    replayed = day_figures(run(arrivals, plans, policy), policy)
    print(table(replayed, as_recorded))
    assert as_recorded.service_level is not None and replayed.service_level is not None
    assert 0.3 < as_recorded.service_level < 0.95  # a day where 2 points mean something
    assert abs(replayed.service_level - as_recorded.service_level) <= 0.02
    assert replayed.answered == pytest.approx(as_recorded.answered, abs=5)


def test_a_caller_who_hangs_up_while_it_rings_frees_the_agent() -> None:
    arrivals = [Arrival("c1", 0.0, patience_s=3.0, answer_delays=(5.0,)),
                Arrival("c2", 4.0, talk_s=10, answer_delays=(1.0,))]
    result = run(arrivals, 1, Policy.defaults())
    first, second = result.calls
    assert first.outcome == "abandoned" and [o.result for o in first.offers] == ["caller_gone"]
    assert second.answered_at == DAY + timedelta(seconds=5.0)
