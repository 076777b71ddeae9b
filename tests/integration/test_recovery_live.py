"""Issue 14 on a real Asterisk: calls that ended while the engine could not see them are
closed from Asterisk's own records (CEL), calls still going on are adopted, calls the
fallback queue served while the engine was away are entered with their recordings,
and running the recovery again changes nothing.

The engine that dies is a process of its own (``engine_proc.py``), killed with SIGKILL
mid-conversation: no clean end, its sockets closed by the kernel, its writer's last
records possibly lost, while Asterisk keeps caller and agent talking. The engine that
comes back is the ``Product`` on the same store. Every time is held to Asterisk's own
stamps as the test's AMI connection saw them (the caller's first ``HangupRequest``, the
agent leg's ``Newstate Up``), within ``TOLERANCE_S``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from engine_proc import EngineProcess
from linkproxy import LinkProxy
from product import Product, make_roster, make_settings

from callflow.agents.state import LogIn
from callflow.desktop.feature import AgentDesktop
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy
from callflow.recovery import RecoveryReport
from callflow.service import ServiceOptions
from callflow.settings import Settings
from callflow.store import repo
from callflow.store.models import Call, CallOffer, Recording

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

TOLERANCE_S = 0.5  # the brief's bound; measured 0.000-0.004 s
DID = "100"


def product_for(settings: Settings, pbx: PbxHandle, agent_ids: list[str]) -> Product:
    return Product(settings, Policy.defaults(), make_roster(agent_ids, pbx.agent_port),
                   ServiceOptions(features=[AgentDesktop()]))


def dead_engine(settings: Settings, agent_ids: list[str], tmp: Path) -> EngineProcess:
    engine = EngineProcess(settings, agent_ids, agent_ids, tmp / "engine.log")
    engine.wait_ready()
    return engine


def answered_call(pbx: PbxHandle, sipp: SippControl, since: float, talk_ms: int
                  ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A caller of DID 100 whom our flow puts through to the agent; (caller, DialBegin,
    the agent leg's Newstate Up)."""
    caller = sipp.caller(DID, "uac_call.xml", talk_ms=talk_ms)
    begin = pbx.tap.wait_event("DialBegin", 10, since=since)
    up = pbx.tap.wait_event("Newstate", 10, since=since, Uniqueid=begin["DestUniqueid"],
                            ChannelStateDesc="Up")
    return caller, begin, up


def snapshot(product: Product) -> list[tuple[Any, ...]]:
    """Every call, offer and recording column the recovery could change."""
    def read(s: Any) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for model in (Call, CallOffer, Recording):
            for row in s.query(model).order_by(model.id):
                out.append(tuple(getattr(row, c.key) for c in model.__table__.columns
                                 if c.key not in ("updated_at", "created_at")))
        return out
    product.flush()
    return product.store.read(read)


def recover_again(product: Product) -> RecoveryReport:
    """(d) The recovery once more, as the next AMI resync would run it."""
    before = snapshot(product)
    report: RecoveryReport = product.run(product.service.recovery.run())
    assert not report.changed, report
    assert snapshot(product) == before
    return report


def no_open_calls(product: Product) -> None:
    product.flush()
    assert product.store.read(repo.open_calls) == []


