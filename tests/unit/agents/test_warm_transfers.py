"""Warm (consult-first) transfers' rules (STD-049): when a consultation may start, and
when the consulting agent may complete or cancel it. Pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.routing import next_agent
from callflow.agents.state import AgentSnapshot, AgentState, new_agent
from callflow.agents.transfers import (
    Consult,
    Destination,
    Refusal,
    check_consult_step,
    check_warm,
    queue_consultee,
)
from callflow.engine.calls import InboundCall, Offer, OfferResult, Phase

AGENT_B = Destination("agent", "1002", "1002")
CONSULT = Consult("1.1", "1001", "1002", "PJSIP/agent1001-00000001")


def reason(result: Refusal | None) -> str | None:
    return None if result is None else result.reason


@pytest.mark.std("STD-049")
def test_a_warm_transfer_to_a_free_colleague_starts_once_the_caller_is_bridged() -> None:
    assert check_warm(AGENT_B, None, bridged=True) is None
    # during the opening Asterisk would pass the transfer's digits on to the caller
    assert reason(check_warm(AGENT_B, None, bridged=False)) == "not_bridged"


@pytest.mark.std("STD-049")
def test_a_queue_itself_is_never_consulted_only_the_agent_it_picks() -> None:
    refused = check_warm(Destination("queue", "main", "综合"), None, bridged=True)
    assert reason(refused) == "not_supported"
    assert refused is not None and "queue_consultee" in refused.detail


# --- warm to a queue: whom it consults ---------------------------------------------------

QUEUE_ROSTER = Roster((
    RosterAgent("1001", "A", "agent1001", queues=("main",)),
    RosterAgent("1002", "B", "agent1002", queues=("sales",)),
    RosterAgent("1003", "C", "agent1003", queues=("sales", "main")),
    RosterAgent("1004", "D", "agent1004", queues=("main",)),
))


def ready(agent_id: str, since: float) -> AgentSnapshot:
    return replace(new_agent(agent_id, f"agent{agent_id}"), state=AgentState.READY,
                   since=since)


def talking_with_a(queue: str = "main") -> InboundCall:
    """The caller A (1001) talks to: answered once, by A."""
    return InboundCall("1.1", "PJSIP/caller-1", "13800000000", "100", queue, 1.0,
                       phase=Phase.CONNECTED, offers=(Offer("1001", "PJSIP/agent1001-1", 2.0, 3.0,
                                     OfferResult.ANSWERED),))


@pytest.mark.std("STD-049")
def test_warm_to_a_queue_consults_the_agent_its_routing_would_offer_next() -> None:
    """The same choice as routing's for the queue's next call: serving it, ready the
    longest (1003 since 5 over 1002 since 7); 1004 serves only main."""
    agents = [ready("1002", 7.0), ready("1003", 5.0), ready("1004", 1.0)]
    chosen = queue_consultee(talking_with_a(), "sales", waiting=[], agents=agents,
                             roster=QUEUE_ROSTER)
    assert chosen == "1003"
    newcomer = InboundCall("9.9", "", "", "100", "sales", 50.0)
    routed = next_agent(newcomer, waiting=[], agents=agents, roster=QUEUE_ROSTER)
    assert routed is not None and routed.agent_id == chosen  # one rule, not two
    # held by a feature (the dialer's own callback) or the desk not reachable yet: skipped
    assert queue_consultee(talking_with_a(), "sales", waiting=[], agents=agents,
                           roster=QUEUE_ROSTER, held=lambda a: a == "1003") == "1002"
    gone = [ready("1002", 7.0), replace(ready("1003", 5.0), softphone_reachable=False)]
    assert queue_consultee(talking_with_a(), "sales", waiting=[], agents=gone,
                           roster=QUEUE_ROSTER) == "1002"


@pytest.mark.std("STD-049")
def test_warm_to_a_queue_nobody_free_is_refused_and_the_caller_stays() -> None:
    busy = [replace(ready("1002", 1.0), state=AgentState.ON_CALL),
            replace(ready("1003", 1.0), state=AgentState.NOT_READY), ready("1004", 1.0)]
    refused = queue_consultee(talking_with_a(), "sales", waiting=[], agents=busy,
                              roster=QUEUE_ROSTER)
    assert isinstance(refused, Refusal) and refused.reason == "nobody_free"
    assert "blind" in refused.detail
    # a queue nobody serves at all: the same (the unknown queue is refused before this)
    refused = queue_consultee(talking_with_a(), "vip", waiting=[], agents=busy,
                              roster=QUEUE_ROSTER)
    assert isinstance(refused, Refusal) and refused.reason == "nobody_free"


@pytest.mark.std("STD-049")
def test_warm_to_a_queue_never_consults_an_agent_who_had_the_call() -> None:
    """A (1001) serves main and is the only one there besides 1003 and 1004: a ready
    1001 (a stale state) is never picked; the ones who did not have it are."""
    call = talking_with_a()
    agents = [ready("1001", 0.0), ready("1004", 3.0)]
    assert queue_consultee(call, "main", waiting=[], agents=agents,
                           roster=QUEUE_ROSTER) == "1004"
    refused = queue_consultee(call, "main", waiting=[], agents=[ready("1001", 0.0)],
                              roster=QUEUE_ROSTER)
    assert isinstance(refused, Refusal) and refused.reason == "nobody_free"


@pytest.mark.std("STD-049")
def test_warm_to_a_queue_with_callers_in_line_is_refused() -> None:
    """First come, first served: a caller already waiting in the queue gets its next
    free agent; a caller ringing an agent or talking is not in line."""
    agents = [ready("1002", 1.0)]
    in_line = InboundCall("2.2", "", "", "100", "sales", 5.0, phase=Phase.ROUTING)
    refused = queue_consultee(talking_with_a(), "sales", waiting=[in_line], agents=agents,
                              roster=QUEUE_ROSTER)
    assert isinstance(refused, Refusal) and refused.reason == "nobody_free"
    ringing = replace(in_line, phase=Phase.OFFERING)
    other_queue = replace(in_line, queue="main")
    assert queue_consultee(talking_with_a(), "sales", waiting=[ringing, other_queue],
                           agents=agents, roster=QUEUE_ROSTER) == "1002"


@pytest.mark.std("STD-049")
@pytest.mark.parametrize("kind", ["backoffice", "external"])
def test_a_number_is_consulted_like_an_agent(kind: str) -> None:
    assert check_warm(Destination(kind, "8800", "后台"), None,  # type: ignore[arg-type]
                      bridged=True) is None


@pytest.mark.std("STD-049")
def test_one_consultation_at_a_time() -> None:
    assert reason(check_warm(AGENT_B, CONSULT, bridged=True)) == "consult_in_progress"


@pytest.mark.std("STD-049")
def test_complete_needs_the_colleague_on_the_line_cancel_does_not() -> None:
    assert reason(check_consult_step(CONSULT, "complete")) == "consult_not_answered"
    assert check_consult_step(CONSULT, "cancel") is None
    answered = replace(CONSULT, answered=True)
    assert check_consult_step(answered, "complete") is None
    assert check_consult_step(answered, "cancel") is None


@pytest.mark.std("STD-049")
@pytest.mark.parametrize("step", ["complete", "cancel"])
def test_no_consultation_nothing_to_complete_or_cancel(step: str) -> None:
    assert reason(check_consult_step(None, step)) == "no_consult"  # type: ignore[arg-type]


@pytest.mark.std("STD-049")
def test_a_conference_needs_the_colleague_on_the_line_and_is_made_once() -> None:
    assert reason(check_consult_step(None, "conference")) == "no_consult"
    assert reason(check_consult_step(CONSULT, "conference")) == "consult_not_answered"
    answered = replace(CONSULT, answered=True)
    assert check_consult_step(answered, "conference") is None
    meeting = replace(answered, conference=True)
    assert reason(check_consult_step(meeting, "conference")) == "in_conference"
    # in the conference: the first agent leaves (complete) or drops the colleague (cancel)
    assert check_consult_step(meeting, "complete") is None
    assert check_consult_step(meeting, "cancel") is None


@pytest.mark.std("STD-049")
def test_a_conference_is_made_with_a_number_as_with_an_agent() -> None:
    outside = replace(CONSULT, to_agent="5550199", kind="external", answered=True)
    assert check_consult_step(outside, "conference") is None
    assert check_consult_step(outside, "complete") is None
    ringing = replace(outside, answered=False)
    assert reason(check_consult_step(ringing, "conference")) == "consult_not_answered"
    meeting = replace(outside, conference=True)
    assert reason(check_consult_step(meeting, "conference")) == "in_conference"
    assert check_consult_step(meeting, "cancel") is None  # drops the number
