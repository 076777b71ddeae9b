"""Outbound calls on the real Asterisk with SIPp (STD-081, STD-069, STD-082..085, STD-090).

The product runs with the outbound feature; agents' softphones and the customer are
SIPp UASs. Each test puts a task in (REST or the feature's own function, as the
inbound flow does), and the dialer does the rest: the agent's softphone rings first,
then the customer's, for six rings at the Policy's cadence.

- six unanswered rings = 30.0 s at cn cadence, measured where it counts: at the
  customer's phone, from the INVITE it answers with 180 Ringing to the CANCEL;
- the conversion follows the country: us cadence, 2 rings = 12.0 s (6 s a ring);
- an answer on ring 3 is bridged with the agent, the task done;
- busy (486) is retried per rule;
- a dropped-call callback reaches its agent's desktop over the websocket and is
  dialled to that agent first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from product import Product, make_roster, make_settings
from websockets.sync.client import connect

from callflow.agents.state import AgentState, LogIn
from callflow.engine import outbound
from callflow.engine.policy import Policy
from callflow.outbound.feature import OutboundFeature
from callflow.service import ServiceOptions
from callflow.store import repo
from callflow.store.models import CallbackTask

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl, SippRun

AGENTS = ["1001", "1002"]
CUSTOMER = "13900000001"
CENTRE = "4008001234"
TOLERANCE_S = 0.5  # brief2: Asterisk-timed values on a shared 2-core machine


def live_policy(**overrides: Any) -> Policy:
    """Calls allowed all day, every day (the suite runs at any hour); short ACW."""
    outbound_fields = {"calling_window_start": "00:00", "calling_window_end": "23:59",
                       "calling_days": "all_but_holidays", "caller_id": CENTRE,
                       # these tests drive the dialer, not the desktop: no wrap-up form
                       # (STD-092; test_campaigns_live.py submits it as an agent would)
                       "wrapup_required": False,
                       **overrides.pop("outbound", {})}
    return Policy.model_validate({"outbound": outbound_fields, "agents": {"acw_limit_s": 3},
                                  **overrides})


def start_product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path,
                  policy: Policy) -> tuple[Product, OutboundFeature]:
    feature = OutboundFeature(tick_s=0.2)
    product = Product(make_settings(tmp_path, asterisk, asterisk_root), policy,
                      make_roster(AGENTS, asterisk.agent_port),
                      ServiceOptions(features=[feature]))
    product.start()
    return product, feature


@pytest.fixture
def cn(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path
       ) -> Iterator[tuple[Product, OutboundFeature]]:
    running = start_product(asterisk, asterisk_root, tmp_path, live_policy())
    try:
        yield running
    finally:
        running[0].stop()


def softphone(sipp: SippControl, asterisk: PbxHandle, ext: str, ring_ms: int = 300,
              wait: bool = True) -> SippRun:
    port = asterisk.agent_port(ext)
    run = sipp.start(f"agent{ext}", "uas_answer.xml", port, "-aa", "-d", ring_ms)
    run.aor = f"agent{ext}"
    if wait:
        sipp.wait_ready(run)
    return run


def customer(sipp: SippControl, asterisk: PbxHandle, scenario: str,
             ring_ms: int = 0) -> SippRun:
    return sipp.start("customer", scenario, sipp.customer_port, "-aa", "-d", ring_ms)


def customer_dialled(asterisk: PbxHandle, since: float, timeout: float) -> dict[str, str]:
    """The dialplan's DialBegin from the agent's leg to the customer (the Originate's own
    DialBegin to the agent has no calling channel)."""
    return asterisk.tap.wait_event(
        lambda e: e["Event"] == "DialBegin" and e.get("Uniqueid", "").startswith("cfo-")
        and e["DestChannel"].startswith("PJSIP/customer-"), timeout, since)


def log_in(product: Product, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        product.call(lambda a=agent_id: product.runtime.agent_event(a, LogIn()))


def add_task(product: Product, feature: OutboundFeature, kind: str = "manual",
             owner: str | None = None, number: str = CUSTOMER) -> CallbackTask:
    task, created = product.run(feature.add_task(kind, number, owner_agent_id=owner))
    assert created
    return task


def read_task(product: Product, task_id: int) -> CallbackTask:
    task = product.store.read(repo.get_task, task_id)
    assert task is not None
    return task


def wait_task(product: Product, task_id: int, what: str, timeout: float,
              done: Any) -> CallbackTask:
    deadline = time.monotonic() + timeout
    while not done(task := read_task(product, task_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: "
                                 f"{task.status} {task.last_outcome} {task.attempts}")
        time.sleep(0.1)
    return task


def history(product: Product, task_id: int) -> list[tuple[str, int | None, str | None]]:
    return [(a.outcome, a.hangup_cause, a.agent_id)
            for a in product.store.read(repo.task_attempts, task_id)]


def ticks(run: SippRun, label: str) -> list[int]:
    """SIPp clock ticks (ms) of ``[clock_tick] <label>`` log lines (tests/sipp/*.xml)."""
    return [int(m.group(1)) for m in re.finditer(rf"^(\d+) {label}\b", run.log(), re.M)]


def wait_log(run: SippRun, label: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not (found := ticks(run, label)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {label} in {run.name}'s log after {timeout}s\n"
                                 f"{run.diagnostics()}")
        time.sleep(0.1)
    return found[0]


def measure_rings(asterisk: PbxHandle, sipp: SippControl, product: Product,
                  feature: OutboundFeature) -> tuple[float, CallbackTask, dict[str, str]]:
    """One unanswered attempt: seconds the customer's phone rang, the task, its DialBegin."""
    softphone(sipp, asterisk, "1001")
    callee = customer(sipp, asterisk, "uas_noanswer.xml")
    log_in(product, "1001")
    t0 = asterisk.tap.mark()
    task = add_task(product, feature)
    limit = outbound.customer_ring_seconds(product.service.policy)
    invite = wait_log(callee, "INVITE", 15)
    cancel = wait_log(callee, "CANCEL", limit + 10)
    begin = customer_dialled(asterisk, t0, 5)
    return (cancel - invite) / 1000, task, begin


@pytest.mark.std("STD-081")
def test_six_unanswered_rings_hang_up_after_30_s_at_cn_cadence(
        asterisk: PbxHandle, sipp: SippControl, cn: tuple[Product, OutboundFeature]) -> None:
    product, feature = cn
    policy = product.service.policy
    rang, task, begin = measure_rings(asterisk, sipp, product, feature)
    print(f"\ncn: the customer's phone rang {rang:.3f} s (INVITE/180 -> CANCEL at SIPp), "
          f"limit {outbound.customer_ring_seconds(policy):g} s = "
          f"{policy.outbound.no_answer_rings} rings x {policy.ring_cycle_s:g} s")
    assert outbound.customer_ring_seconds(policy) == 30.0
    assert rang == pytest.approx(30.0, abs=TOLERANCE_S)
    # agent-first: the agent's softphone was dialled and the dialplan rang the customer
    assert begin["Uniqueid"].startswith(f"cfo-{task.id}-1-")
    assert begin["DestChannel"].startswith("PJSIP/customer-")
    assert begin["DestConnectedLineNum"] == CENTRE  # the centre's number is presented
    after = wait_task(product, task.id, "the no-answer to be recorded", 10,
                      lambda t: t.status == "pending" and t.attempts == 1)
    assert after.last_outcome == "no_answer"
    [(outcome, cause, agent)] = history(product, task.id)
    assert (outcome, agent) == ("no_answer", "1001")
    print(f"attempt recorded: {outcome}, hang-up cause of the customer leg {cause}")
    spacing = timedelta(minutes=policy.outbound.retry_spacing_min)
    assert abs((after.due_at - datetime.now().astimezone()) - spacing) < timedelta(seconds=30)
    product.flush()
    call = product.store.read(repo.get_call, begin["Uniqueid"])
    assert call is not None
    assert (call.direction, call.outcome, call.released_by, call.agent_id) == (
        "outbound", "no_answer", "system", "1001")
    assert call.ring_started_at is not None and call.ended_at is not None
    assert (call.ended_at - call.ring_started_at).total_seconds() == pytest.approx(
        30.0, abs=TOLERANCE_S)
    state = product.call(lambda: product.runtime.agents["1001"].state)
    assert state is AgentState.ACW  # wrap-up after the attempt (STD-092)


def test_the_ring_limit_follows_the_us_cadence(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """6 s a ring in the us cadence; 2 rings (12 s, not cn's 10 s) keep the suite short."""
    policy = live_policy(country="us", outbound={"no_answer_rings": 2})
    product, feature = start_product(asterisk, asterisk_root, tmp_path, policy)
    try:
        rang, task, _ = measure_rings(asterisk, sipp, product, feature)
        print(f"\nus: 2 rings x {policy.ring_cycle_s:g} s -> the customer's phone rang "
              f"{rang:.3f} s")
        assert outbound.customer_ring_seconds(policy) == 12.0
        assert rang == pytest.approx(12.0, abs=TOLERANCE_S)
        wait_task(product, task.id, "the no-answer", 10, lambda t: t.last_outcome == "no_answer")
    finally:
        product.stop()


def test_answer_on_ring_three_is_bridged_with_the_agent_and_the_task_done(
        asterisk: PbxHandle, sipp: SippControl, cn: tuple[Product, OutboundFeature]) -> None:
    product = cn[0]
    policy = product.service.policy
    ring_ms = 12000  # the 3rd ring at 5 s a ring
    softphone(sipp, asterisk, "1001")
    callee = customer(sipp, asterisk, "uas_answer_bye.xml", ring_ms=ring_ms)  # talks 2 s
    log_in(product, "1001")
    t0 = asterisk.tap.mark()
    # a supervisor puts the task in over REST
    api = f"http://127.0.0.1:{product.settings.ports.api}/api/v1/tasks"
    boss = {"Authorization": f"Bearer {product.settings.api_token}"}
    reply = httpx.post(api, json={"number": "139 0000 0001", "note": "promised a call back"},
                       headers=boss)
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["task"]["id"]
    begin = customer_dialled(asterisk, t0, 15)
    attempt = begin["Uniqueid"]
    end = asterisk.tap.wait_event("DialEnd", ring_ms / 1000 + 5, since=t0, Uniqueid=attempt)
    assert end["DialStatus"] == "ANSWER"
    legs = {attempt, begin["DestUniqueid"]}
    bridged = [asterisk.tap.wait_event("BridgeEnter", 5, since=t0, Uniqueid=uid) for uid in legs]
    assert len({e["BridgeUniqueid"] for e in bridged}) == 1  # agent and customer together
    done = wait_task(product, task_id, "the task to be done", 5, lambda t: t.status == "done")
    assert (done.attempts, done.last_outcome) == (1, "answered")
    assert product.call(lambda: product.runtime.agents["1001"].state) is AgentState.ON_CALL
    assert wait_log(callee, "ANSWERED", 1) - wait_log(callee, "INVITE", 1) >= ring_ms
    wait_log(callee, "BYE", 10)  # the customer hangs up after talking
    product.wait_for(lambda: product.runtime.agents["1001"].state is AgentState.ACW, 5,
                     "the agent's wrap-up")
    product.flush()
    call = product.store.read(repo.get_call, attempt)
    assert call is not None and call.answered_at is not None and call.ring_started_at is not None
    assert (call.direction, call.outcome, call.released_by) == ("outbound", "answered", "caller")
    rang = (call.answered_at - call.ring_started_at).total_seconds()
    assert policy.seconds_to_rings(rang) == 3
    print(f"\nanswered after {rang:.2f} s of ringing = ring {policy.seconds_to_rings(rang)}")
    listed = httpx.get(f"{api}/{task_id}", headers=boss).json()
    assert [a["outcome"] for a in listed["attempts"]] == ["answered"]


def test_a_busy_customer_is_retried_per_rule(
        asterisk: PbxHandle, sipp: SippControl, cn: tuple[Product, OutboundFeature]) -> None:
    product, feature = cn
    softphone(sipp, asterisk, "1001")
    customer(sipp, asterisk, "uas_busy.xml")
    log_in(product, "1001")
    task = add_task(product, feature, kind="callback")
    after = wait_task(product, task.id, "the busy attempt", 15,
                      lambda t: t.attempts == 1 and t.status == "pending")
    assert after.last_outcome == "busy"
    assert history(product, task.id) == [("busy", 17, "1001")]
    spacing = timedelta(minutes=product.service.policy.outbound.retry_spacing_min)
    assert abs((after.due_at - datetime.now().astimezone()) - spacing) < timedelta(seconds=30)


def test_a_dropped_call_callback_reaches_its_agent_first_and_connects(
        asterisk: PbxHandle, sipp: SippControl, cn: tuple[Product, OutboundFeature]) -> None:
    product, feature = cn
    phones = [softphone(sipp, asterisk, ext, wait=False) for ext in AGENTS]
    sipp.wait_ready(*phones)
    customer(sipp, asterisk, "uas_answer.xml", ring_ms=1000)
    log_in(product, "1001", "1002")  # 1001 has been idle longer
    token = product.session("1002", "agent", "1002")
    url = f"ws://127.0.0.1:{product.settings.ports.api}/ws/events"
    with connect(url, open_timeout=5) as desktop:
        desktop.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(desktop.recv(5))["type"] == "snapshot"
        t0 = asterisk.tap.mark()
        # what the inbound flow does when the caller's line drops mid-talk (STD-069)
        task = add_task(product, feature, kind="dropped_call", owner="1002")
        pushed = next(m for m in _frames(desktop, 5)
                      if m["payload"].get("type") == "task")
        assert pushed["topic"] == "agent:1002"
        assert (pushed["payload"]["task"]["id"], pushed["payload"]["task"]["kind"]) == (
            task.id, "dropped_call")
        begin = customer_dialled(asterisk, t0, 10)
        assert begin["Channel"].startswith("PJSIP/agent1002-")  # the same agent, not 1001
        done = wait_task(product, task.id, "the callback to connect", 10,
                         lambda t: t.status == "done")
        assert done.last_outcome == "answered"
        asterisk.tap.action(Action="Hangup", Channel=begin["DestChannel"])
    assert product.call(lambda: product.runtime.agents["1001"].state) is AgentState.READY


def _frames(ws: Any, timeout: float) -> Iterator[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))
        if frame["type"] == "event":
            yield frame
    raise AssertionError("no task frame on the desktop's websocket")


@pytest.mark.std("STD-069")
def test_a_real_inbound_drop_is_called_back_by_the_same_agent_end_to_end(
        asterisk: PbxHandle, sipp: SippControl, cn: tuple[Product, OutboundFeature]) -> None:
    """STD-069 end to end: agent 1002 takes an inbound call, the caller's line drops
    mid-talk (the gateway's BYE says Q.850 cause 38), a dropped-call task for 1002
    reaches 1002's desktop, and after ACW the dialer rings 1002 first (though 1001 has
    idled longer), then the caller's number, which answers: the task is done."""
    product, _feature = cn
    phones = [softphone(sipp, asterisk, ext, wait=False) for ext in AGENTS]
    sipp.wait_ready(*phones)
    customer(sipp, asterisk, "uas_answer.xml", ring_ms=1000)
    log_in(product, "1002")
    token = product.session("1002", "agent", "1002")
    url = f"ws://127.0.0.1:{product.settings.ports.api}/ws/events"
    with connect(url, open_timeout=5) as desktop:
        desktop.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(desktop.recv(5))["type"] == "snapshot"
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", "uac_call_dropped.xml", caller_id=CUSTOMER,
                             talk_ms=9000)
        assert caller.wait(40) == 0, caller.diagnostics()
        hangup = asterisk.tap.wait_event(
            lambda e: e["Event"] == "Hangup" and e["Channel"].startswith("PJSIP/caller-"),
            5, t0)
        assert hangup["Cause"] == "38"
        log_in(product, "1001")  # free and idle while 1002 is in after-call work
        pushed = next(m for m in _frames(desktop, 10)
                      if m["payload"].get("type") == "task")
        task = pushed["payload"]["task"]
        assert (task["kind"], task["number"], task["owner_agent_id"]) == (
            "dropped_call", CUSTOMER, "1002")
        begin = customer_dialled(asterisk, t0, 30)
        assert begin["Channel"].startswith("PJSIP/agent1002-")  # the same agent, not 1001
        done = wait_task(product, task["id"], "the callback to connect", 15,
                         lambda t: t.status == "done")
        assert done.last_outcome == "answered"
        asterisk.tap.action(Action="Hangup", Channel=begin["DestChannel"])
    product.flush()
    call = product.store.read(repo.get_call, hangup["Uniqueid"])
    assert call is not None and call.agent_id == "1002" and call.hangup_cause == 38


@pytest.mark.std("STD-069")
@pytest.mark.parametrize("callbacks_first", [True, False])
def test_an_agents_own_callback_and_a_waiting_caller_in_the_policys_order(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path,
        callbacks_first: bool) -> None:
    """routing.callbacks_before_inbound: agent 1001 owes a dropped-call callback while an
    inbound caller waits for them. When 1001 becomes ready, Asterisk's first DialBegin to
    1001's phone is the dialer's Originate (on, the default: the callback before any new
    inbound call, STD-069) or the waiting caller's Dial (off), whose task then waits."""
    from callflow.agents.state import RequestState
    from callflow.engine.calls import Phase
    policy = live_policy(routing={"callbacks_before_inbound": callbacks_first})
    product, feature = start_product(asterisk, asterisk_root, tmp_path, policy)
    try:
        softphone(sipp, asterisk, "1001")
        customer(sipp, asterisk, "uas_answer.xml", ring_ms=1000)
        log_in(product, "1001")
        product.call(lambda: product.runtime.agent_event(
            "1001", RequestState(AgentState.NOT_READY, "break")))
        caller = sipp.caller("100", "uac_call.xml", talk_ms=3000, timeout_s=60)

        def waiting_call() -> str | None:  # run on the loop (wait_for, call)
            return next((c.call_id for c in product.runtime.live_calls()
                         if c.phase is Phase.ROUTING), None)

        product.wait_for(lambda: waiting_call() is not None, 15, "the caller waiting")
        call_id = product.call(waiting_call)
        task = add_task(product, feature, kind="dropped_call", owner="1001")
        time.sleep(1.0)  # a few dialer ticks: the task is known as due
        t0 = asterisk.tap.mark()
        product.call(lambda: product.runtime.agent_event("1001", RequestState(AgentState.READY)))
        first = asterisk.tap.wait_event(
            lambda e: e["Event"] == "DialBegin"
            and e.get("DestChannel", "").startswith("PJSIP/agent1001-"), 10, t0)
        from_caller = first.get("Uniqueid") == call_id
        assert from_caller is not callbacks_first, first
        if callbacks_first:
            wait_task(product, task.id, "the callback to connect", 15,
                      lambda t: t.status == "done")
        else:
            assert read_task(product, task.id).status == "pending"
            assert caller.wait(30) == 0, caller.diagnostics()
            # the caller gone and 1001 free again, the callback is dialled
            wait_task(product, task.id, "the callback after the caller", 30,
                      lambda t: t.status == "done")
        print(f"\ncallbacks_before_inbound={callbacks_first}: first offer to 1001 from "
              f"{'the waiting caller' if from_caller else 'the dialer'}")
    finally:
        product.stop()
