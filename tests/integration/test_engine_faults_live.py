"""Issue 14's fault matrix on a real Asterisk, each fault with a busy centre.

At the moment of the fault a caller talks with agent 1001, one is held by agent 1002
(the softphone's own hold), one rings agent 1003 (who will not answer) and one waits
for a free agent. The faults: the engine killed (SIGKILL) or stopped with Ctrl-C and
started again while some of those calls go on and others end; the AMI link cut for
2 s and for 30 s (a proxy the test controls) while the engine runs.

After each, once every caller has hung up: one record per call Asterisk had, none
left open, every end within 0.5 s of Asterisk's own (the caller's first
``HangupRequest``), the answered calls' answers within 0.5 s of the agent leg going
``Up``, no agent on a call, ringing or holding, and the call record's invariants (the
``Product``'s checker) kept. Detection and recovery times are printed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from engine_proc import EngineProcess
from linkproxy import LinkProxy
from product import Product, make_roster, make_settings

from callflow.agents.state import IN_CALL, LogIn
from callflow.cli import default_features
from callflow.engine.policy import Policy
from callflow.service import ServiceOptions
from callflow.settings import Settings
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl, SippRun

pytestmark = pytest.mark.integration
AGENTS = ["1001", "1002", "1003"]
TOLERANCE_S = 0.5
DID = "100"
# each caller's SIPp hangs up this long after its call is answered by Asterisk (at once)
TALK_MS = {"talking": 30_000, "held": 60_000, "ringing": 45_000, "waiting": 50_000}
NUMBERS = {"talking": "13900000201", "held": "13900000202", "ringing": "13900000203",
           "waiting": "13900000204"}
ENGINE_AWAY_S = 22.0  # the engine comes back after the talking caller hung up


@dataclass
class Scene:
    since: float
    callers: dict[str, SippRun]
    uniqueids: dict[str, str]  # role -> the caller channel's Uniqueid
    agent_legs: dict[str, str]  # role -> the answering agent leg's Uniqueid


def busy_scene(pbx: PbxHandle, sipp: SippControl) -> Scene:
    """Talking (1001), held (1002), ringing (1003), waiting; waits on Asterisk's own events,
    so it holds whichever engine routes the calls."""
    tap = pbx.tap
    since = tap.mark()
    callers: dict[str, SippRun] = {}
    uids: dict[str, str] = {}
    legs: dict[str, str] = {}

    def place(role: str) -> str:
        callers[role] = sipp.caller(DID, "uac_call.xml", talk_ms=TALK_MS[role],
                                    caller_id=NUMBERS[role])
        new = tap.wait_event("Newchannel", 10, since=since, CallerIDNum=NUMBERS[role])
        uids[role] = new["Uniqueid"]
        return new["Uniqueid"]

    uid = place("talking")
    begin = tap.wait_event("DialBegin", 15, since=since, Uniqueid=uid)
    tap.wait_event("Newstate", 15, since=since, Uniqueid=begin["DestUniqueid"],
                   ChannelStateDesc="Up")
    legs["talking"] = begin["DestUniqueid"]
    uid = place("held")
    begin = tap.wait_event("DialBegin", 15, since=since, Uniqueid=uid)
    legs["held"] = begin["DestUniqueid"]
    tap.wait_event("Hold", 20, since=since, Uniqueid=begin["DestUniqueid"])
    uid = place("ringing")
    begin = tap.wait_event("DialBegin", 15, since=since, Uniqueid=uid)
    assert begin["DestChannel"].startswith("PJSIP/agent1003-")
    place("waiting")
    time.sleep(1.0)  # in our flow, no agent free
    assert not tap.events_since(since, "DialBegin", Uniqueid=uids["waiting"])
    return Scene(since, callers, uids, legs)


def softphones(sipp: SippControl) -> None:
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1000, wait=False)
    sipp.softphone("1002", "uas_answer_hold35.xml", ring_ms=1000, wait=False)
    third = sipp.softphone("1003", "uas_answer.xml", ring_ms=120_000, wait=False)
    sipp.wait_ready(*[r for r in sipp.runs if r.aor], third)


def product_for(settings: Settings, pbx: PbxHandle) -> Product:
    return Product(settings, Policy.defaults(), make_roster(AGENTS, pbx.agent_port),
                   ServiceOptions(features=default_features()))


def answer_of(pbx: PbxHandle, since: float, uniqueid: str) -> float | None:
    """When an agent first answered the caller ``uniqueid`` (our flow's Dial or the
    fallback queue's): the first agent leg linked to it going Up, by Asterisk's stamp."""
    legs = {e["Uniqueid"] for e in pbx.tap.events_since(since, "Newchannel", Linkedid=uniqueid)
            if e["Channel"].startswith("PJSIP/agent")}
    ups = [float(e["Timestamp"]) for e in pbx.tap.events_since(since, "Newstate")
           if e["Uniqueid"] in legs and e.get("ChannelStateDesc") == "Up"]
    return min(ups) if ups else None


def all_hung_up(scene: Scene) -> None:
    for role, caller in scene.callers.items():
        assert caller.wait(120) == 0, f"{role}: {caller.diagnostics()}"


def check_records(pbx: PbxHandle, product: Product, scene: Scene) -> dict[str, Any]:
    """The records of the scene's calls against Asterisk's stamps; the measured gaps."""
    product.wait_for(lambda: not product.runtime.live_calls(), 20, "every call closed")
    product.flush()
    assert product.store.read(repo.open_calls) == []
    gaps: dict[str, Any] = {}
    for role, uid in scene.uniqueids.items():
        call = product.store.read(repo.get_call, uid)
        assert call is not None, f"{role}: no record of {uid}"
        assert call.ended_at is not None and call.outcome, (role, call.outcome)
        end = call.ended_at.timestamp() - pbx.tap.first_hangup_request(scene.since, uid)
        assert abs(end) <= TOLERANCE_S, (role, end)
        gaps[f"{role} end"] = round(end, 3)
        up = answer_of(pbx, scene.since, uid)
        if up is None:
            assert call.answered_at is None and call.outcome != "answered", (role, call.outcome)
            continue
        assert call.answered_at is not None and call.outcome == "answered", (role, call.outcome)
        answer = call.answered_at.timestamp() - up
        assert abs(answer) <= TOLERANCE_S, (role, answer)
        gaps[f"{role} answer"] = round(answer, 3)
    stuck = product.call(lambda: {a.agent_id: a.state.value for a in
                                  product.runtime.agents.values() if a.state in IN_CALL})
    assert stuck == {}, stuck
    return gaps


@pytest.mark.parametrize("fault", ["sigkill", "ctrl_c"])
def test_the_engine_goes_away_under_load_and_nothing_is_lost(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path,
        fault: str) -> None:
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    softphones(sipp)
    engine = EngineProcess(settings, AGENTS, AGENTS, tmp_path / "engine.log",
                           all_features=True)
    engine.wait_ready()
    scene = busy_scene(asterisk, sipp)
    t_fault = time.monotonic()
    if fault == "sigkill":
        engine.kill()
    else:
        assert engine.interrupt() == 0, engine.log_tail()
    time.sleep(max(0.0, ENGINE_AWAY_S - (time.monotonic() - t_fault)))
    assert scene.callers["talking"].wait(30) == 0  # ended while the engine was away
    assert scene.callers["held"].running  # still on: adopted when the engine is back
    product = product_for(settings, asterisk)
    try:
        t_start = time.monotonic()
        product.start()
        started_s = time.monotonic() - t_start
        report = product.service.recovery.runs[0]
        assert scene.uniqueids["talking"] in report.closed, report
        all_hung_up(scene)
        gaps = check_records(asterisk, product, scene)
        print(f"\n[{fault}] engine back and recovered in {started_s:.2f} s "
              f"(closed {len(report.closed)}, adopted {len(report.adopted)}); {gaps}")
    finally:
        product.stop(check_invariants=True)


@pytest.mark.parametrize("outage_s", [2.0, 30.0])
def test_the_ami_link_goes_down_under_load_and_nothing_is_lost(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path,
        outage_s: float) -> None:
    proxy = LinkProxy(asterisk.ports.ami)
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    settings = settings.with_ports(replace(settings.ports, ami=proxy.port))
    softphones(sipp)
    product = product_for(settings, asterisk)
    try:
        product.start()
        for agent_id in AGENTS:
            product.call(lambda a=agent_id: product.runtime.agent_event(a, LogIn()))
        scene = busy_scene(asterisk, sipp)
        proxy.down()
        t_down = time.monotonic()
        product.wait_for(lambda: not product.runtime.pbx_up, 5, "the link seen down")
        detected_s = time.monotonic() - t_down
        time.sleep(outage_s)
        proxy.up()
        t_up = time.monotonic()
        product.wait_for(lambda: product.runtime.pbx_up, 15, "the link back and resynced")
        recovered_s = time.monotonic() - t_up
        all_hung_up(scene)
        gaps = check_records(asterisk, product, scene)
        print(f"\n[AMI {outage_s:g} s] down seen in {detected_s:.2f} s, back and resynced "
              f"{recovered_s:.2f} s after the link returned; {gaps}")
    finally:
        product.stop(check_invariants=True)
        proxy.close()
