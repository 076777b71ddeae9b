"""The board's live day (incremental KPIs) against the batch definition, alarm keys, masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from callflow.api.auth import Principal
from callflow.api.privacy import mask_number, masked, redaction_for
from callflow.board.alarms import AlarmBook, alarm_key
from callflow.board.live import LiveDay, fact_from_record
from callflow.engine import calls, kpi
from callflow.engine.effects import Alarm
from callflow.engine.policy import Policy
from callflow.runtime.core import call_rules
from callflow.store import records

POLICY = Policy.defaults()
ZONE = ZoneInfo(POLICY.calendar.timezone)
RULES = call_rules(POLICY)
RING = POLICY.ring_cycle_s
DAY = kpi.day_period(datetime(2024, 5, 6, tzinfo=ZONE).date(), ZONE)
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=ZONE).timestamp()


def run_call(events: list[calls.CallEvent]) -> list[dict[str, Any]]:
    """Every record the call machine publishes for the call, in order."""
    first = events[0]
    assert isinstance(first, calls.CallEntered)
    call, effects = calls.start(first, RULES)
    out = [calls.call_record(call, RULES)]
    for event in events[1:]:
        call, effects = calls.step(call, event, RULES)
        out += [calls.call_record(e.call, e.rules) for e in effects
                if isinstance(e, calls.CallChanged)]
    return out


def scripted() -> list[list[dict[str, Any]]]:
    limit = POLICY.answering.ring_limit_rings * RING
    return [
        run_call([calls.CallEntered("a", "c", "1380", "100", "main", T0),
                  calls.OfferStarted("a", "1001", "PJSIP/agent1001-1", T0 + 1),
                  calls.OfferEnded("a", "1001", "ANSWER", T0 + 4),
                  calls.CallReleased("a", T0 + 64)]),
        run_call([calls.CallEntered("b", "c", "1381", "100", "main", T0 + 100),
                  calls.OfferStarted("b", "1001", "PJSIP/agent1001-2", T0 + 101),
                  calls.OfferEnded("b", "1001", "NOANSWER", T0 + 101 + limit),
                  calls.OfferStarted("b", "1002", "PJSIP/agent1002-3", T0 + 101 + limit),
                  calls.OfferEnded("b", "1002", "ANSWER", T0 + 104 + limit),
                  calls.CallReleased("b", T0 + 200, by="agent")]),
        run_call([calls.CallEntered("c", "c", "1382", "100", "sales", T0 + 110),
                  calls.CallReleased("c", T0 + 112)]),
        run_call([calls.CallEntered("d", "c", "1383", "100", "main", T0 + 120),
                  calls.CallReleased("d", T0 + 180)]),
        run_call([calls.CallEntered("w", "c", "1384", "100", "main", T0 + 150)]),
    ]


def agent_state(live: LiveDay, agent: str, state: str, at: float, call_id: str = "",
                reason: str = "") -> kpi.StateSpan | None:
    """The agent in ``state`` since epoch ``at``, as the board hears it from the core."""
    return live.on_agent(agent, state, datetime.fromtimestamp(at, UTC), reason or None,
                         call_id or None)


def test_live_figures_equal_the_batch_definition() -> None:
    rules_for = kpi.rules_by_queue(POLICY)
    live = LiveDay(rules_for, DAY, ["main"])
    as_of = datetime.fromtimestamp(T0 + 300, UTC)
    streams = scripted()
    # interleave the calls' records as they would arrive
    for step in range(max(len(s) for s in streams)):
        for stream in streams:
            if step < len(stream):
                live.on_call(stream[step], as_of)
    agent_state(live, "1001", "acw", T0 + 64, "a")
    agent_state(live, "1001", "ready", T0 + 94)
    agent_state(live, "1002", "acw", T0 + 200, "b")
    agent_state(live, "1002", "ready", T0 + 215)
    # call b was released by its agent: a violation once the release judge says so
    assert live.queue_kpis("main", as_of).agent_first_hangups == 0
    live.on_release_violation("b", as_of)
    facts = [fact_from_record(s[-1]) for s in streams]
    assert facts[1] is not None and facts[1].release_compliant is True
    spans = [s for agent in live.spans.values() for s in agent]
    batch = kpi.queue_kpis(list(live.calls.values()), rules_for, as_of, spans)
    for queue in ("main", "sales"):
        assert live.queue_kpis(queue, as_of) == batch[queue], queue
    main = live.queue_kpis("main", as_of)
    assert (main.offered, main.answered, main.abandoned, main.waiting) == (4, 2, 1, 1)
    assert main.acw_s == 45.0 and main.ring_no_answer == 1 and main.agent_first_hangups == 1
    by_agent = kpi.agent_kpis(list(live.calls.values()), spans, rules_for, DAY, as_of)
    for agent_id in ("1001", "1002"):
        assert live.agent_kpis(agent_id, as_of) == by_agent[agent_id], agent_id
    recount = kpi.queue_kpis([f for f in facts if f is not None], rules_for, as_of, spans)
    assert recount["main"].agent_first_hangups == 0 and recount["main"].answered == 2
    view = live.queue_view("main", as_of)
    assert view["waiting"] == 1 and view["longest_wait_s"] == 150.0
    assert view["series"][-1]["waiting"] >= 1
    agent = live.agent_view("1002", as_of)
    assert (agent["calls"], agent["avg_acw_s"], agent["rona"]) == (1, 15.0, 0)
    assert live.agent_view("1001", as_of)["rona"] == 1


def test_other_days_and_repeats_are_ignored() -> None:
    live = LiveDay(kpi.rules_by_queue(POLICY), DAY, ["main"])
    as_of = datetime.fromtimestamp(T0 + 300, UTC)
    yesterday = run_call([calls.CallEntered("y", "c", "1", "100", "main", T0 - 86400),
                          calls.CallReleased("y", T0 - 86000)])
    assert live.on_call(yesterday[-1], as_of) is None
    record = scripted()[0][-1]
    live.on_call(record, as_of)
    live.on_call(record, as_of)  # the same finished record twice counts once
    assert live.queue_kpis("main", as_of).answered == 1
    agent_state(live, "1001", "ready", T0)
    assert agent_state(live, "1001", "ready", T0) is None  # e.g. the softphone flag changed
    assert len(live.spans["1001"]) == 1


def test_alarm_keys_match_between_the_publish_and_the_store_row() -> None:
    book = AlarmBook(limit=3)
    raised = T0 + 0.123456789
    entry = book.from_alarm(Alarm("ring_no_answer", {"agent_id": "1001"}, std="STD-008",
                                  raised_at=raised))
    stored = records._time(raised)  # what the store writer keeps
    assert stored is not None
    assert entry.key == alarm_key("ring_no_answer", stored)
    for i in range(5):
        book.from_alarm(Alarm(f"k{i}", raised_at=T0 + i))
    assert len(book) == 3 and book.get(entry.key) is None  # oldest dropped from memory


@pytest.mark.std("STD-078")
def test_numbers_are_masked_for_roles_that_may_not_see_them() -> None:
    assert mask_number("13800001234") == "138****1234"
    assert mask_number("1234") == "**34"
    message = {"seq": 1, "topic": "board", "payload": {"type": "call", "call": {
        "caller_number": "13800001234", "offers": [{"agent_id": "1001"}]},
        "task": {"number": "13900000000"}}}
    view = redaction_for(Principal("qa1", "qa", None))
    assert view is masked
    shown = view(message)
    assert shown["payload"]["call"]["caller_number"] == "138****1234"
    assert shown["payload"]["task"]["number"] == "139****0000"
    assert message["payload"]["call"]["caller_number"] == "13800001234"  # shared: untouched
    assert redaction_for(Principal("sup", "supervisor", None)) is None
    assert redaction_for(Principal("a", "agent", frozenset({"agent:1001"}))) is None


def test_day_boundary_intervals() -> None:
    live = LiveDay(kpi.rules_by_queue(POLICY), DAY, ["main"])
    end = DAY.end - timedelta(seconds=1)
    view = live.queue_view("main", end)
    assert len(view["series"]) == 24 * 60 // POLICY.kpi.report_interval_min


def test_a_hold_ended_after_the_call_was_counted_is_taken_into_account() -> None:
    """engine/hold.py says a hold ended; talk excludes it, its length is judged."""
    rules_for = kpi.rules_by_queue(POLICY)
    live = LiveDay(rules_for, DAY, ["main"])
    as_of = datetime.fromtimestamp(T0 + 300, UTC)
    record = scripted()[0][-1]  # answered at T0+4, ended at T0+64
    live.on_call(record, as_of)
    before = live.queue_kpis("main", as_of)
    over = POLICY.hold.limit_s + 5
    held = (datetime.fromtimestamp(T0 + 10, UTC), datetime.fromtimestamp(T0 + 10 + over, UTC))
    live.on_hold("a", 1, *held, "1001", as_of)
    live.on_hold("a", 1, *held, "1001", as_of)  # a repeat changes nothing
    after = live.queue_kpis("main", as_of)
    assert after.talk_s == before.talk_s - over
    assert (after.hold_s, after.hold_episodes, after.hold_breaches) == (over, 1, 1)
    fact = live.calls["a"]
    assert kpi.queue_kpis([fact], rules_for, as_of)["main"] == after
    assert sum(p["answered"] for p in live.series("main", as_of)) == 1
