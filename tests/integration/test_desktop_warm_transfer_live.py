"""Issue 18's warm (consult-first) transfer from the desktop, on real Asterisk + SIPp.

Agent A's desktop asks ``transfer`` with ``mode: "warm"``: the engine sends AMI
``Atxfer`` on A's leg, Asterisk holds the caller (music on hold) and rings B's phone from
the agents' context; B's desktop gets the ``case`` (A's note) while B's phone rings. A
then sends ``transfer_complete`` (A's leg is hung up, Asterisk joins the caller to B:
``AttendedTransfer``) or ``transfer_cancel`` (``CancelAtxfer``: B's consult leg is hung
up, A has the caller again); a consultation B's phone declines gives the caller back to
A (``consult_ended``). The product runs whole (the ``matrix`` harness of
test_call_endings_live.py, the four invariants checked at the end).

The record: one call, A's answered offer, left at the ``AttendedTransfer``; B's part
begins there (B talked to A, not the caller, before it: the consultation is nobody's
talk with the caller), so each agent's talk is their time with the caller and the two
add up to the caller's connected time. ``-s`` prints the measured deltas.

Warm to a queue: the engine consults the agent the queue's routing would offer its next
call to (agents/routing.py ``free_agent``); nobody free there is ``nobody_free`` and the
caller stays with A. After that the consultation is the warm-to-agent one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_agents_live import LiveDesk
from test_call_endings_live import SHORT_OPENING, Matrix, epoch, policy_of, ts, wait_state
from test_call_endings_live import matrix as matrix

from callflow.agents.events import AgentState

AGENTS = ["1001", "1002", "1003"]
NOTE = "客户要改收货地址,已核对姓名"


def desk(m: Matrix, agent_id: str) -> LiveDesk:
    return LiveDesk(m.product, agent_id)


def event_of(d: LiveDesk, kind: str, timeout: float, what: str) -> dict[str, Any]:
    _, frame, _ = d.wait(lambda f: f["type"] == "event"
                         and f["payload"].get("type") == kind, timeout, what)
    payload: dict[str, Any] = frame["payload"]
    return payload


def caller_through(m: Matrix) -> None:
    """The opening is over: the caller is bridged with the agent in Asterisk (the tap's
    ``BridgeEnter``) and in the engine's view of the channels, which a warm transfer
    checks (``not_bridged`` before). The engine reads AMI on its own link, so it can be a
    few ms behind the tap."""
    m.wait("BridgeEnter", 10, Uniqueid=m.call_id)
    runtime = m.product.runtime

    def bridged() -> bool:
        call = runtime.calls.get(m.call_id)
        talking = call.talking_offer if call is not None else None
        return talking is not None and any(
            p.name == talking.channel for p in runtime.asterisk.view.peers(m.call_id))
    m.product.wait_for(bridged, 5, "the engine to see the caller bridged with the agent")


def bridges_now(m: Matrix) -> dict[str, str]:
    """Channel name -> the bridge it is in, from Asterisk's BridgeEnter/BridgeLeave."""
    where: dict[str, str] = {}
    for e in m.pbx.tap.events_since(m.t0):
        if e["Event"] == "BridgeEnter":
            where[e["Channel"]] = e["BridgeUniqueid"]
        elif e["Event"] == "BridgeLeave" and where.get(e["Channel"]) == e["BridgeUniqueid"]:
            del where[e["Channel"]]
    return where


@contextmanager
def two_desks(matrix: Callable[..., Any], b_ring_ms: int = 1000,
              ) -> Iterator[tuple[Matrix, LiveDesk, LiveDesk]]:
    """One case with A and B logged in, their phones answering (A's after 0.5 s, B's
    after ``b_ring_ms``), each with a desktop, closed when the case ends."""
    with matrix(policy_of(SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()),
                 ("1002", "uas_answer.xml", b_ring_ms, ()))
        m.log_in("1001", "1002")
        a, b = desk(m, "1001"), desk(m, "1002")
        try:
            yield m, a, b
        finally:
            a.close()
            b.close()


def complete_to_b(m: Matrix, a: LiveDesk, b_leg: dict[str, Any]) -> dict[str, Any]:
    """A completes the consultation: Asterisk's ``AttendedTransfer``, A in ACW, B has
    the caller, in the caller's bridge. Returns the ``AttendedTransfer``."""
    done = a.request("transfer_complete")
    assert done["type"] == "ack", done
    transfer = m.wait("AttendedTransfer", 10)
    assert transfer["Result"] == "Success", transfer
    wait_state(m, "1001", AgentState.ACW)
    m.product.wait_for(lambda: m.product.runtime.agents["1002"].call_id == m.call_id,
                       5, "B has the caller")
    assert talks_with_caller(m, b_leg["Channel"]), m.timeline()
    return transfer


def record_of_two(m: Matrix, transfers: int, agent_id: str) -> tuple[Any, list[Any]]:
    """After the caller's BYE: one answered call, ``transfers`` transfers, ended with
    ``agent_id``; A's and B's answered offers, in that order. Returns (call, offers)."""
    m.finish()
    call = m.record()
    assert (call.outcome, call.transfer_count, call.agent_id) == \
        ("answered", transfers, agent_id)
    rows = m.offers()
    assert [(o.agent_id, o.result) for o in rows] == \
        [("1001", "answered"), ("1002", "answered")], rows
    return call, rows


