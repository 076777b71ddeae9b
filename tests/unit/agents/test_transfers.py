"""Desktop transfers' rules (STD-049): who may send a caller where, pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callflow.agents import transfers
from callflow.agents.events import AgentState
from callflow.agents.transfers import (
    Colleagues,
    Destination,
    Refusal,
    TransferTarget,
    check_transfer,
)
from callflow.desktop.case import CaseNote, case_payload
from callflow.engine import calls
from callflow.engine.calls import InboundCall, Offer, OfferResult, Phase
from callflow.engine.policy import parse_policy

POLICY = parse_policy({"transfers": {"max_per_call": 2, "backoffice_number": "8800",
                                     "queue_names": {"vip": "贵宾部"}}})
CENTRE = Colleagues(known_agents={"1001", "1002", "1003", "1004"},
                    states={"1001": AgentState.ON_CALL, "1002": AgentState.READY,
                            "1003": AgentState.ON_CALL, "1004": AgentState.LOGGED_OUT},
                    queues={"main", "vip"})


def talking_call(agent_id: str = "1001", **kw: object) -> InboundCall:
    offer = Offer(agent_id, f"PJSIP/agent{agent_id}-1", 10.0, 12.0, OfferResult.ANSWERED)
    call = InboundCall("1.1", "PJSIP/c-1", "13800001234", "100", "main", 5.0,
                       phase=Phase.CONNECTED, offers=(offer,), agent_id=agent_id,
                       answered_at=12.0)
    return replace(call, **kw)  # type: ignore[arg-type]


def check(target: TransferTarget, call: InboundCall | None = None,
          agent: str = "1001") -> Destination | Refusal:
    return check_transfer(talking_call() if call is None else call, agent, target, CENTRE,
                          POLICY)


@pytest.mark.std("STD-049")
def test_a_ready_agent_a_queue_the_back_office_and_a_number_are_destinations() -> None:
    assert check(TransferTarget("agent", "1002")) == Destination("agent", "1002", "1002")
    assert check(TransferTarget("queue", "vip")) == Destination("queue", "vip", "贵宾部")
    assert check(TransferTarget("queue", "main")) == Destination("queue", "main", "main")
    assert check(TransferTarget("backoffice")) == Destination("backoffice", "8800", "后台部门")
    assert check(TransferTarget("external", "13900001111")) == \
        Destination("external", "13900001111", "13900001111")


@pytest.mark.std("STD-049")
@pytest.mark.parametrize(("target", "reason"), [
    (TransferTarget("agent", "9999"), "unknown_target"),
    (TransferTarget("agent", "1004"), "target_logged_out"),
    (TransferTarget("agent", "1003"), "target_busy"),
    (TransferTarget("agent", "1001"), "transfer_loop"),  # to oneself
    (TransferTarget("queue", "nosuch"), "unknown_target"),
    (TransferTarget("external", "12"), "bad_target"),
])
def test_bad_targets_are_refused_with_one_reason(target: TransferTarget, reason: str) -> None:
    result = check(target)
    assert isinstance(result, Refusal) and result.reason == reason, result


@pytest.mark.std("STD-049")
def test_back_to_an_agent_who_had_the_call_is_a_loop() -> None:
    first = Offer("1002", "PJSIP/agent1002-1", 1.0, 2.0, OfferResult.ANSWERED, left_at=8.0)
    call = talking_call("1001")
    call = replace(call, offers=(first, *call.offers), transfer_count=1)
    result = check(TransferTarget("agent", "1002"), call)
    assert isinstance(result, Refusal) and result.reason == "transfer_loop"


@pytest.mark.std("STD-049")
def test_more_transfers_than_the_policy_allows_are_refused() -> None:
    result = check(TransferTarget("queue", "vip"), talking_call(transfer_count=2))
    assert isinstance(result, Refusal) and result.reason == "transfer_limit"
    assert isinstance(check(TransferTarget("queue", "vip"), talking_call(transfer_count=1)),
                      Destination)


@pytest.mark.std("STD-049")
def test_only_the_agent_talking_on_the_call_may_transfer_it() -> None:
    for call, agent in ((talking_call(), "1003"), (talking_call(phase=Phase.OFFERING), "1001"),
                        (talking_call(phase=Phase.TRANSFERRING), "1001")):
        result = check_transfer(call, agent, TransferTarget("agent", "1002"), CENTRE, POLICY)
        assert isinstance(result, Refusal) and result.reason == "not_on_call"
    result = check_transfer(None, "1001", TransferTarget("agent", "1002"), CENTRE, POLICY)
    assert isinstance(result, Refusal) and result.reason == "not_on_call"


@pytest.mark.std("STD-049")
def test_no_back_office_configured_is_refused() -> None:
    result = check_transfer(talking_call(), "1001", TransferTarget("backoffice"), CENTRE,
                            parse_policy({}))
    assert isinstance(result, Refusal) and result.reason == "not_configured"


@pytest.mark.std("STD-049")
def test_the_caller_is_told_where_they_go() -> None:
    assert transfers.announcement(Destination("queue", "vip", "贵宾部")) == (
        ("transfer_wait", {}), ("transfer_to_department", {"department": "贵宾部"}))
    assert transfers.announcement(Destination("agent", "1002", "1002"))[1] == \
        ("transfer_to_agent", {"agent_no": "1 0 0 2"})


def test_desktop_targets_round_trip_and_a_phone_refer_is_not_one() -> None:
    target = transfers.desktop_target(Destination("queue", "vip", "x"))
    assert target == "queue:vip"
    assert transfers.parse_desktop_target(target) == ("queue", "vip")
    assert transfers.parse_desktop_target("1002") is None  # a REFER's extension
    assert transfers.parse_desktop_target("agent:10 02") is None
    assert transfers.parse_desktop_target("nope:1") is None


def test_a_desktop_transfer_to_a_queue_moves_the_call_there() -> None:
    rules = calls.CallRules(ring_cycle_s=5, apology_after_s=15, short_abandon_s=5)
    call, _ = calls.step(talking_call(), calls.TransferStarted("1.1", "1001", "queue:vip",
                                                                20.0, queue="vip"), rules)
    assert (call.phase, call.queue, call.transfer_target, call.transfer_count) == \
        (Phase.TRANSFERRING, "vip", "queue:vip", 1)
    assert call.offers[0].left_at == 20.0


@pytest.mark.std("STD-049")
def test_the_case_carries_the_call_so_far_and_the_note() -> None:
    call = replace(talking_call(), offers=(
        Offer("1001", "c", 10.0, 12.0, OfferResult.ANSWERED, left_at=40.0),
        Offer("1002", "d", 41.0)), phase=Phase.OFFERING, transfer_count=1)
    note = CaseNote("1.1", "1001", "想改地址", "agent:1002", "blind", 40.0)
    case = case_payload(call, note, "1002")
    assert case["caller"] == "13800001234"  # masked per connection by the stream (STD-078)
    assert case["note"] == "想改地址" and case["from_agent"] == "1001"
    assert case["identity_status"] == "unverified"
    assert case["waited_s"] == 7.0
    assert [(leg["agent_id"], leg["result"], leg["talk_s"]) for leg in case["legs"]] == \
        [("1001", "answered", 28.0), ("1002", None, None)]
    assert case_payload(call, note, "1002", identity_status="verified")[
        "identity_status"] == "verified"


def test_the_back_office_sees_the_callers_number_an_outside_party_the_centres() -> None:
    centre = parse_policy({"outbound": {"caller_id": "4008001234"}})
    assert transfers.presented_number("backoffice", "13900000001", centre) == "13900000001"
    assert transfers.presented_number("external", "13900000001", centre) == "4008001234"
    # no number, or garbage from the network: the centre's (or nothing when none is set)
    assert transfers.presented_number("backoffice", "", centre) == "4008001234"
    assert transfers.presented_number("backoffice", "1<sip:x>", centre) == "4008001234"
    assert transfers.presented_number("backoffice", "anonymous", POLICY) == ""
