"""Asterisk's CEL rows of a call made into its facts and events (engine/cel.py), on rows
captured from the live Asterisk 22 (tests/fixtures/cel/README.md), held to the AMI
stamps Asterisk sent for the same calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from callflow.engine import calls
from callflow.engine.cel import CallFacts, CelEvent, by_linkedid, call_events, call_facts, entered
from callflow.engine.channels import endpoint_of
from callflow.engine.policy import Policy
from callflow.runtime.core import call_rules

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cel"
FALLBACK = "callflow-fallback"
RULES = call_rules(Policy.defaults())
MS = 0.01  # CEL rows vs AMI stamps of the same instant (measured: 0-4 ms)


def load(name: str) -> tuple[list[CelEvent], list[dict[str, Any]]]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    rows = [CelEvent(**row) for row in data["cel"]]
    return rows, data["ami"]


def facts_of(name: str) -> tuple[CallFacts, list[dict[str, Any]]]:
    rows, ami = load(name)
    groups = by_linkedid(rows)
    assert len(groups) == 1
    facts = call_facts(next(iter(groups.values())), fallback_queue=FALLBACK)
    assert facts is not None
    return facts, ami


def stamp(ami: list[dict[str, Any]], event: str, channel_prefix: str, **match: str) -> float:
    found = [float(e["Timestamp"]) for e in ami if e["Event"] == event
             and e["Channel"].startswith(channel_prefix)
             and all(e.get(k) == v for k, v in match.items())]
    assert found, (event, channel_prefix)
    return found[0]


def agent_of(channel: str) -> str | None:
    endpoint = endpoint_of(channel)
    return endpoint.removeprefix("agent") if endpoint.startswith("agent") else None


def replay(facts: CallFacts) -> calls.InboundCall:
    """A call the engine never saw, entered and closed from its rows alone."""
    call, _ = calls.start(entered(facts, "main"), RULES)
    for event in call_events(call, facts, agent_of, closing=True):
        call, _ = calls.step(call, event, RULES)
    return call


@pytest.mark.parametrize(("name", "agent", "by"), [
    ("engine_killed_caller_hangs_up", "1001", "caller"),
    ("engine_killed_agent_hangs_up", "1004", "agent"),
    ("engine_answered_caller_hangs_up", "1001", "caller"),
    ("fallback_answered", "1002", "caller"),
])
def test_answered_calls_have_asterisks_answer_end_and_releaser(name: str, agent: str,
                                                                by: str) -> None:
    facts, ami = facts_of(name)
    assert facts.context == "inbound" and facts.did == "100" and facts.number == "13800000000"
    assert facts.entered_at == pytest.approx(stamp(ami, "Newchannel", "PJSIP/caller"), abs=MS)
    answered = facts.answered
    assert answered is not None and answered.endpoint == f"agent{agent}"
    up = stamp(ami, "Newstate", f"PJSIP/agent{agent}", ChannelStateDesc="Up")
    assert answered.answered_at == pytest.approx(up, abs=MS)
    first_request = min(float(e["Timestamp"]) for e in ami if e["Event"] == "HangupRequest")
    assert facts.ended_at == pytest.approx(first_request, abs=MS)
    assert facts.released_by == by
    call = replay(facts)
    assert call.phase is calls.Phase.ENDED and call.outcome is calls.Outcome.ANSWERED
    assert call.agent_id == agent and call.released_by == by
    assert call.answered_at == answered.answered_at and call.ended_at == facts.ended_at
    record = calls.call_record(call, RULES)
    assert record["ending"] == f"{by}_released"
    assert [(o["agent_id"], o["result"]) for o in record["offers"]] == [(agent, "answered")]


def test_the_fallback_queue_and_its_recording_are_recognised() -> None:
    facts, _ = facts_of("fallback_answered")
    assert facts.fallback
    assert facts.recording == f"{FALLBACK}-{facts.linkedid}.wav"
    assert facts.recording_started_at is not None
    ours, _ = facts_of("engine_killed_caller_hangs_up")
    assert not ours.fallback and ours.recording == ""


@pytest.mark.parametrize("name", ["engine_abandoned", "fallback_abandoned"])
def test_a_caller_who_left_before_an_answer_abandoned_it(name: str) -> None:
    facts, ami = facts_of(name)
    assert facts.answered is None and facts.released_by == "caller"
    request = stamp(ami, "HangupRequest", "PJSIP/caller")
    assert facts.ended_at == pytest.approx(request, abs=MS)
    call = replay(facts)
    # 3-4 s in: within kpi.short_abandon_s, a short abandon (KPI definitions)
    assert call.outcome is calls.Outcome.SHORT_ABANDON and call.answered_at is None
    results = [o.result for o in call.offers]
    # the fallback queue's ringing leg went with the caller: not a ring-no-answer (STD-008)
    assert results == ([calls.OfferResult.CALLER_GONE] if name.startswith("fallback") else [])


def test_a_record_that_holds_the_answer_only_gets_its_release() -> None:
    """The engine saw the answer over AMI before it died: only the end is new."""
    facts, _ = facts_of("engine_killed_caller_hangs_up")
    leg = facts.answered
    assert leg is not None and leg.answered_at is not None
    call, _ = calls.start(entered(facts, "main"), RULES)
    for event in (calls.OfferStarted(call.call_id, "1001", leg.channel, leg.started_at),
                  calls.OfferEnded(call.call_id, "1001", "ANSWER", leg.answered_at)):
        call, _ = calls.step(call, event, RULES)
    events = call_events(call, facts, agent_of, closing=True)
    assert [type(e) for e in events] == [calls.CallReleased]
    assert call_events(call, facts, agent_of, closing=False) == []


def test_a_flow_timed_answer_takes_asterisks_times() -> None:
    """With the AMI link down the flow reported the answer at the hang-up (its only
    word); Asterisk's rows put the answer back where it was."""
    facts, _ = facts_of("engine_killed_caller_hangs_up")
    leg = facts.answered
    assert leg is not None and leg.answered_at is not None and facts.ended_at is not None
    call, _ = calls.start(entered(facts, "main"), RULES)
    for event in (calls.OfferStarted(call.call_id, "1001", "", leg.started_at + 0.2,
                                     from_pbx=False),
                  calls.OfferEnded(call.call_id, "1001", "ANSWER", facts.ended_at)):
        call, _ = calls.step(call, event, RULES)
    assert call.answered_at == facts.ended_at
    events = call_events(call, facts, agent_of, closing=True)
    assert [type(e) for e in events] == [calls.AnswerConfirmed, calls.CallReleased]
    for event in events:
        call, _ = calls.step(call, event, RULES)
    assert call.answered_at == leg.answered_at
    offer = call.offers[0]
    assert (offer.started_at, offer.ended_at, offer.from_pbx) == (leg.started_at,
                                                                  leg.answered_at, True)
    assert call.outcome is calls.Outcome.ANSWERED and call.released_by == "caller"


