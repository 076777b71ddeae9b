"""The inbound call machine: figures the standards are judged on (STD-006, STD-008, STD-009)."""

import pytest
from edges import as_edges

from callflow.engine import calls
from callflow.engine.calls import (
    CallEntered,
    CallReleased,
    OfferEnded,
    OfferResult,
    OfferStarted,
    Outcome,
    Phase,
)
from callflow.engine.effects import Effect, Persist, Publish

T = calls.CallRules(ring_cycle_s=5.0, apology_after_s=15.0, short_abandon_s=5.0)
T0 = 1_800_000_000.0


def start(event: calls.CallEntered, rules: calls.CallRules
          ) -> tuple[calls.InboundCall, list[Effect]]:
    call, effects = calls.start(event, rules)
    return call, as_edges(effects)


def step(call: calls.InboundCall, event: calls.CallEvent, rules: calls.CallRules
         ) -> tuple[calls.InboundCall, list[Effect]]:
    """The machine's step, its effects followed by the rows and frames made of them."""
    call, effects = calls.step(call, event, rules)
    return call, as_edges(effects)


def entered(at: float = T0) -> calls.InboundCall:
    event = CallEntered("c1", "PJSIP/caller-1", "13800000000", "100", "main", at)
    call, effects = start(event, T)
    assert [type(e) for e in effects] == [calls.CallChanged, Persist, Publish]
    return call


def answered_after(ring_s: float, wait_s: float = 0.0) -> calls.InboundCall:
    call = entered()
    call, _ = step(call, OfferStarted("c1", "1001", "PJSIP/agent1001-1", T0 + wait_s), T)
    call, _ = step(call, OfferEnded("c1", "1001", "ANSWER", T0 + wait_s + ring_s), T)
    return call


@pytest.mark.parametrize(
    ("ring_s", "ring"), [(0.01, 1), (4, 1), (5, 1), (5.001, 2), (9, 2), (14, 3), (12, 3)]
)
@pytest.mark.std("STD-006")
def test_answer_ring_is_ceil_of_ringing_over_the_cycle(ring_s: float, ring: int) -> None:
    """STD-006 test hint: answers after 4 s, 9 s, 14 s, 12 s are rings 1, 2, 3, 3."""
    call = answered_after(ring_s)
    assert call.phase is Phase.CONNECTED
    assert calls.answer_ring(call, T) == ring


@pytest.mark.std("STD-009")
def test_late_answer_needs_the_apology() -> None:
    """STD-009 test hint: 10 s queue + 8 s ringing = 18 s > 15 s is late; 12 s in all is not."""
    assert calls.is_late(answered_after(8, wait_s=10), T)
    assert not calls.is_late(answered_after(4, wait_s=8), T)


def test_no_answer_moves_back_to_routing_and_next_offer_counts_alone() -> None:
    """STD-008: only the answering agent's ringing counts for the answer ring."""
    call = entered()
    call, _ = step(call, OfferStarted("c1", "1001", "PJSIP/agent1001-1", T0 + 1), T)
    call, _ = step(call, OfferEnded("c1", "1001", "NOANSWER", T0 + 16), T)
    assert call.phase is Phase.ROUTING
    assert call.offers[0].result is OfferResult.NO_ANSWER
    call, _ = step(call, OfferStarted("c1", "1002", "PJSIP/agent1002-2", T0 + 17), T)
    call, _ = step(call, OfferEnded("c1", "1002", "ANSWER", T0 + 24), T)
    assert calls.answer_ring(call, T) == 2
    assert calls.total_wait(call) == pytest.approx(24)
    assert calls.is_late(call, T)
    record = calls.call_record(call, T)
    assert record["agent_id"] == "1002"
    assert [o["result"] for o in record["offers"]] == ["no_answer", "answered"]


def test_duplicate_reports_from_ami_and_agi_are_ignored() -> None:
    call = answered_after(7)
    again, effects = step(call, OfferEnded("c1", "1001", "ANSWER", T0 + 9), T)
    assert again == call and effects == []


@pytest.mark.parametrize(
    ("after", "outcome"),
    [(3, Outcome.SHORT_ABANDON), (5, Outcome.SHORT_ABANDON), (6, Outcome.ABANDONED)],
)
def test_abandon_before_answer_is_short_under_the_threshold(after: float, outcome: Outcome) -> None:
    call, _ = step(entered(), CallReleased("c1", T0 + after), T)
    assert call.outcome is outcome and call.phase is Phase.ENDED


def test_caller_gone_while_ringing_closes_the_offer() -> None:
    call = entered()
    call, _ = step(call, OfferStarted("c1", "1001", "PJSIP/agent1001-1", T0 + 1), T)
    call, _ = step(call, CallReleased("c1", T0 + 9), T)
    assert call.offers[0].result is OfferResult.CALLER_GONE
    assert call.outcome is Outcome.ABANDONED


