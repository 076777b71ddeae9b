"""Issue 18's three-way conference from the desktop (STD-049), on real Asterisk + SIPp.

During a warm consultation (AMI ``Atxfer``, test_desktop_warm_transfer_live.py) agent A
sends ``transfer_conference``: the engine types features.conf's ``atxferthreeway`` code
on A's leg (AMI ``PlayDTMF`` with ``Receive``), Asterisk's attended transfer merges the
consultation's bridge into the caller's (``AttendedTransfer`` with ``DestType:
Threeway``) and the caller, A and B talk together. Then A leaves (``transfer_complete``:
A's leg hung up, the caller stays with B, A to ACW) or drops B (``transfer_cancel``:
B's leg hung up, the caller stays with A).

The record: one call, A's answered offer and B's joined one; B's part starts at the
conference, A's ends when A leaves (the two overlap: a conference); ``transfer_count`` 1
when the caller ends with B, 0 when B was dropped. ``-s`` prints the measured deltas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from test_call_endings_live import Matrix, epoch, ts, wait_state
from test_call_endings_live import matrix as matrix
from test_desktop_warm_transfer_live import (
    NOTE,
    bridges_now,
    caller_through,
    event_of,
    record_of_two,
    talks_with_caller,
    two_desks,
)

from callflow.agents.events import AgentState

AGENTS = ["1001", "1002", "1003"]


def hangup_request(m: Matrix, uid: str) -> dict[str, Any]:
    """Asterisk's first word that ``uid`` ends, waited for: a request (a BYE from the
    phone), or the ``Hangup`` itself (AMI's Hangup action makes no request event)."""
    def found() -> dict[str, Any] | None:
        hits = [e for name in ("HangupRequest", "SoftHangupRequest", "Hangup")
                for e in m.tap(name, lambda e: e.get("Uniqueid") == uid)]
        return min(hits, key=ts) if hits else None
    deadline = time.monotonic() + 10
    while (hit := found()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hit is not None, f"no hang-up request on {uid}\n{m.timeline()}"
    return hit


def conference(m: Matrix, a: Any, b_leg: dict[str, Any]) -> dict[str, Any]:
    """A makes the consultation a three-way conference; Asterisk's AttendedTransfer."""
    ack = a.request("transfer_conference")
    assert ack["type"] == "ack", ack
    threeway = m.wait("AttendedTransfer", 10)
    assert (threeway["Result"], threeway.get("DestType")) == ("Success", "Threeway"), threeway
    event_of(a, "conference_started", 10, "A's desk told of the conference")
    a_leg = m.legs("1001")[0]
    m.product.wait_for(lambda: talks_with_caller(m, a_leg["Channel"])
                       and talks_with_caller(m, b_leg["Channel"]), 10,
                       "caller, A and B in the caller's bridge")
    where = bridges_now(m)
    caller_bridge = next(b for c, b in where.items() if c.startswith("PJSIP/caller-"))
    assert where[a_leg["Channel"]] == caller_bridge, m.timeline()
    again = a.request("transfer_conference")
    assert (again["type"], again["error"]) == ("error", "in_conference"), again
    # the consultation held the caller (A on_hold); in the conference all three talk
    agents = m.product.runtime.agents
    m.product.wait_for(lambda: agents["1001"].state is AgentState.ON_CALL, 5,
                       "A on the call, not on hold, in the conference")
    return threeway


def consult(m: Matrix, a: Any, b: Any) -> dict[str, Any]:
    """The call reaches A; A consults B (warm), B answers; B's consult leg."""
    m.call("uac_call.xml", talk_ms=16000)
    wait_state(m, "1001", AgentState.ON_CALL)
    caller_through(m)
    early = a.request("transfer_conference")
    assert (early["type"], early["error"]) == ("error", "no_consult"), early
    ack = a.request("transfer", mode="warm", note=NOTE,
                    target={"kind": "agent", "value": "1002"})
    assert ack["type"] == "ack", ack
    ringing = a.request("transfer_conference")  # B's phone rings 1 s
    assert (ringing["type"], ringing["error"]) == ("error", "consult_not_answered"), ringing
    event_of(b, "case", 10, "the case at B")
    event_of(a, "consult_answered", 10, "B answered the consultation")
    m.product.wait_for(lambda: m.legs("1002"), 5, "B's consult leg in the tap")
    time.sleep(0.5)  # A and B talk
    return m.legs("1002")[0]


@pytest.mark.std("STD-049")
def test_conference_then_a_leaves_the_caller_with_b(matrix: Callable[..., Any]) -> None:
    with two_desks(matrix) as (m, a, b):
        b_leg = consult(m, a, b)
        threeway = conference(m, a, b_leg)
        m.product.wait_for(lambda: m.product.runtime.agents["1002"].call_id == m.call_id,
                           5, "B on the caller's call")
        assert m.agent("1001").call_id == m.call_id  # A is still on it
        time.sleep(1.0)  # all three talk
        done = a.request("transfer_complete")
        assert done["type"] == "ack", done
        a_leg = m.legs("1001")[0]
        left = hangup_request(m, a_leg["Uniqueid"])
        wait_state(m, "1001", AgentState.ACW)
        assert m.agent("1002").call_id == m.call_id
        m.product.wait_for(lambda: talks_with_caller(m, b_leg["Channel"]), 5,
                           "B still with the caller")
        call, rows = record_of_two(m, 1, "1002")
        end = m.asterisk_end(b_leg["Uniqueid"], False)
        ast_a = ts(left) - m.up(a_leg["Uniqueid"])
        ast_b = end - ts(threeway)
        m.deltas["join[1002]"] = epoch(rows[1].ended_at) - ts(threeway)
        m.deltas["left[1001]"] = epoch(rows[0].left_at) - ts(left)
        m.deltas["talk[1001]"] = epoch(rows[0].left_at) - epoch(rows[0].ended_at) - ast_a
        m.deltas["talk[1002]"] = epoch(rows[1].left_at) - epoch(rows[1].ended_at) - ast_b
        m.deltas["t_end"] = epoch(call.ended_at) - end
        assert all(abs(v) <= 0.2 for v in m.deltas.values()), m.deltas
        assert epoch(rows[0].left_at) > epoch(rows[1].ended_at)  # they overlapped
        m.check_agent("1001", AgentState.ACW)
        m.check_agent("1002", AgentState.ACW)
        assert len(m.legs("1002")) == 1  # B rang once: the consultation


@pytest.mark.std("STD-049")
def test_conference_then_a_drops_b(matrix: Callable[..., Any]) -> None:
    with two_desks(matrix) as (m, a, b):
        b_leg = consult(m, a, b)
        threeway = conference(m, a, b_leg)
        time.sleep(1.0)
        dropped = a.request("transfer_cancel")
        assert dropped["type"] == "ack", dropped
        left = hangup_request(m, b_leg["Uniqueid"])
        event_of(a, "consult_ended", 10, "A's desk told B is gone")
        a_leg = m.legs("1001")[0]
        m.product.wait_for(lambda: talks_with_caller(m, a_leg["Channel"]), 5,
                           "A still with the caller")
        wait_state(m, "1002", AgentState.ACW)  # B talked to the caller: B's ACW
        assert m.agent("1001").state is not AgentState.ACW  # A still has the caller
        call, rows = record_of_two(m, 0, "1001")
        end = m.asterisk_end(a_leg["Uniqueid"], False)
        m.deltas["join[1002]"] = epoch(rows[1].ended_at) - ts(threeway)
        m.deltas["left[1002]"] = epoch(rows[1].left_at) - ts(left)
        m.deltas["left[1001]"] = epoch(rows[0].left_at) - end
        m.deltas["t_end"] = epoch(call.ended_at) - end
        assert all(abs(v) <= 0.2 for v in m.deltas.values()), m.deltas
        m.check_agent("1001", AgentState.ACW)
        m.check_agent("1002", AgentState.ACW)
