"""Issue 4 on a real Asterisk: ring-count answering, RONA, waiting with announcements and
the callback offer, the apology flag, named agents, the holiday opening.

Each test reads like the standard it proves; every number comes from the Policy.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dtmf import keys_scenario
from product import Product, running_product
from wsclient import EventStream

from callflow.agents.state import AgentState, LogIn
from callflow.engine import waiting
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy, parse_policy, ring_limit_seconds
from callflow.outbound.feature import OutboundFeature
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

CALLER = "13700000042"
AGI_START_S = 0.5  # from the caller's INVITE to our flow's first command (Answer, AGI connect)


def log_in(product: Product, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        product.call(lambda a=agent_id: product.runtime.agent_event(a, LogIn()))


def agi_commands(pbx: PbxHandle, since: float, call_id: str) -> list[dict[str, Any]]:
    return [e for e in pbx.tap.events_since(since, "AGIExecStart") if e["Uniqueid"] == call_id]


def stream(product: Product, topics: str = "board,alarms") -> EventStream:
    return EventStream(product.settings.ports.api, product.settings.api_token, topics)


def ended(product: Product, call_id: str) -> bool:
    call = product.runtime.calls.get(call_id)
    return call is not None and call.phase is Phase.ENDED


@pytest.mark.std("STD-008", "STD-099")
def test_no_answer_in_three_rings_moves_the_call_and_sets_the_agent_not_ready(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """STD-008: 3 rings (15 s at cn cadence) unanswered -> next agent; RONA -> not-ready
    (ring-no-answer) with an alarm; the board receives both changes."""
    policy = Policy.defaults()
    limit = ring_limit_seconds(policy)
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001", "1002"]) as product:
        first_phone = sipp.softphone("1001", "uas_noanswer.xml", wait=False)
        second_phone = sipp.softphone("1002", "uas_answer.xml", ring_ms=1000, wait=False)
        sipp.wait_ready(first_phone, second_phone)
        log_in(product, "1001", "1002")  # 1001 idles longest: offered first
        board = stream(product)
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", "uac_call.xml", talk_ms=int(limit * 1000) + 12000)
        first = asterisk.tap.wait_event("DialBegin", 5, since=t0)
        assert first["DestChannel"].startswith("PJSIP/agent1001-")
        call_id = first["Uniqueid"]
        timeout = asterisk.tap.wait_event("DialEnd", limit + 5, since=t0,
                                          DestUniqueid=first["DestUniqueid"])
        assert timeout["DialStatus"] == "NOANSWER"
        rang = float(timeout["Timestamp"]) - float(first["Timestamp"])
        assert rang == pytest.approx(limit, abs=0.5), rang
        second_offer = asterisk.tap.wait_event(
            lambda e: e.get("Event") == "DialBegin" and e["Uniqueid"] == call_id
            and e["DestChannel"].startswith("PJSIP/agent1002-"), 10, t0)
        assert float(second_offer["Timestamp"]) - float(timeout["Timestamp"]) < 1.0
        rona = board.wait(lambda f: f.get("payload", {}).get("agent_id") == "1001"
                          and f["payload"].get("state") == "not_ready", 5,
                          "agent 1001 not-ready on the board")
        assert rona["payload"]["reason"] == "ring_no_answer"
        board.wait(lambda f: f.get("topic") == "alarms"
                   and f["payload"].get("std") == "STD-008", 5, "the RONA alarm")
        board.wait(lambda f: f.get("payload", {}).get("agent_id") == "1002"
                   and f["payload"].get("state") == "on_call", 10, "agent 1002 on call")
        assert caller.wait(60) == 0, caller.diagnostics()
        product.wait_for(lambda: ended(product, call_id), 10, "the call to end")
        product.flush()
        offers = product.store.read(repo.offers_for_call, call_id)
        assert [(o.agent_id, o.result) for o in offers] == [("1001", "no_answer"),
                                                           ("1002", "answered")]
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.answer_ring == 1 and call.agent_id == "1002"
        assert call.late  # 15 s ringing + the second offer: past the apology threshold
        state = product.call(lambda: product.runtime.agents["1001"])
        assert state.state is AgentState.NOT_READY and state.ring_no_answer_count == 1
        board.close()
        print(f"RONA after {rang:.3f}s (limit {limit:g}s)")


def timeline(pbx: PbxHandle, since: float) -> str:
    events = [e for e in pbx.tap.events_since(since)
              if e["Event"] in ("AGIExecStart", "AGIExecEnd", "DTMFEnd", "Newchannel")]
    t0 = float(events[0]["Timestamp"]) if events else 0.0
    return "\n" + "\n".join(
        f"{float(e['Timestamp']) - t0:7.3f} {e['Event']} {e.get('Command', '')[-60:]}"
        f"{e.get('Digit', '')}{e.get('Result', '')[:40]}" for e in events)


def prompt_seconds(product: Product, name: str, **params: str) -> float:
    wav = Path(str(product.service.prompts.path(name, **params)) + ".wav")
    return (wav.stat().st_size - 44) / 16000  # 8 kHz, 16-bit mono


@pytest.mark.std("STD-047", "STD-044")
def test_waiting_caller_hears_announcements_then_chooses_a_callback(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """STD-047/STD-043: no agent free -> an announcement every interval, the callback offer
    at the threshold; DTMF 2 -> the number is confirmed (1) -> callback task stored, the
    call ends politely and counts as a callback, not an abandon."""
    policy = parse_policy({"waiting": {"announcement_interval_s": 3, "callback_offer_s": 12}})
    interval = policy.waiting.announcement_interval_s
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001"]) as product:
        lengths = {waiting.WaitAction.ANNOUNCE: prompt_seconds(product, "wait_progress"),
                   waiting.WaitAction.OFFER_CALLBACK: prompt_seconds(product, "callback_offer")}
        plan = waiting.start_waiting(0.0, 0.0)  # when the offer starts, by the core's own plan
        while (step := waiting.next_step(plan, policy)).action is waiting.WaitAction.ANNOUNCE:
            plan = waiting.heard(plan, step, step.at + lengths[step.action])
        press_2 = AGI_START_S + step.at + lengths[step.action] + 0.5
        press_1 = press_2 + 2.0  # during the confirmation of the caller's number
        scenario = keys_scenario(tmp_path / "callback.xml", [(press_2, "2"), (press_1, "1")])
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", str(scenario), caller_id=CALLER, timeout_s=90)
        start = asterisk.tap.wait_event("AGIExecStart", 5, since=t0)
        try:
            assert caller.wait(60) == 0, caller.diagnostics()
        except AssertionError as exc:
            raise AssertionError(f"{exc}{timeline(asterisk, t0)}") from None
        call_id = start["Uniqueid"]
        commands = agi_commands(asterisk, t0, call_id)
        plays = [e for e in commands if "wait_progress-" in e["Command"]]
        assert len(plays) == 2
        ends = {e["CommandId"]: e for e in asterisk.tap.events_since(t0, "AGIExecEnd")}
        gaps = [float(plays[0]["Timestamp"]) - float(start["Timestamp"])]
        gaps.append(float(plays[1]["Timestamp"]) - float(ends[plays[0]["CommandId"]]["Timestamp"]))
        assert gaps == [pytest.approx(interval, abs=0.5)] * 2, gaps
        offers = [e for e in commands if "callback_offer-" in e["Command"]]
        confirms = [e for e in commands if "callback_confirm-" in e["Command"]]
        assert len(offers) == 1 and len(confirms) == 1
        assert any("callback_done-" in e["Command"] for e in commands)
        product.wait_for(lambda: ended(product, call_id), 10, "the call to end")
        product.flush()
        tasks = product.store.read(repo.list_open_tasks)
        assert [(t.kind, t.number, t.owner_agent_id) for t in tasks] == [
            ("callback", CALLER, None)]
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.outcome == "callback" and call.released_by == "system"
        print("announcement gaps", [round(g, 2) for g in gaps])


@pytest.mark.std("STD-009")
def test_a_caller_who_waited_past_the_threshold_gets_the_apology_opening(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """STD-009: total wait beyond the apology threshold -> the agent's desktop is told to
    open with the apology; the call record says so."""
    policy = parse_policy({"answering": {"apology_after_rings": 1}})
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001"]) as product:
        sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
        desktop = stream(product, "agent:1001")
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", "uac_call.xml", talk_ms=20000)
        start = asterisk.tap.wait_event("AGIExecStart", 5, since=t0)
        time.sleep(policy.ring_cycle_s + 1)  # nobody ready: the caller waits past one ring
        log_in(product, "1001")
        frame = desktop.wait(lambda f: f.get("payload", {}).get("type") == "call"
                             and f["payload"]["call"].get("phase") == "connected", 15,
                             "the connected call on agent 1001's desktop")
        assert frame["payload"]["call"]["greeting"] == "apology"
        assert frame["payload"]["call"]["caller_number"] == "13800000000"
        assert caller.wait(60) == 0, caller.diagnostics()
        product.wait_for(lambda: ended(product, start["Uniqueid"]), 10, "the call to end")
        product.flush()
        call = product.store.read(repo.get_call, start["Uniqueid"])
        assert call is not None and call.greeting == "apology" and call.late
        desktop.close()


@pytest.mark.std("STD-053", "STD-071", "STD-072")
def test_named_agent_busy_leaves_a_callback_for_that_agent(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """STD-071/STD-072: the caller keys in agent 1001's work number; 1001 is not free ->
    the busy script, choice 3 -> number confirmed -> a callback task owned by 1001."""
    policy = parse_policy({"routing": {"named_agent_dids": ["200"]}})
    # the dialer's task feed tells the desktop, once, with the task's id (issue 13)
    options = ServiceOptions(features=[OutboundFeature(tick_s=0.2)])
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001", "1002"],
                         options) as product:
        ask = prompt_seconds(product, "named_agent_ask")
        busy = prompt_seconds(product, "named_agent_busy")
        choice = prompt_seconds(product, "named_agent_choice")
        press_3 = ask + 1.0 + 2.5 + busy + choice + 1.0
        scenario = keys_scenario(tmp_path / "named.xml",
                                 [(ask + 1.0, "1001#"), (press_3, "3"), (press_3 + 3.0, "1")])
        desktop = stream(product, "agent:1001")
        t0 = asterisk.tap.mark()
        caller = sipp.caller("200", str(scenario), caller_id=CALLER, timeout_s=90)
        assert caller.wait(60) == 0, caller.diagnostics()
        call_id = asterisk.tap.wait_event("AGIExecStart", 5, since=t0)["Uniqueid"]
        commands = [e["Command"] for e in agi_commands(asterisk, t0, call_id)]
        assert any("named_agent_busy-" in c for c in commands)
        task = desktop.wait(lambda f: f.get("payload", {}).get("type") == "task", 10,
                            "the callback task on agent 1001's desktop")
        assert task["payload"]["task"]["kind"] == "named_agent"
        assert task["payload"]["change"] == "created" and task["payload"]["task"]["id"]
        product.flush()
        tasks = product.store.read(repo.list_open_tasks)
        assert [(t.kind, t.number, t.owner_agent_id) for t in tasks] == [
            ("named_agent", CALLER, "1001")]
        desktop.close()
        # KPI definitions: the wait (t_in) starts when the caller leaves the menu, i.e. when
        # Asterisk ends the last work-number question (its AGIExecEnd), not at the answer
        product.wait_for(lambda: ended(product, call_id), 30, "the call to end")
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.menu and call.routed_at is not None
        asks = [e for e in asterisk.tap.events_since(t0, "AGIExecEnd")
                if e["Uniqueid"] == call_id and "named_agent_ask" in e.get("Command", "")]
        assert asks, "Asterisk's end of the work-number question"
        menu_end = float(asks[-1]["Timestamp"])
        routed = call.routed_at.timestamp()
        assert routed == pytest.approx(menu_end, abs=0.5)
        assert routed - call.entered_at.timestamp() >= ask  # the menu is not waiting time
        print(f"\nmenu {routed - call.entered_at.timestamp():.3f} s; routed_at - Asterisk's "
              f"menu end {routed - menu_end:+.3f} s")


@pytest.mark.std("STD-017")
def test_on_a_configured_holiday_the_holiday_opening_is_played(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """STD-017: the holiday wish replaces the opening on its date."""
    today = datetime.datetime.now(datetime.UTC).astimezone(
        datetime.timezone(datetime.timedelta(hours=8))).strftime("%m-%d")
    policy = parse_policy({"calendar": {"timezone": "Asia/Shanghai"}, "greetings": {
        "holiday_greetings": [{"on": today, "greeting": "新年好,请问有什么可帮您?",
                               "greeting_en": "Happy New Year, how may I help you?"}]}})
    with running_product(asterisk, asterisk_root, tmp_path, policy, ["1001"]) as product:
        sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
        log_in(product, "1001")
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", "uac_call.xml", talk_ms=8000)
        assert caller.wait(60) == 0, caller.diagnostics()
        call_id = asterisk.tap.wait_event("DialBegin", 5, since=t0)["Uniqueid"]
        dial = next(e["Command"] for e in agi_commands(asterisk, t0, call_id)
                    if e["Command"].startswith("EXEC Dial"))
        assert "opening_holiday-" in dial
        product.wait_for(lambda: ended(product, call_id), 10, "the call to end")
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.greeting == "holiday"


def test_engine_gone_mid_flow_the_caller_still_reaches_an_agent(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """Design "Who routes calls": the FastAGI session dies while the caller waits (no
    agent logged in with the engine) -> the dialplan's Queue() over all agents takes it."""
    with running_product(asterisk, asterisk_root, tmp_path, Policy.defaults(),
                         ["1001"]) as product:
        sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
        t0 = asterisk.tap.mark()
        caller = sipp.caller("100", "uac_call.xml", talk_ms=12000)
        asterisk.tap.wait_event("AGIExecStart", 5, since=t0, Command="SET MUSIC ON default")
        assert product.service.agi is not None
        product.run(product.service.agi.stop())  # the engine goes away mid-flow
        joined = asterisk.tap.wait_event("QueueCallerJoin", 5, since=t0)
        connected = asterisk.tap.wait_event("AgentConnect", 10, since=t0)
        assert connected["Interface"] == "PJSIP/agent1001"
        assert float(connected["Timestamp"]) - float(joined["Timestamp"]) < 5
        assert caller.wait(30) == 0, caller.diagnostics()
