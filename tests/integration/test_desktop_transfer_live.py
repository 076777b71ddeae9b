"""Issue 18's transfers from the desktop, on real Asterisk + SIPp (STD-049).

The agent's desktop (``/ws/desktop``) asks ``transfer``; the product's inbound flow tells
the caller where they go and takes them there. Each case runs the whole product (the
``matrix`` harness of test_call_endings_live.py: the inbound flow, the desktop and
special-calls features, the AMI tap, the four invariants checked at the end) with SIPp
agent phones and a SIPp caller:

* blind to an agent: B's phone rings for the same call and B's desktop gets the
  ``case`` (A's note, the call so far, identity status); A's leg is hung up and A goes
  to ACW; the caller talks to B; one record, two answered legs, each agent's part
  timed by Asterisk's stamps (A left at A's leg ``Hangup``, B answered at
  B's leg ``Up``) within 0.2 s;
* blind to a queue nobody serves free: the caller hears the transfer prompts and then
  the queue's waiting announcements (STD-047), is not lost, and is offered when an
  agent of that queue becomes ready;
* to a logged-out agent, to oneself, when not on a call: refused with the reason, the
  call unchanged.

``-s`` prints the measured deltas (record minus Asterisk).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_agents_live import LiveDesk
from test_call_endings_live import SHORT_OPENING, Matrix, policy_of, ts, wait_state
from test_call_endings_live import matrix as matrix

from callflow.agents.events import AgentState
from callflow.engine import kpi
from callflow.engine.calls import Phase
from callflow.engine.effects import Hangup
from callflow.engine.kpi import KpiRules, Period
from callflow.store.kpi_facts import load_facts

AGENTS = ["1001", "1002", "1003"]
NOTE = "客户要改收货地址,已核对姓名"
#: queue "vip" is served by nobody in the roster; its announcements come every 4 s
QUEUE_POLICY = {"waiting": {"announcement_interval_s": 4},
                "routing": {"did_queues": {"100": "main", "200": "vip"}},
                "transfers": {"queue_names": {"vip": "贵宾服务部"}}}


def desk(m: Matrix, agent_id: str) -> LiveDesk:
    return LiveDesk(m.product, agent_id)


def played(m: Matrix, name: str) -> list[dict[str, Any]]:
    """The flow's STREAM FILE commands of prompt ``name`` on the caller's channel."""
    return m.tap("AGIExecStart", lambda e: e.get("Uniqueid") == m.call_id
                 and "STREAM FILE" in e.get("Command", "") and f"/{name}" in e["Command"])


@pytest.mark.std("STD-049")
def test_blind_transfer_to_an_agent_carries_the_case_and_splits_the_talk(
        matrix: Callable[..., Any]) -> None:
    with matrix(policy_of(SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()), ("1002", "uas_answer.xml", 500, ()))
        m.log_in("1001", "1002")
        a, b = desk(m, "1001"), desk(m, "1002")
        try:
            m.call("uac_call.xml", talk_ms=19000)
            wait_state(m, "1001", AgentState.ON_CALL)
            time.sleep(1.5)  # A talks a while
            ack = a.request("transfer", mode="blind", note=NOTE,
                            target={"kind": "agent", "value": "1002"})
            assert ack["type"] == "ack", ack
            assert (ack["destination"], ack["state"]) == ("agent:1002", "acw")
            _, case, _ = b.wait(lambda f: f["type"] == "event"
                                and f["payload"].get("type") == "case", 15, "the case at B")
            payload = case["payload"]
            assert payload["note"] == NOTE and payload["from_agent"] == "1001"
            assert payload["caller"] == "13900000013"  # an agent sees their own caller
            assert payload["identity_status"] == "unverified"
            assert [leg["agent_id"] for leg in payload["legs"]][:1] == ["1001"]
            assert payload["std"] == "STD-049"
            wait_state(m, "1002", AgentState.ON_CALL, 20)
            assert m.agent("1002").call_id == m.call_id
            assert m.agent("1001").state is AgentState.ACW
            # the caller was told where they go before B's phone rang
            wait_prompt = played(m, "transfer_wait")
            b_leg = m.legs("1002")[0]
            assert wait_prompt and played(m, "transfer_to_agent")
            assert ts(wait_prompt[0]) < ts(b_leg)
            assert not [f for _, f in a.frames if f["type"] == "event"
                        and f["payload"].get("type") == "case"], "A got no case"
            m.finish()
            a_leg = m.legs("1001")[0]
            # AMI's Hangup action on A's leg: Asterisk reports no request, only its Hangup
            a_left = m.first("Hangup", a_leg["Uniqueid"])
            assert a_left is not None, m.timeline()
            call = m.check_record(outcome="answered", ending="caller_released",
                                  released_by="caller",
                                  offers=[("1001", "answered"), ("1002", "answered")],
                                  agent_id="1002", transfer_count=1,
                                  transfers={0: ts(a_left)})
            rows = m.offers()
            talk_a = rows[0].left_at - rows[0].ended_at
            talk_b = rows[1].left_at - rows[1].ended_at
            ast_a = ts(a_left) - m.up(a_leg["Uniqueid"])
            ast_b = m.asterisk_end(b_leg["Uniqueid"], False) - m.up(b_leg["Uniqueid"])
            m.deltas["talk[1001]"] = talk_a.total_seconds() - ast_a
            m.deltas["talk[1002]"] = talk_b.total_seconds() - ast_b
            assert abs(m.deltas["talk[1001]"]) <= 0.2 and abs(m.deltas["talk[1002]"]) <= 0.2
            # the KPIs from the store: the call counted once per queue, each agent's talk
            # their leg's, the announcement and B's ringing nobody's
            now = datetime.now(UTC)
            period = Period(now - timedelta(hours=1), now + timedelta(minutes=1))
            facts, spans = load_facts(m.product.store, period)
            rules = KpiRules.from_policy(m.product.service.policy)
            queue = kpi.queue_kpis(facts, lambda q: rules, now, spans)["main"]
            per_agent = kpi.agent_kpis(facts, spans, lambda q: rules, period, now)
            assert (queue.answered, queue.handled, queue.transferred) == (1, 1, 1)
            assert abs(queue.talk_s - (ast_a + ast_b)) <= 0.2, (queue.talk_s, ast_a, ast_b)
            assert abs(per_agent["1001"].talk_s - ast_a) <= 0.2
            assert abs(per_agent["1002"].talk_s - ast_b) <= 0.2
            assert (per_agent["1001"].handled, per_agent["1002"].handled) == (1, 1)
            assert call.transfer_count == 1
            m.check_agent("1001", AgentState.ACW)
            m.check_agent("1002", AgentState.ACW)
            m.report()
        finally:
            a.close()
            b.close()


@pytest.mark.std("STD-049")
def test_blind_transfer_to_a_queue_with_nobody_free_waits_there(
        matrix: Callable[..., Any]) -> None:
    with matrix(policy_of(SHORT_OPENING, QUEUE_POLICY), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()))
        m.log_in("1001")
        a = desk(m, "1001")
        try:
            m.call("uac_wait_bye.xml")
            wait_state(m, "1001", AgentState.ON_CALL)
            ack = a.request("transfer", mode="blind", target={"kind": "queue", "value": "vip"})
            assert ack["type"] == "ack" and ack["destination_name"] == "贵宾服务部", ack
            # the caller is told the department, then waits with the queue's announcements
            m.product.wait_for(lambda: len(played(m, "wait_progress")) >= 1, 15,
                               "a waiting announcement in the queue")
            assert played(m, "transfer_wait") and played(m, "transfer_to_department")
            call = m.product.call(lambda: m.product.runtime.calls[m.call_id])
            assert (call.phase, call.queue, call.transfer_count) == \
                (Phase.TRANSFERRING, "vip", 1)
            assert m.agent("1001").state is AgentState.ACW
            # nobody of vip: not lost; hang the caller up from the tap's side
            m.product.call(lambda: m.product.runtime.execute([Hangup(call.channel)]))
            m.finish(timeout=20)
            record = m.record()
            assert record.transfer_count == 1 and record.queue == "vip"
            m.report()
        finally:
            a.close()


@pytest.mark.std("STD-049")
def test_bad_transfers_are_refused_and_the_call_stays(matrix: Callable[..., Any]) -> None:
    with matrix(policy_of(SHORT_OPENING), AGENTS) as m:
        m.phones(("1001", "uas_answer.xml", 500, ()))
        m.log_in("1001")
        a = desk(m, "1001")
        try:
            idle = a.request("transfer", mode="blind", target={"kind": "agent", "value": "1002"})
            assert (idle["type"], idle["error"]) == ("error", "not_on_call")
            m.call("uac_call.xml", talk_ms=6000)
            wait_state(m, "1001", AgentState.ON_CALL)
            for target, reason in (({"kind": "agent", "value": "1002"}, "target_logged_out"),
                                   ({"kind": "agent", "value": "1001"}, "transfer_loop"),
                                   ({"kind": "agent", "value": "4444"}, "unknown_target"),
                                   ({"kind": "backoffice"}, "not_configured")):
                refused = a.request("transfer", mode="blind", target=target)
                assert (refused["type"], refused["error"]) == ("error", reason), refused
            a.send({"type": "transfer", "mode": "blind", "target": {"kind": "agent",
                                                                    "value": "1;x"}})
            a.wait(lambda f: f["type"] == "error" and f["error"] == "bad_frame", 5,
                   "the bad frame refused")
            assert m.agent("1001").state is AgentState.ON_CALL
            m.finish()
            m.check_record(outcome="answered", ending="caller_released", released_by="caller",
                           offers=[("1001", "answered")], agent_id="1001")
        finally:
            a.close()