def talks_match_asterisk(m: Matrix, rows: list[Any], transfer: dict[str, Any],
                         b_leg: dict[str, Any]) -> None:
    """A's talk is A's leg up to the ``AttendedTransfer``, B's from it to B's leg's end,
    A left at it: each within 0.2 s of Asterisk's. Both in ACW; B's phone rang once."""
    a_leg = m.legs("1001")[0]
    ast_a = ts(transfer) - m.up(a_leg["Uniqueid"])
    ast_b = m.asterisk_end(b_leg["Uniqueid"], False) - ts(transfer)
    m.deltas["talk[1001]"] = epoch(rows[0].left_at) - epoch(rows[0].ended_at) - ast_a
    m.deltas["talk[1002]"] = epoch(rows[1].left_at) - epoch(rows[1].ended_at) - ast_b
    m.deltas["left[1001]"] = epoch(rows[0].left_at) - ts(transfer)
    assert all(abs(v) <= 0.2 for v in m.deltas.values()), m.deltas
    m.check_agent("1001", AgentState.ACW)
    m.check_agent("1002", AgentState.ACW)
    assert len(m.legs("1002")) == 1  # B rang once: the consultation


def talks_with_caller(m: Matrix, channel: str) -> bool:
    """Asterisk has ``channel`` in the caller's bridge now, directly or through the Local
    pair Atxfer dialled it by (``Local/...;1`` with the caller, ``;2`` with the agent)."""
    where = bridges_now(m)
    caller_bridge = next((b for c, b in where.items() if c.startswith("PJSIP/caller-")), None)
    if caller_bridge is None or channel not in where:
        return False
    if where[channel] == caller_bridge:
        return True
    return any(c.endswith(";2") and b == where[channel]
               and where.get(c[:-1] + "1") == caller_bridge for c, b in where.items())


@pytest.mark.std("STD-049")
def test_warm_transfer_consults_b_then_joins_the_caller(
        matrix: Callable[..., Any]) -> None:
    with two_desks(matrix) as (m, a, b):
        m.call("uac_call.xml", talk_ms=16000)
        wait_state(m, "1001", AgentState.ON_CALL)
        caller_through(m)
        time.sleep(1.0)  # A talks a while
        early = a.request("transfer_complete")
        assert (early["type"], early["error"]) == ("error", "no_consult"), early
        ack = a.request("transfer", mode="warm", note=NOTE,
                        target={"kind": "agent", "value": "1002"})
        assert ack["type"] == "ack" and ack["destination"] == "agent:1002", ack
        assert ack["state"] == "on_call"  # A keeps the call while consulting
        case = event_of(b, "case", 10, "the case at B while B's phone rings")
        assert case["note"] == NOTE and case["from_agent"] == "1001"
        assert case["mode"] == "warm" and case["std"] == "STD-049"
        m.product.wait_for(lambda: m.legs("1002"), 5, "B's consult leg in the tap")
        b_leg = m.legs("1002")[0]
        assert m.first("Newstate", b_leg["Uniqueid"], ChannelStateDesc="Up") is None, \
            "the case came while B's phone rang"
        event_of(a, "consult_answered", 10, "B answered the consultation")
        assert m.agent("1002").state is AgentState.ON_CALL  # consulting, not ready
        # Asterisk put the caller on hold from A's leg (AMI Hold): A's desk shows it
        assert m.agent("1001").state is AgentState.ON_HOLD
        # the caller waited on hold (Asterisk's MOH) during the consultation
        assert m.tap("MusicOnHoldStart", lambda e: e["Uniqueid"] == m.call_id) \
            or m.tap("Hold", lambda e: e["Uniqueid"] == m.call_id), m.timeline()
        time.sleep(1.0)  # A and B talk
        transfer = complete_to_b(m, a, b_leg)
        _, rows = record_of_two(m, 1, "1002")
        talks_match_asterisk(m, rows, transfer, b_leg)


