"""Consulting a number from the desktop (issue 18, STD-049), on real Asterisk + SIPp.

Agent A consults an external number (Atxfer to ``[callflow-outbound]``, a SIPp UAS as
the far end). Then

* A completes: the caller talks to the far end, A's part ends at the
  ``AttendedTransfer``; the record's last leg is the number, nobody's talk;
* or A makes a three-way conference (``transfer_conference``: the engine types the
  ``atxferthreeway`` code on A's leg, Asterisk merges the consultation into the
  caller's bridge, ``AttendedTransfer`` with ``DestType: Threeway``), and then
  - A leaves (``transfer_complete``): the caller stays with the far end, as after a
    warm transfer out: one transfer, ``transfer_target`` the number, A's part ends at
    A's leg's end (Asterisk's stamp), A to ACW, the call goes on until the caller hangs
    up;
  - or A drops the number (``transfer_cancel``): its leg is hung up, the caller stays
    with A, no transfer, and A's talk runs to the caller's hang-up.

The outside party is nobody's desk: no offer for it, no agent's talk. ``-s`` prints the
measured deltas against Asterisk's stamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_call_endings_live import SHORT_OPENING, Matrix, epoch, policy_of, ts, wait_state
from test_call_endings_live import matrix as matrix
from test_desktop_warm_transfer_live import (
    NOTE,
    caller_through,
    desk,
    event_of,
    talks_with_caller,
)

from callflow.agents.events import AgentState

AGENTS = ["1001", "1002"]
NUMBER = "5550199"


@contextmanager
def consulting_a_number(matrix: Callable[..., Any]) -> Iterator[tuple[Matrix, Any, Any]]:
    """Agent 1001 logged in with a desk, a SIPp far end behind the outbound route: the
    matrix, A's desk and the far end (both closed at the end)."""
    with matrix(policy_of(SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()))
        far_end = m.sipp.customer("uas_answer.xml", ring_ms=800)
        m.log_in("1001")
        a = desk(m, "1001")
        try:
            yield m, a, far_end
        finally:
            a.close()
            far_end.stop()


def far_end_leg(m: Matrix) -> str:
    out = m.tap("Newchannel", lambda e: e["Channel"].startswith("PJSIP/customer-"))
    assert out and out[0].get("Linkedid") == m.call_id, m.timeline()
    return str(out[0]["Channel"])


def conference_with_number(m: Matrix, a: Any) -> str:
    """The call reaches A, A consults the number, it answers, A makes the conference;
    the far end's channel, once Asterisk has all three in the caller's bridge."""
    m.call("uac_call.xml", talk_ms=12000)
    wait_state(m, "1001", AgentState.ON_CALL)
    caller_through(m)
    ack = a.request("transfer", mode="warm", note=NOTE,
                    target={"kind": "external", "value": NUMBER})
    assert ack["type"] == "ack" and ack["destination"] == f"external:{NUMBER}", ack
    early = a.request("transfer_conference")
    if early["type"] == "error":  # the far end rings 800 ms: too early to conference
        assert early["error"] == "consult_not_answered", early
    event_of(a, "consult_answered", 15, "the far end answered the consultation")
    far = far_end_leg(m)
    time.sleep(0.5)  # A talks to the far end
    made = a.request("transfer_conference")
    assert made["type"] == "ack", made
    threeway = m.wait("AttendedTransfer", 10)
    assert (threeway["Result"], threeway.get("DestType")) == ("Success", "Threeway"), threeway
    event_of(a, "conference_started", 10, "A's desk told of the conference")
    a_leg = m.legs("1001")[0]["Channel"]
    m.product.wait_for(lambda: talks_with_caller(m, a_leg) and talks_with_caller(m, far), 10,
                       "caller, A and the far end in the caller's bridge")
    core = m.product.call(lambda: m.product.runtime.calls[m.call_id])
    assert core.outside_party == f"external:{NUMBER}"
    assert m.agent("1001").call_id == m.call_id  # A is still on it
    # the consultation held the caller; in the conference nobody is on hold
    m.product.wait_for(lambda: m.product.runtime.agents["1001"].state is AgentState.ON_CALL, 5,
                       "A on the call, not on hold, in the conference")
    again = a.request("transfer_conference")
    assert (again["type"], again["error"]) == ("error", "in_conference"), again
    time.sleep(1.0)  # all three talk
    return far


def first_end(m: Matrix, uid: str) -> dict[str, Any]:
    """Asterisk's first word that ``uid`` ends (AMI's Hangup action makes no request)."""
    hits = [e for name in ("HangupRequest", "SoftHangupRequest", "Hangup")
            for e in m.tap(name, lambda e: e.get("Uniqueid") == uid)]
    assert hits, f"no end of {uid}\n{m.timeline()}"
    return min(hits, key=ts)


