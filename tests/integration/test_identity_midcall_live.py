"""The PIN step an agent asks for mid-call, on a real Asterisk (issue 18, STD-077).

A known customer with a PIN on record calls; the centre does not ask for the PIN before
routing (``identity.pin_in_ivr = false``), so the agent asks from the desktop
(``{"type": "identity_pin"}``). Asterisk runs the PIN AGI on the caller's channel inside
the bridge (features.conf ``applicationmap``, pressed on the agent's leg by AMI PlayDTMF
``Receive: true``; callflow/pbx/midcall_pin.py):

* refused before the call (``not_on_call``), acked during it;
* the agent's leg hears hold music (``MusicOnHoldStart``/``Stop`` on it) and is sent no
  DTMF at all (no ``DTMFBegin``/``DTMFEnd`` ``Sent`` on it), while the caller's leg did
  receive the PIN's digits (the search for them below looks for something that existed);
* the caller keys the right PIN by RFC 4733: the agent's desktop gets an ``identity``
  frame ``verified:pin``; a second ask is refused (``already_verified``); the audit has
  the step; the caller never left the bridge and talks to the same agent until their BYE;
  one call, one answered offer, the record's times equal to Asterisk's;
* the step's interval (recorded with the outcome and in the audit) is Asterisk's: the
  caller's leg ``Hold`` to ``Unhold``; it is neither talk nor hold in the KPIs: the
  agent's and the queue's talk are the agent leg's time up minus the step;
* the digits are in no log record, desktop frame, or file of the engine or Asterisk.

A second case: the caller hangs up during the PIN prompt: the call ends with its one
outcome (answered, released by the caller), the agent goes to ACW as after any call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from secretscan import leaks
from test_agents_live import LiveDesk
from test_call_endings_live import CALLER, SHORT_OPENING, Matrix, policy_of, ts, wait_state
from test_call_endings_live import matrix as matrix
from test_identity_live import pin_caller

from callflow.agents.events import AgentState
from callflow.engine import kpi
from callflow.engine.calls import Phase
from callflow.engine.kpi import KpiRules, Period
from callflow.store import repo
from callflow.store.kpi_facts import load_facts

pytestmark = pytest.mark.integration

PIN = "730196"
POLICY = {"identity": {"pin_in_ivr": False, "pin_attempts": 3,
                       "pin_digit_timeout_ms": 3000}}
ASK_AT = 4.0  # s after the caller's answer: the agent is talking by then
KEYS_AT = 6.5  # the caller keys the PIN then (the PIN prompt is playing)


def customer_with_pin(m: Matrix) -> str:
    boss = m.product.session("boss", "supervisor")
    code, made = m.product.rest("POST", "/api/v1/customers", boss, {
        "surname": "王", "title": "先生", "account": "6222-0001", "numbers": [CALLER],
        "pin": PIN})
    assert code == 201, made
    return str(made["customer_id"])


def start_caller(m: Matrix, script: Path) -> float:
    """The caller dials DID 100 with the schedule in ``script``; the epoch second
    Asterisk answered them."""
    m.product.call(lambda: m.product.runtime.on_event(m.events.append))
    m.t0 = m.pbx.tap.mark()
    m.caller = m.sipp.caller("100", str(script), caller_id=CALLER, timeout_s=60)
    m.call_id = m.pbx.tap.wait_event("AGIExecStart", 10, since=m.t0)["Uniqueid"]
    return m.up(m.call_id) if m.first("Newstate", m.call_id, ChannelStateDesc="Up") \
        else ts(m.wait("Newstate", 5, Uniqueid=m.call_id, ChannelStateDesc="Up"))


def ask_at(desk: LiveDesk, when: float) -> dict[str, Any]:
    time.sleep(max(0.0, when - time.time()))
    return desk.request("identity_pin")


def dtmf(m: Matrix, uid: str, direction: str) -> str:
    return "".join(e["Digit"] for e in m.tap("DTMFEnd") if e.get("Uniqueid") == uid
                   and e.get("Direction") == direction)


@pytest.mark.std("STD-077")
def test_agent_asks_for_the_pin_mid_call_without_hearing_it(
        matrix: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with matrix(policy_of(SHORT_OPENING, POLICY), ["1001"]) as m:
        customer_id = customer_with_pin(m)
        m.phones(("1001", "uas_answer.xml", 500, ()))
        m.log_in("1001")
        desk = LiveDesk(m.product, "1001")
        try:
            idle = desk.request("identity_pin")
            assert (idle["type"], idle["error"]) == ("error", "not_on_call"), idle
            script = pin_caller(tmp_path / "sipp-caller", [(KEYS_AT, PIN + "#")], bye_at=20)
            answered = start_caller(m, script)
            wait_state(m, "1001", AgentState.ON_CALL)
            asked = ask_at(desk, answered + ASK_AT)
            assert (asked["type"], asked["state"], asked["call_id"]) == \
                ("ack", "on_call", m.call_id), asked
            again = desk.request("identity_pin")
            assert (again["type"], again["error"]) == ("error", "pin_pending"), again
            _, told, _ = desk.wait(
                lambda f: f["type"] == "event" and f["payload"].get("type") == "identity"
                and f["payload"].get("status") == "verified:pin", 15, "verified:pin")
            assert told["payload"]["call_id"] == m.call_id
            assert told["payload"]["by"] == "ivr" and told["payload"]["pin_attempts"] == 1
            done = desk.request("identity_pin")
            assert (done["type"], done["error"]) == ("error", "already_verified"), done
            # the caller is back with the same agent: the call still talks, on 1001
            time.sleep(3.5)  # past the "back with your agent" line
            call = m.product.call(lambda: m.product.runtime.calls[m.call_id])
            assert (call.phase, call.agent_id) == (Phase.CONNECTED, "1001")
            assert m.agent("1001").state is AgentState.ON_CALL
            m.finish()
            # --- Asterisk's word: the step ran on the caller, the agent heard music -----
            agent_uid = m.legs("1001")[0]["Uniqueid"]
            steps = m.tap("AGIExecStart", lambda e: e.get("Uniqueid") == m.call_id
                          and "identity_pin_enter" in e.get("Command", ""))
            assert steps, m.timeline()
            moh_on = m.first("MusicOnHoldStart", agent_uid)
            moh_off = m.first("MusicOnHoldStop", agent_uid)
            assert moh_on is not None and moh_off is not None, m.timeline()
            keyed = [e for e in m.tap("DTMFEnd") if e.get("Uniqueid") == m.call_id
                     and e.get("Direction") == "Received"]
            assert PIN in "".join(e["Digit"] for e in keyed), keyed
            assert ts(moh_on) < ts(keyed[0]) and ts(keyed[-1]) < ts(moh_off)
            sent_to_agent = [e for e in m.tap("DTMFBegin") + m.tap("DTMFEnd")
                             if e.get("Uniqueid") == agent_uid and e.get("Direction") == "Sent"]
            assert sent_to_agent == [], sent_to_agent
            # the caller never left the bridge before hanging up
            left = m.first("BridgeLeave", m.call_id)
            hung = m.first("HangupRequest", m.call_id)
            assert left is None or hung is None or ts(left) >= ts(hung), m.timeline()
            m.notes["pin_step_s"] = f"{ts(moh_off) - ts(moh_on):.2f}"
            # --- the record and the audit ----------------------------------------------
            m.check_record(outcome="answered", ending="caller_released",
                           released_by="caller", offers=[("1001", "answered")],
                           agent_id="1001")
            events = [(e.kind, e.payload.get("status"), e.payload.get("midcall"))
                      for e in m.product.store.read(repo.read_events, uniqueid=m.call_id)
                      if e.kind.startswith("identity")]
            assert events == [("identity_pin", "verified:pin", True)], events
            audit = m.product.store.read(repo.audit_entries, action="identity.pin_midcall")
            assert [(a.actor, a.target, a.detail["status"], a.detail["customer_id"])
                    for a in audit] == [("1001", f"call:{m.call_id}", "verified:pin",
                                         customer_id)]
            # the step's interval is Asterisk's: the caller's leg Hold .. Unhold (the bridge
            # holds the agent while the PIN AGI runs on the caller)
            held, unheld = m.first("Hold", m.call_id), m.first("Unhold", m.call_id)
            assert held is not None and unheld is not None, m.timeline()
            step = audit[0].detail
            m.deltas["pin_start"] = step["pin_started"] - ts(held)
            m.deltas["pin_s"] = step["pin_s"] - (ts(unheld) - ts(held))
            assert abs(m.deltas["pin_start"]) <= 0.2 and abs(m.deltas["pin_s"]) <= 0.2
            # the PIN step is not talk (docs/kpi.md): the agent's and the queue's talk are
            # the agent leg's time up minus the step
            ast_talk = m.asterisk_end(agent_uid, False) - m.up(agent_uid) \
                - (ts(unheld) - ts(held))
            now = datetime.now(UTC)
            period = Period(now - timedelta(hours=1), now + timedelta(minutes=1))
            facts, spans = load_facts(m.product.store, period)
            rules = KpiRules.from_policy(m.product.service.policy)
            queue = kpi.queue_kpis(facts, lambda q: rules, now, spans)["main"]
            mine = kpi.agent_kpis(facts, spans, lambda q: rules, period, now)["1001"]
            m.deltas["talk[queue]"] = queue.talk_s - ast_talk
            m.deltas["talk[1001]"] = mine.talk_s - ast_talk
            assert abs(m.deltas["talk[queue]"]) <= 0.2 and abs(m.deltas["talk[1001]"]) <= 0.2
            assert (queue.handled, mine.handled, queue.hold_s) == (1, 1, 0.0)
            m.check_agent("1001", AgentState.ACW)
            desk.check_schema()  # every frame the desktop got is as documented
        finally:
            desk.close()
        frames = json.dumps([f for _, f in desk.frames], ensure_ascii=False)
    # --- the digits are nowhere ----------------------------------------------------------
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) > 100
    assert not [line for line in logged if PIN in line]
    assert "verified:pin" in frames and PIN not in frames
    # the engine's state (database, journal) is tmp_path; the caller's own script is not
    assert not [f for f in leaks(tmp_path, (PIN,)) if "sipp-caller" not in f]
    assert not leaks(m.pbx.workdir, (PIN,))


@pytest.mark.std("STD-077")
def test_caller_hangs_up_during_the_mid_call_pin_step(
        matrix: Callable[..., Any], tmp_path: Path) -> None:
    with matrix(policy_of(SHORT_OPENING, POLICY), ["1001"]) as m:
        customer_with_pin(m)
        m.phones(("1001", "uas_answer.xml", 500, ()))
        m.log_in("1001")
        desk = LiveDesk(m.product, "1001")
        try:
            script = pin_caller(tmp_path / "sipp-caller", [], bye_at=ASK_AT + 2.5)
            answered = start_caller(m, script)
            wait_state(m, "1001", AgentState.ON_CALL)
            asked = ask_at(desk, answered + ASK_AT)
            assert asked["type"] == "ack", asked
            m.finish()
            assert m.tap("AGIExecStart", lambda e: e.get("Uniqueid") == m.call_id
                         and "identity_pin_enter" in e.get("Command", "")), m.timeline()
            m.check_record(outcome="answered", ending="caller_released",
                           released_by="caller", offers=[("1001", "answered")],
                           agent_id="1001")
            events = [(e.kind, e.payload.get("status"), e.payload.get("hung_up"))
                      for e in m.product.store.read(repo.read_events, uniqueid=m.call_id)
                      if e.kind.startswith("identity")]
            assert events == [("identity_pin", "unverified", True)], events
            wait_state(m, "1001", AgentState.ACW)
        finally:
            desk.close()