def test_a_live_call_is_brought_up_to_date_without_its_end() -> None:
    facts, _ = facts_of("fallback_answered")
    call, _ = calls.start(entered(facts, "main"), RULES)
    for event in call_events(call, facts, agent_of, closing=False):
        call, _ = calls.step(call, event, RULES)
    assert call.phase is calls.Phase.CONNECTED and call.agent_id == "1002"


def test_rows_without_the_callers_start_give_no_facts() -> None:
    rows, _ = load("fallback_answered")
    agent_rows = [r for r in rows if r.uniqueid != r.linkedid]
    assert call_facts(agent_rows, fallback_queue=FALLBACK) is None
    assert call_facts([], fallback_queue=FALLBACK) is None


def test_a_stored_call_resumes_in_the_phase_its_offers_say() -> None:
    base = calls.InboundCall("1.1", "PJSIP/c-1", "138", "100", "main", 10.0)
    answered = calls.Offer("1001", "", 11.0, 12.0, calls.OfferResult.ANSWERED)
    assert calls.resumed(base).phase is calls.Phase.ROUTING
    assert calls.resumed(calls.replace(base, offers=(calls.Offer("1001", "", 11.0),))
                         ).phase is calls.Phase.OFFERING
    assert calls.resumed(calls.replace(base, offers=(answered,), answered_at=12.0)
                         ).phase is calls.Phase.CONNECTED