@pytest.mark.std("STD-049")
def test_warm_transfer_cancelled_leaves_the_caller_with_a(
        matrix: Callable[..., Any]) -> None:
    with two_desks(matrix, b_ring_ms=500) as (m, a, _):
        m.call("uac_call.xml", talk_ms=10000)
        wait_state(m, "1001", AgentState.ON_CALL)
        caller_through(m)
        refused = a.request("transfer", mode="warm",
                            target={"kind": "queue", "value": "nosuch"})
        assert (refused["type"], refused["error"]) == ("error", "unknown_target")
        ack = a.request("transfer", mode="warm", note=NOTE,
                        target={"kind": "agent", "value": "1002"})
        assert ack["type"] == "ack", ack
        event_of(a, "consult_answered", 10, "B answered the consultation")
        again = a.request("transfer", mode="warm",
                          target={"kind": "agent", "value": "1002"})
        assert again["type"] == "error", again
        cancel = a.request("transfer_cancel")
        assert cancel["type"] == "ack", cancel
        m.product.wait_for(lambda: m.legs("1002"), 5, "B's consult leg in the tap")
        b_leg = m.legs("1002")[0]
        m.wait("Hangup", 10, Uniqueid=b_leg["Uniqueid"])
        m.product.wait_for(lambda: m.product.runtime.agents["1002"].state
                           is AgentState.READY, 5, "B ready again (no ACW)")
        assert m.agent("1001").state is AgentState.ON_CALL
        a_leg = m.legs("1001")[0]
        m.product.wait_for(lambda: talks_with_caller(m, a_leg["Channel"]), 10,
                           "A back in the caller's bridge")
        assert not m.tap("AttendedTransfer")
        m.finish()
        m.check_record(outcome="answered", ending="caller_released",
                       released_by="caller", offers=[("1001", "answered")],
                       agent_id="1001")
        assert m.record().transfer_count == 0
        m.check_agent("1001", AgentState.ACW)


@pytest.mark.std("STD-049")
def test_warm_transfer_declined_by_b_leaves_the_caller_with_a(
        matrix: Callable[..., Any]) -> None:
    """B's phone declines the consultation (603): A's desk hears ``consult_ended``, the
    caller is A's again, B is ready (no ACW), nothing to complete; one leg."""
    with matrix(policy_of(SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()), ("1002", "uas_reject_603.xml", 500, ()))
        m.log_in("1001", "1002")
        a = desk(m, "1001")
        try:
            m.call("uac_call.xml", talk_ms=8000)
            wait_state(m, "1001", AgentState.ON_CALL)
            caller_through(m)
            ack = a.request("transfer", mode="warm", target={"kind": "agent", "value": "1002"})
            assert ack["type"] == "ack", ack
            ended = event_of(a, "consult_ended", 10, "the consultation declined")
            assert ended["agent_id"] == "1002"
            a_leg = m.legs("1001")[0]
            m.product.wait_for(lambda: talks_with_caller(m, a_leg["Channel"]), 10,
                               "A back in the caller's bridge")
            refused = a.request("transfer_complete")
            assert (refused["type"], refused["error"]) == ("error", "no_consult"), refused
            m.product.wait_for(lambda: m.product.runtime.agents["1002"].state
                               is AgentState.READY, 5, "B ready (no ACW)")
            m.finish()
            m.check_record(outcome="answered", ending="caller_released",
                           released_by="caller", offers=[("1001", "answered")],
                           agent_id="1001")
            assert not m.tap("AttendedTransfer")
        finally:
            a.close()


@pytest.mark.std("STD-049")
def test_warm_transfer_to_a_queue_consults_its_next_agent(
        matrix: Callable[..., Any]) -> None:
    """A alone is logged in: warm to queue ``main`` is ``nobody_free`` and the caller stays
    with A. B logs in (ready, serves main): the same request consults B (the agent the
    queue's routing picks), B's case says it came through the queue, A completes: the
    caller is B's, one record with two legs, each talk within 0.2 s of Asterisk's."""
    with matrix(policy_of(SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()), ("1002", "uas_answer.xml", 1000, ()))
        m.log_in("1001")
        a = desk(m, "1001")
        b: LiveDesk | None = None
        try:
            m.call("uac_call.xml", talk_ms=16000)
            wait_state(m, "1001", AgentState.ON_CALL)
            caller_through(m)
            a_leg = m.legs("1001")[0]
            time.sleep(0.5)
            refused = a.request("transfer", mode="warm", note=NOTE,
                                target={"kind": "queue", "value": "main"})
            assert (refused["type"], refused["error"]) == ("error", "nobody_free"), refused
            assert m.agent("1001").state is AgentState.ON_CALL
            assert talks_with_caller(m, a_leg["Channel"]), m.timeline()
            assert not m.tap("Newchannel", lambda e: "agent1002" in e["Channel"])
            m.log_in("1002")
            wait_state(m, "1002", AgentState.READY)
            b = desk(m, "1002")
            ack = a.request("transfer", mode="warm", note=NOTE,
                            target={"kind": "queue", "value": "main"})
            assert ack["type"] == "ack" and ack["destination"] == "agent:1002", ack
            assert ack["state"] == "on_call"  # A keeps the call while consulting
            case = event_of(b, "case", 10, "the case at B while B's phone rings")
            assert case["destination"] == "queue:main", case  # came through the queue
            assert (case["mode"], case["note"], case["from_agent"], case["to_agent"]) == \
                ("warm", NOTE, "1001", "1002")
            m.product.wait_for(lambda: m.legs("1002"), 5, "B's consult leg in the tap")
            b_leg = m.legs("1002")[0]
            event_of(a, "consult_answered", 10, "B answered the consultation")
            time.sleep(1.0)  # A and B talk
            transfer = complete_to_b(m, a, b_leg)
            _, rows = record_of_two(m, 1, "1002")
            talks_match_asterisk(m, rows, transfer, b_leg)
        finally:
            a.close()
            if b is not None:
                b.close()