@pytest.mark.std("STD-049")
def test_warm_transfer_to_an_external_number(matrix: Callable[..., Any]) -> None:
    with consulting_a_number(matrix) as (m, a, far_end):
        m.call("uac_call.xml", talk_ms=9000)
        wait_state(m, "1001", AgentState.ON_CALL)
        caller_through(m)
        ack = a.request("transfer", mode="warm", note=NOTE,
                        target={"kind": "external", "value": NUMBER})
        assert ack["type"] == "ack" and ack["destination"] == f"external:{NUMBER}", ack
        event_of(a, "consult_answered", 15, "the far end answered the consultation")
        far_end_leg(m)
        time.sleep(0.5)  # A talks to the far end
        done = a.request("transfer_complete")
        assert done["type"] == "ack", done
        transfer = m.wait("AttendedTransfer", 10)
        assert transfer["Result"] == "Success", transfer
        wait_state(m, "1001", AgentState.ACW)
        m.finish()
        call = m.record()
        assert (call.outcome, call.transfer_count) == ("answered", 1)
        core = m.product.call(lambda: m.product.runtime.calls[m.call_id])
        assert core.transfer_target == f"external:{NUMBER}"  # the outside leg
        rows = m.offers()
        assert [(o.agent_id, o.result) for o in rows] == [("1001", "answered")], rows
        a_leg = m.legs("1001")[0]
        m.deltas["left[1001]"] = epoch(rows[0].left_at) - ts(transfer)
        m.deltas["talk[1001]"] = (epoch(rows[0].left_at) - epoch(rows[0].ended_at)
                                  - (ts(transfer) - m.up(a_leg["Uniqueid"])))
        m.deltas["t_end"] = epoch(call.ended_at) - ts(m.first("HangupRequest", m.call_id)
                                                     or transfer)
        assert all(abs(v) <= 0.2 for v in m.deltas.values()), m.deltas
        m.product.wait_for(lambda: "BYE" in far_end.log(), 5, "the far end's BYE")
        m.check_agent("1001", AgentState.ACW)


@pytest.mark.std("STD-049")
def test_conference_with_a_number_then_a_leaves_the_caller_with_it(
        matrix: Callable[..., Any]) -> None:
    with consulting_a_number(matrix) as (m, a, _far_end):
        far = conference_with_number(m, a)
        done = a.request("transfer_complete")  # A leaves
        assert done["type"] == "ack", done
        wait_state(m, "1001", AgentState.ACW)
        a_leg = m.legs("1001")[0]
        m.product.wait_for(lambda: m.tap("Hangup", lambda e: e.get("Uniqueid")
                                         == a_leg["Uniqueid"]), 10, "A's leg gone")
        assert talks_with_caller(m, far), m.timeline()  # the caller stays with them
        left = first_end(m, a_leg["Uniqueid"])
        m.finish()
        call = m.record()
        assert (call.outcome, call.transfer_count, call.released_by) == (
            "answered", 1, "caller")
        core = m.product.call(lambda: m.product.runtime.calls[m.call_id])
        assert (core.transfer_target, core.outside_party) == (f"external:{NUMBER}", "")
        rows = m.offers()
        assert [(o.agent_id, o.result) for o in rows] == [("1001", "answered")], rows
        m.deltas["left[1001]"] = epoch(rows[0].left_at) - ts(left)
        m.deltas["t_end"] = epoch(call.ended_at) - ts(first_end(m, m.call_id))
        assert all(abs(v) <= 0.2 for v in m.deltas.values()), m.deltas
        m.check_agent("1001", AgentState.ACW)


@pytest.mark.std("STD-049")
def test_conference_with_a_number_then_a_drops_it(matrix: Callable[..., Any]) -> None:
    with consulting_a_number(matrix) as (m, a, _far_end):
        far = conference_with_number(m, a)
        dropped = a.request("transfer_cancel")  # the number's leg is hung up
        assert dropped["type"] == "ack", dropped
        event_of(a, "consult_ended", 10, "A's desk told the number left")
        m.product.wait_for(lambda: not talks_with_caller(m, far), 10,
                           "the far end out of the caller's bridge")
        core = m.product.call(lambda: m.product.runtime.calls[m.call_id])
        assert core.outside_party == "" and core.agent_id == "1001"
        assert m.agent("1001").state is AgentState.ON_CALL  # A keeps the caller
        m.finish()
        call = m.record()
        assert (call.outcome, call.transfer_count, call.released_by) == (
            "answered", 0, "caller")
        rows = m.offers()
        assert [(o.agent_id, o.result) for o in rows] == [("1001", "answered")], rows
        end = ts(first_end(m, m.call_id))
        m.deltas["left[1001]"] = epoch(rows[0].left_at) - end
        m.deltas["t_end"] = epoch(call.ended_at) - end
        assert all(abs(v) <= 0.2 for v in m.deltas.values()), m.deltas
        m.check_agent("1001", AgentState.ACW)