def test_a_call_that_ended_while_the_engine_was_dead_is_closed_from_asterisks_records(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """(a) The engine dies mid-conversation; the caller hangs up while it is away; the
    engine comes back: the call is closed answered, released by the caller, with
    Asterisk's answer and end (and again: (d) nothing changes)."""
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    sipp.softphone("1001", "uas_answer.xml", ring_ms=800)
    engine = dead_engine(settings, ["1001"], tmp_path)
    t0 = asterisk.tap.mark()
    caller, begin, up = answered_call(asterisk, sipp, t0, talk_ms=6000)
    call_id = begin["Uniqueid"]
    time.sleep(0.5)
    engine.kill()
    assert caller.wait(30) == 0, caller.diagnostics()
    ended = asterisk.tap.first_hangup_request(t0, call_id, begin["DestUniqueid"])
    product = product_for(settings, asterisk, ["1001"])
    try:
        product.start()
        report = product.service.recovery.runs[0]
        assert report.closed == [call_id] and not report.incomplete, report
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.ended_at is not None and call.answered_at is not None
        assert (call.outcome, call.released_by, call.ending) == (
            "answered", "caller", "caller_released")
        assert call.incomplete_reason is None and not call.fallback_served
        assert call.agent_id == "1001"
        end_s = call.ended_at.timestamp() - ended
        answer_s = call.answered_at.timestamp() - float(up["Timestamp"])
        assert abs(end_s) <= TOLERANCE_S and abs(answer_s) <= TOLERANCE_S
        offers = product.store.read(repo.offers_for_call, call_id)
        assert [(o.agent_id, o.result) for o in offers] == [("1001", "answered")]
        assert offers[0].left_at is not None
        assert abs(offers[0].left_at.timestamp() - ended) <= TOLERANCE_S
        recover_again(product)
        no_open_calls(product)
        print(f"(a) end {end_s:+.3f}s answer {answer_s:+.3f}s vs Asterisk's")
    finally:
        product.stop(check_invariants=True)


def test_a_call_answered_after_the_engine_died_has_asterisks_answer(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """(a) The engine dies while the agent's phone rings (Dial goes on in Asterisk); the
    agent answers and the caller hangs up while it is away: only Asterisk's records know
    the answer, and the record has it."""
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    sipp.softphone("1001", "uas_answer.xml", ring_ms=2500)
    engine = dead_engine(settings, ["1001"], tmp_path)
    t0 = asterisk.tap.mark()
    caller = sipp.caller(DID, "uac_call.xml", talk_ms=9000)
    begin = asterisk.tap.wait_event("DialBegin", 10, since=t0)
    engine.kill()
    up = asterisk.tap.wait_event("Newstate", 10, since=t0, Uniqueid=begin["DestUniqueid"],
                                 ChannelStateDesc="Up")
    assert caller.wait(30) == 0, caller.diagnostics()
    call_id = begin["Uniqueid"]
    ended = asterisk.tap.first_hangup_request(t0, call_id, begin["DestUniqueid"])
    product = product_for(settings, asterisk, ["1001"])
    try:
        product.start()
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.ended_at is not None and call.answered_at is not None
        assert (call.outcome, call.released_by, call.agent_id) == ("answered", "caller", "1001")
        end_s = call.ended_at.timestamp() - ended
        answer_s = call.answered_at.timestamp() - float(up["Timestamp"])
        assert abs(end_s) <= TOLERANCE_S and abs(answer_s) <= TOLERANCE_S
        offers = product.store.read(repo.offers_for_call, call_id)
        assert [(o.agent_id, o.result) for o in offers] == [("1001", "answered")]
        recover_again(product)
        no_open_calls(product)
        print(f"(a, answered while away) end {end_s:+.3f}s answer {answer_s:+.3f}s")
    finally:
        product.stop(check_invariants=True)


def test_an_agent_who_hung_up_while_the_engine_was_dead_released_the_call(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """(a) As above, the agent's phone hanging up first: released by the agent (STD-110),
    at the agent's BYE."""
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    sipp.softphone("1002", "uas_answer_bye.xml", ring_ms=500)  # BYE 2 s after answering
    engine = dead_engine(settings, ["1002"], tmp_path)
    t0 = asterisk.tap.mark()
    caller = sipp.caller(DID, "uac_wait_bye.xml", talk_ms=0)
    begin = asterisk.tap.wait_event("DialBegin", 10, since=t0)
    up = asterisk.tap.wait_event("Newstate", 10, since=t0, Uniqueid=begin["DestUniqueid"],
                                 ChannelStateDesc="Up")
    engine.kill()
    assert caller.wait(30) == 0, caller.diagnostics()
    call_id = begin["Uniqueid"]
    ended = asterisk.tap.first_hangup_request(t0, call_id, begin["DestUniqueid"])
    product = product_for(settings, asterisk, ["1002"])
    try:
        product.start()
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.ended_at is not None and call.answered_at is not None
        assert (call.outcome, call.released_by, call.ending) == (
            "answered", "agent", "agent_released")
        end_s = call.ended_at.timestamp() - ended
        answer_s = call.answered_at.timestamp() - float(up["Timestamp"])
        assert abs(end_s) <= TOLERANCE_S and abs(answer_s) <= TOLERANCE_S
        recover_again(product)
        no_open_calls(product)
        print(f"(a, agent first) end {end_s:+.3f}s answer {answer_s:+.3f}s")
    finally:
        product.stop(check_invariants=True)


def test_a_call_still_talking_when_the_engine_comes_back_is_adopted_to_its_end(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """(b) The engine dies mid-conversation and is back before it ends: the call is
    tracked again, and AMI's events close it when the caller hangs up; the agent, on
    that call again, goes to after-call work."""
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    sipp.softphone("1003", "uas_answer.xml", ring_ms=800)
    engine = dead_engine(settings, ["1003"], tmp_path)
    t0 = asterisk.tap.mark()
    caller, begin, up = answered_call(asterisk, sipp, t0, talk_ms=14000)
    call_id = begin["Uniqueid"]
    time.sleep(0.5)
    engine.kill()
    product = product_for(settings, asterisk, ["1003"])
    try:
        product.start()
        assert caller.running, "the call ended before the engine was back"
        report = product.service.recovery.runs[0]
        assert report.adopted == [call_id] and not report.closed, report
        live = product.call(lambda: product.runtime.calls[call_id])
        assert live.phase is Phase.CONNECTED and live.agent_id == "1003"
        assert product.call(lambda: product.runtime.agents["1003"].call_id) == call_id
        assert caller.wait(30) == 0, caller.diagnostics()
        product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                         "the adopted call to end")
        ended = asterisk.tap.first_hangup_request(t0, call_id, begin["DestUniqueid"])
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.ended_at is not None and call.answered_at is not None
        assert (call.outcome, call.released_by) == ("answered", "caller")
        end_s = call.ended_at.timestamp() - ended
        answer_s = call.answered_at.timestamp() - float(up["Timestamp"])
        assert abs(end_s) <= TOLERANCE_S and abs(answer_s) <= TOLERANCE_S
        product.wait_for(lambda: product.runtime.agents["1003"].state.value == "acw", 5,
                         "agent 1003 in after-call work")
        recover_again(product)
        no_open_calls(product)
        print(f"(b) end {end_s:+.3f}s answer {answer_s:+.3f}s")
    finally:
        product.stop(check_invariants=True)


@pytest.mark.std("STD-001")
def test_a_call_the_fallback_queue_served_while_the_engine_was_down_is_entered(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """(c) The engine is down (its FastAGI port closed): the dialplan queues the caller,
    agent 1004 answers, MixMonitor records it. The engine back: the call is in the store,
    flagged fallback-served, answered by 1004 at Asterisk's times, and its recording is
    in the recordings table."""
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    first = product_for(settings, asterisk, ["1004"])
    try:
        first.start()
    finally:
        first.stop(check_invariants=True)  # the engine goes away (it ran before: a checkpoint)
    sipp.softphone("1004", "uas_answer.xml", ring_ms=800)
    t0 = asterisk.tap.mark()
    caller = sipp.caller(DID, "uac_call.xml", talk_ms=5000)
    join = asterisk.tap.wait_event("QueueCallerJoin", 10, since=t0)
    call_id = join["Uniqueid"]
    connect = asterisk.tap.wait_event("AgentConnect", 15, since=t0)
    up = asterisk.tap.wait_event("Newstate", 5, since=t0, Uniqueid=connect["DestUniqueid"],
                                 ChannelStateDesc="Up")
    assert caller.wait(30) == 0, caller.diagnostics()
    ended = asterisk.tap.first_hangup_request(t0, call_id, connect["DestUniqueid"])
    entered = float(asterisk.tap.wait_event("Newchannel", 1, since=t0,
                                            Uniqueid=call_id)["Timestamp"])
    product = product_for(settings, asterisk, ["1004"])
    try:
        product.start()
        report = product.service.recovery.runs[0]
        assert report.entered == [call_id] and report.recordings == [call_id], report
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.fallback_served
        assert call.ended_at is not None and call.answered_at is not None
        assert call.entered_at is not None
        assert (call.outcome, call.released_by, call.agent_id, call.did, call.caller_number
                ) == ("answered", "caller", "1004", DID, "13800000000")
        end_s = call.ended_at.timestamp() - ended
        answer_s = call.answered_at.timestamp() - float(up["Timestamp"])
        enter_s = call.entered_at.timestamp() - entered
        assert max(abs(end_s), abs(answer_s), abs(enter_s)) <= TOLERANCE_S
        recording = product.store.read(repo.recording_for_call, call_id)
        assert recording is not None and recording.agent_id == "1004"
        assert Path(recording.path) == asterisk.monitor_dir / f"callflow-fallback-{call_id}.wav"
        assert recording.bytes > 44 and recording.number == "13800000000"
        assert recording.duration_s == pytest.approx(ended - recording.started_at.timestamp(),
                                                     abs=1.0)
        assert call.recording_path == recording.path
        recover_again(product)
        no_open_calls(product)
        print(f"(c) entered {enter_s:+.3f}s answer {answer_s:+.3f}s end {end_s:+.3f}s, "
              f"recording {recording.duration_s:.2f}s")
    finally:
        product.stop(check_invariants=True)


def test_a_call_answered_and_ended_while_the_ami_link_was_down_gets_asterisks_times(
        asterisk: PbxHandle, asterisk_root: Path, sipp: SippControl, tmp_path: Path) -> None:
    """The AMI link goes down while the agent's phone rings and comes back after the call
    ended: the flow alone saw the answer (Dial's whole-second ANSWEREDTIME) and the end;
    at the resync Asterisk's records give the call its real answer and end, released by
    the caller (before, the answer was the flow's: Dial's whole-second ANSWEREDTIME, or the
    hang-up's time when the hang-up cut the flow short)."""
    proxy = LinkProxy(asterisk.ports.ami)
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    settings = settings.with_ports(replace(settings.ports, ami=proxy.port))
    sipp.softphone("1001", "uas_answer.xml", ring_ms=2000)
    product = product_for(settings, asterisk, ["1001"])
    try:
        product.start()
        product.call(lambda: product.runtime.agent_event("1001", LogIn()))
        t0 = asterisk.tap.mark()
        caller = sipp.caller(DID, "uac_call.xml", talk_ms=5000)
        begin = asterisk.tap.wait_event("DialBegin", 10, since=t0)
        proxy.down()
        call_id = begin["Uniqueid"]
        up = asterisk.tap.wait_event("Newstate", 10, since=t0, Uniqueid=begin["DestUniqueid"],
                                     ChannelStateDesc="Up")
        assert caller.wait(30) == 0, caller.diagnostics()
        ended = asterisk.tap.first_hangup_request(t0, call_id, begin["DestUniqueid"])
        time.sleep(1.0)  # the flow has finished with the call, the link still down
        assert product.call(lambda: product.runtime.calls[call_id].phase) is not Phase.ENDED
        proxy.up()
        product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 15,
                         "the call to be closed at the resync")
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None and call.ended_at is not None and call.answered_at is not None
        assert (call.outcome, call.released_by, call.agent_id) == ("answered", "caller", "1001")
        assert call.incomplete_reason is None
        end_s = call.ended_at.timestamp() - ended
        answer_s = call.answered_at.timestamp() - float(up["Timestamp"])
        assert abs(end_s) <= TOLERANCE_S and abs(answer_s) <= TOLERANCE_S
        recover_again(product)
        no_open_calls(product)
        print(f"(AMI outage) end {end_s:+.3f}s answer {answer_s:+.3f}s")
    finally:
        product.stop(check_invariants=True)
        proxy.close()