def test_release_after_answer_is_answered_and_final() -> None:
    call = answered_after(3)
    call, _ = step(call, CallReleased("c1", T0 + 40, cause=16, by="caller"), T)
    record = calls.call_record(call, T)
    assert record["outcome"] == "answered" and record["released_by"] == "caller"
    assert record["ended_at"] is not None
    assert step(call, CallReleased("c1", T0 + 50), T) == (call, [])


@pytest.mark.std("STD-009")
def test_late_answer_switches_the_opening_to_the_apology_and_tells_only_that_agent() -> None:
    call = entered()
    call, _ = step(call, OfferStarted("c1", "1001", "PJSIP/agent1001-1", T0 + 10), T)
    call, effects = step(call, OfferEnded("c1", "1001", "ANSWER", T0 + 18), T)
    assert call.greeting == "apology"
    topics = [e.topic for e in effects if isinstance(e, Publish)]
    assert topics == ["board", "agent:1001"]


@pytest.mark.std("STD-069")
def test_a_network_drop_mid_talk_creates_a_callback_for_the_same_agent() -> None:
    """STD-069: caller-side loss with a network cause; a normal goodbye creates none."""
    rules = calls.CallRules(5.0, 15.0, 5.0, dropped_call_causes=frozenset({38}))
    dropped, effects = step(answered_after(3), CallReleased("c1", T0 + 60, cause=38), rules)
    tasks = [e.data for e in effects if isinstance(e, Persist) and e.kind == "task"]
    assert tasks == [{"kind": "dropped_call", "number": "13800000000", "due_at": T0 + 60,
                      "owner_agent_id": "1001", "note": "line dropped (cause 38)",
                      "created_from_uniqueid": "c1"}]
    assert dropped.outcome is Outcome.ANSWERED
    _, effects = step(answered_after(3), CallReleased("c1", T0 + 60, cause=16), rules)
    assert not [e for e in effects if isinstance(e, Persist) and e.kind == "task"]


@pytest.mark.std("STD-055")
def test_an_abandoned_call_with_a_number_becomes_a_missed_call_task() -> None:
    """STD-055; a short abandon does not."""
    _, effects = step(entered(), CallReleased("c1", T0 + 30), T)
    tasks = [e.data for e in effects if isinstance(e, Persist) and e.kind == "task"]
    assert [(t["kind"], t["owner_agent_id"]) for t in tasks] == [("callback", None)]
    call, effects = step(entered(), CallReleased("c1", T0 + 2), T)
    assert call.outcome is Outcome.SHORT_ABANDON
    assert not [e for e in effects if isinstance(e, Persist) and e.kind == "task"]
    assert calls.call_record(call, T)["total_wait_s"] == 2


def test_the_wait_starts_when_the_caller_leaves_the_named_agent_menu() -> None:
    """KPI definitions: t_in is routing, after the menu. 20 s keying a work number, then
    12 s to the answer: total wait 12 s, not late (STD-009), and the record says so."""
    event = CallEntered("c1", "PJSIP/caller-1", "13800000000", "100", "main", T0, menu=True)
    call, _ = start(event, T)
    assert call.in_menu and call.routed_at is None
    call, effects = step(call, calls.CallRouted("c1", T0 + 20), T)
    assert call.routed_at == T0 + 20 and not call.in_menu and effects
    call, effects = step(call, calls.CallRouted("c1", T0 + 25), T)  # a repeat changes nothing
    assert call.routed_at == T0 + 20 and effects == []
    call, _ = step(call, OfferStarted("c1", "1001", "PJSIP/agent1001-1", T0 + 24), T)
    call, _ = step(call, OfferEnded("c1", "1001", "ANSWER", T0 + 32), T)
    assert calls.total_wait(call) == 12 and not calls.is_late(call, T)
    record = calls.call_record(call, T)
    assert record["menu"] is True and record["routed_at"] is not None
    assert record["total_wait_s"] == 12 and record["late"] is False
    # without a menu the call is routed as it enters
    assert entered().routed_at == T0 and not entered().in_menu


def test_a_short_wait_after_a_long_menu_is_a_short_abandon() -> None:
    event = CallEntered("c1", "PJSIP/caller-1", "13800000000", "100", "main", T0, menu=True)
    call, _ = start(event, T)
    call, _ = step(call, calls.CallRouted("c1", T0 + 30), T)
    call, _ = step(call, CallReleased("c1", T0 + 33), T)
    assert call.outcome is Outcome.SHORT_ABANDON
