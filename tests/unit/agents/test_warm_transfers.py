"""Warm (consult-first) transfers' rules (STD-049): when a consultation may start, and
when the consulting agent may complete or cancel it. Pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callflow.agents.transfers import (
    Consult,
    Destination,
    Refusal,
    check_consult_step,
    check_warm,
)

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
def test_a_queue_cannot_be_consulted() -> None:
    refused = check_warm(Destination("queue", "main", "综合"), None, bridged=True)
    assert reason(refused) == "not_supported"
    assert refused is not None and "blind" in refused.detail


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
def test_a_conference_is_with_an_agent_not_a_number() -> None:
    outside = replace(CONSULT, to_agent="5550199", kind="external", answered=True)
    assert reason(check_consult_step(outside, "conference")) == "not_supported"
    assert check_consult_step(outside, "complete") is None
