"""A three-way conference on the call record (STD-049): the consulted agent's part starts
at the conference, the first agent's ends when they leave; whoever stays has the caller,
and the call counts one transfer only when the caller ends with the consulted agent."""

import pytest
from test_calls import T0, T, answered_after, step

from callflow.engine import calls
from callflow.engine.calls import CallReleased, OutsideParty, PartyLeft, Phase, Transferred

A_LEG, B_LEG = "PJSIP/agent1001-1", "PJSIP/agent1002-2"


def in_conference(at: float = T0 + 20) -> calls.InboundCall:
    call = answered_after(2.0)
    call, _ = step(call, Transferred("c1", "1002", B_LEG, at, conference=True), T)
    return call


def parts(call: calls.InboundCall) -> list[tuple[str, float | None, float | None]]:
    return [(o.agent_id, o.ended_at, o.left_at) for o in call.offers]


def test_the_conference_adds_b_and_keeps_a() -> None:
    call = in_conference()
    assert call.phase is Phase.CONNECTED and call.agent_id == "1001"
    assert [o.agent_id for o in call.in_conference] == ["1001", "1002"]
    assert parts(call) == [("1001", T0 + 2, None), ("1002", T0 + 20, None)]
    assert call.transfer_count == 0


@pytest.mark.std("STD-049")
def test_a_leaves_the_caller_stays_with_b_one_transfer() -> None:
    call, _ = step(in_conference(), PartyLeft("c1", "1001", T0 + 30), T)
    assert (call.agent_id, call.transfer_count) == ("1002", 1)
    assert call.talking_offer is not None and call.talking_offer.agent_id == "1002"
    call, _ = step(call, CallReleased("c1", T0 + 50), T)
    assert parts(call) == [("1001", T0 + 2, T0 + 30), ("1002", T0 + 20, T0 + 50)]


@pytest.mark.std("STD-049")
def test_b_dropped_the_caller_stays_with_a_no_transfer() -> None:
    call, _ = step(in_conference(), PartyLeft("c1", "1002", T0 + 25), T)
    assert (call.agent_id, call.transfer_count) == ("1001", 0)
    assert call.talking_offer is not None and call.talking_offer.agent_id == "1001"
    call, _ = step(call, CallReleased("c1", T0 + 40), T)
    assert parts(call) == [("1001", T0 + 2, T0 + 40), ("1002", T0 + 20, T0 + 25)]


def test_the_caller_hanging_up_in_the_conference_ends_both_parts() -> None:
    call, _ = step(in_conference(), CallReleased("c1", T0 + 33), T)
    assert call.phase is Phase.ENDED
    assert parts(call) == [("1001", T0 + 2, T0 + 33), ("1002", T0 + 20, T0 + 33)]


@pytest.mark.std("STD-049")
def test_leaving_is_only_for_a_conference() -> None:
    plain = answered_after(2.0)
    assert step(plain, PartyLeft("c1", "1001", T0 + 9), T)[0] == plain  # the only agent
    call, _ = step(in_conference(), PartyLeft("c1", "1003", T0 + 30), T)
    assert [o.agent_id for o in call.in_conference] == ["1001", "1002"]  # not on it


def test_a_plain_attended_transfer_still_ends_a_at_the_join() -> None:
    call, _ = step(answered_after(2.0), Transferred("c1", "1002", B_LEG, T0 + 20), T)
    assert parts(call) == [("1001", T0 + 2, T0 + 20), ("1002", T0 + 20, None)]
    assert (call.agent_id, call.transfer_count) == ("1002", 1)


# --- a conference with a number (the back office, an external number) -------------------

NUMBER = "external:5550199"


def with_number(at: float = T0 + 20) -> calls.InboundCall:
    call, _ = step(answered_after(2.0), OutsideParty("c1", NUMBER, at), T)
    return call


@pytest.mark.std("STD-049")
def test_a_leaves_a_conference_with_a_number_the_caller_is_handed_to_it() -> None:
    call = with_number()
    assert (call.outside_party, call.phase) == (NUMBER, Phase.CONNECTED)
    assert [o.agent_id for o in call.in_conference] == ["1001"]  # the number is no offer
    call, _ = step(call, PartyLeft("c1", "1001", T0 + 30), T)
    assert (call.phase, call.transfer_count, call.transfer_target, call.outside_party) == (
        Phase.TRANSFERRING, 1, NUMBER, "")
    call, _ = step(call, CallReleased("c1", T0 + 50), T)
    assert parts(call) == [("1001", T0 + 2, T0 + 30)]  # the number's part is nobody's talk
    assert (call.outcome, call.released_by) == (calls.Outcome.ANSWERED, "caller")


@pytest.mark.std("STD-049")
def test_the_number_leaves_the_conference_the_caller_stays_with_a() -> None:
    call, _ = step(with_number(), OutsideParty("c1", "", T0 + 25), T)
    assert (call.outside_party, call.agent_id, call.transfer_count) == ("", "1001", 0)
    assert step(call, PartyLeft("c1", "1001", T0 + 30), T)[0] == call  # a plain call again
    call, _ = step(call, CallReleased("c1", T0 + 40), T)
    assert parts(call) == [("1001", T0 + 2, T0 + 40)]


def test_a_number_joins_only_a_call_that_is_connected() -> None:
    call, _ = step(with_number(), CallReleased("c1", T0 + 22), T)
    assert step(call, OutsideParty("c1", NUMBER, T0 + 23), T)[0] == call
