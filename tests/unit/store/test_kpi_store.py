"""The KPI loader over a real store (SQLite and PostgreSQL): what the call machine records
is what the KPIs count. Calls are driven through the real call machine and written by the
real record writers, as the runtime does."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callflow.engine import calls, kpi
from callflow.engine.policy import Policy
from callflow.runtime.core import call_rules
from callflow.store import records, repo
from callflow.store.db import Store
from callflow.store.kpi_facts import load_facts

POLICY = Policy.defaults()
RULES = kpi.KpiRules.from_policy(POLICY)
ZONE = ZoneInfo(POLICY.calendar.timezone)
MIDNIGHT = datetime(2024, 5, 7, 0, 0, tzinfo=ZONE)


def epoch(offset_s: float) -> float:
    return (MIDNIGHT + timedelta(seconds=offset_s)).timestamp()


def drive(store: Store, events: list[calls.CallEvent]) -> None:
    """Run a call through the machine, writing every record like the runtime does."""
    first = events[0]
    assert isinstance(first, calls.CallEntered)
    call, effects = calls.start(first, call_rules(POLICY))
    for event in events[1:]:
        call, more = calls.step(call, event, call_rules(POLICY))
        effects += more
    for effect in effects:
        if isinstance(effect, calls.CallChanged):
            records.write(store, "call", calls.call_record(effect.call, effect.rules))


def state(store: Store, agent: str, name: str, offset_s: float, call_id: str = "",
          reason: str | None = None) -> None:
    records.write(store, "agent_state", {"agent_id": agent, "state": name, "reason": reason,
                                         "call_uniqueid": call_id or None,
                                         "at": epoch(offset_s)})


@pytest.fixture
def day(store: Store) -> kpi.Period:
    for agent in ("1001", "1002"):
        store.run(repo.upsert_agent, agent, name=f"Agent {agent}")
    ring = POLICY.ring_cycle_s
    limit = ring * POLICY.answering.ring_limit_rings
    # before midnight: entered 23:59:50 the day before, answered after midnight
    drive(store, [calls.CallEntered("m", "PJSIP/c-1", "138", "100", "main", epoch(-10)),
                  calls.OfferStarted("m", "1001", "PJSIP/agent1001-1", epoch(-8)),
                  calls.OfferEnded("m", "1001", "ANSWER", epoch(2)),
                  calls.CallReleased("m", epoch(62))])
    # RONA at 1001, answered by 1002 after one ring; 100 s talk
    drive(store, [calls.CallEntered("r", "PJSIP/c-2", "139", "100", "main", epoch(3600)),
                  calls.OfferStarted("r", "1001", "PJSIP/agent1001-2", epoch(3601)),
                  calls.OfferEnded("r", "1001", "NOANSWER", epoch(3601 + limit)),
                  calls.OfferStarted("r", "1002", "PJSIP/agent1002-3", epoch(3601 + limit)),
                  calls.OfferEnded("r", "1002", "ANSWER", epoch(3603 + limit)),
                  calls.CallReleased("r", epoch(3703 + limit))])
    # a short abandon and a real one
    drive(store, [calls.CallEntered("s", "PJSIP/c-3", "137", "100", "main", epoch(7200)),
                  calls.CallReleased("s", epoch(7200 + POLICY.kpi.short_abandon_s - 1))])
    drive(store, [calls.CallEntered("a", "PJSIP/c-4", "136", "100", "main", epoch(7300)),
                  calls.CallReleased("a", epoch(7340))])
    answered_at = 3603 + limit
    state(store, "1002", "ready", 3000)
    state(store, "1002", "ringing", 3601 + limit, "r")
    state(store, "1002", "on_call", answered_at, "r")
    state(store, "1002", "acw", answered_at + 100, "r")
    state(store, "1002", "ready", answered_at + 130)
    return kpi.day_period(MIDNIGHT.date(), ZONE)


def test_loaded_facts_give_the_hand_worked_figures(store: Store, day: kpi.Period) -> None:
    facts, spans = load_facts(store, day)
    assert sorted(f.uniqueid for f in facts) == ["a", "r", "s"]  # "m" entered yesterday
    as_of = day.end
    q = kpi.queue_kpis(facts, lambda name: RULES, as_of, spans)["main"]
    assert (q.offered, q.answered, q.short_abandons, q.abandoned) == (3, 1, 1, 1)
    assert (q.ring_no_answer, q.average_answer_ring, q.talk_s, q.acw_s) == (1, 1, 100.0, 30.0)
    assert q.answer_rate == 0.5 and q.service_level == 0.0  # waited past 3 rings
    agents = kpi.agent_kpis(facts, spans, lambda name: RULES, day, as_of)
    assert agents["1001"].ring_no_answer == 1 and agents["1001"].handled == 0
    assert (agents["1002"].handled, agents["1002"].average_acw_s) == (1, 30.0)
    assert agents["1002"].state_s["acw"] == 30.0


def test_yesterday_holds_the_call_that_crossed_midnight(store: Store, day: kpi.Period) -> None:
    yesterday = kpi.day_period((MIDNIGHT - timedelta(days=1)).date(), ZONE)
    facts, _ = load_facts(store, yesterday)
    assert [f.uniqueid for f in facts] == ["m"]
    k = kpi.queue_kpis(facts, lambda name: RULES, day.end)["main"]
    assert (k.answered, k.wait_sum_s, k.talk_s) == (1, 12.0, 60.0)
    assert k.average_answer_ring == kpi.ring_count(10, RULES.ring_cycle_s)


def test_open_callbacks_per_queue(store: Store, day: kpi.Period) -> None:
    with store.session() as s:
        repo.add_task(s, "callback", "136", MIDNIGHT, created_from_uniqueid="a")
        repo.add_task(s, "callback", "555", MIDNIGHT)
        repo.add_task(s, "follow_up", "556", MIDNIGHT)
    assert store.read(repo.open_callbacks_by_queue) == {"main": 1, "": 1}


def test_the_menu_and_the_wrapup_reach_the_kpis_through_the_store(store: Store) -> None:
    """routed_at/menu (t_in after the named-agent menu) and the wrap-up form's disposition
    are stored and read back, so the reports' wait and resolution rate are the real ones."""
    store.run(repo.upsert_agent, "1001", name="Agent 1001")
    drive(store, [calls.CallEntered("n", "PJSIP/c-1", "138", "100", "main", epoch(100),
                                    menu=True),
                  calls.CallRouted("n", epoch(120)),
                  calls.OfferStarted("n", "1001", "PJSIP/agent1001-1", epoch(121)),
                  calls.OfferEnded("n", "1001", "ANSWER", epoch(125)),
                  calls.CallReleased("n", epoch(200))])
    drive(store, [calls.CallEntered("q", "PJSIP/c-2", "139", "100", "main", epoch(300),
                                    menu=True),
                  calls.CallReleased("q", epoch(310))])  # left in the menu
    records.write(store, "wrapup", {"call_uniqueid": "n", "agent_id": "1001",
                                    "disposition": "resolved", "at": epoch(210)})
    period = kpi.day_period(MIDNIGHT.date(), ZONE)
    facts, _ = load_facts(store, period)
    by_id = {f.uniqueid: f for f in facts}
    assert kpi.total_wait(by_id["n"]) == 5.0 and by_id["n"].disposition == "resolved"
    assert kpi.classify(by_id["q"], RULES) == kpi.IVR_HANDLED
    k = kpi.queue_kpis(facts, lambda q: RULES, as_of=MIDNIGHT + timedelta(hours=1))["main"]
    assert (k.offered, k.ivr_handled, k.answered, k.resolution_rate) == (1, 1, 1, 1.0)
