"""Special-call scripts on the real Asterisk with SIPp (issue 6).

* Silent caller (SIPp sends no RTP at all): the agent starts the silent procedure; the
  system plays prompt 1, waits 5 s, prompt 2, 5 s, prompt 3, 5 s and releases; the
  gaps are measured on Asterisk's own event times (±0.5 s) and the call is stored
  with outcome "silent", released by the system, compliant (STD-056, STD-112).
* Nuisance: the agent marks the call N times (Policy); each mark plays the scope
  statement; after the N-th the caller is transferred to the automated attendant,
  the number is flagged and the call is stored as "nuisance", compliant (STD-064, C-2).

Prompts reach the caller through ChanSpy barge on a Local channel (see
special_calls/feature.py); ``ChanSpyStart`` and the Local channel's
``Hangup`` are the start and end of each prompt as Asterisk played it.

* Issue 13: a statement's spy channel (the ;2 half) must be gone within 1 s of the
  statement's end. It is when a phone sends speech; it is not when no phone sends any RTP
  (xfail, strict: Asterisk 22.10.1's ChanSpy waits for media to let go, ``spies.py``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from product import Product, running_product
from spies import (
    NO_MEDIA,
    SPEECH_PCAP_S,
    SPY_GONE_S,
    speaking_caller,
    spy_left_after,
    whisper_channels,
)

from callflow.agents.state import LogIn
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy, parse_policy
from callflow.service import ServiceOptions
from callflow.special_calls.feature import SpecialCallsFeature
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration
AGENTS = ["1001"]
TOLERANCE_S = 0.5


def start_product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path,
                  policy: Policy) -> Iterator[tuple[Product, SpecialCallsFeature]]:
    assert "func_talkdetect.so" in asterisk.cli("module show like talkdetect")
    feature = SpecialCallsFeature()
    with running_product(asterisk, asterisk_root, tmp_path, policy, AGENTS,
                         ServiceOptions(features=[feature])) as running:
        yield running, feature


def log_in(product: Product) -> None:
    """After the softphone is Reachable for good (sippctl.wait_ready), as test_spine does."""
    product.call(lambda: product.runtime.agent_event("1001", LogIn()))


@pytest.fixture
def default_product(asterisk: PbxHandle, asterisk_root: Path,
                    tmp_path: Path) -> Iterator[tuple[Product, SpecialCallsFeature]]:
    yield from start_product(asterisk, asterisk_root, tmp_path, Policy.defaults())


@pytest.fixture
def nuisance_product(asterisk: PbxHandle, asterisk_root: Path,
                     tmp_path: Path) -> Iterator[tuple[Product, SpecialCallsFeature]]:
    policy = parse_policy({"special_calls": {"nuisance_warnings": 2,
                                             "nuisance_final_action": "transfer_attendant"}})
    yield from start_product(asterisk, asterisk_root, tmp_path, policy)


def connected_call(asterisk: PbxHandle, sipp: SippControl, product: Product,
                   t0: float) -> str:
    enter = asterisk.tap.wait_event(
        lambda e: e["Event"] == "BridgeEnter" and e.get("Channel", "").startswith("PJSIP/caller")
        and e.get("BridgeNumChannels") == "2", 30, since=t0)
    call_id: str = enter["Uniqueid"]
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.CONNECTED, 5,
                     "the call to be connected")
    return call_id


def prompt_spans(asterisk: PbxHandle, t0: float, call_channel: str) -> list[tuple[float, float]]:
    """(start, end) of each prompt played into the call, on Asterisk's clock."""
    spans = []
    for start in asterisk.tap.events_since(t0, "ChanSpyStart", SpyeeChannel=call_channel):
        spyer = start["SpyerChannel"]  # Local/barge@callflow-whisper-xxxx;2
        base = spyer.rsplit(";", 1)[0]
        end = asterisk.tap.wait_event(
            lambda e, b=base: e["Event"] == "Hangup" and e.get("Channel") == f"{b};1", 30,
            since=t0)
        spans.append((float(start["Timestamp"]), float(end["Timestamp"])))
    return spans


@pytest.mark.std("STD-056", "STD-112")
def test_silent_caller_script_with_measured_gaps_ends_silent(
        asterisk: PbxHandle, sipp: SippControl,
        default_product: tuple[Product, SpecialCallsFeature]) -> None:
    product, feature = default_product
    sc = product.service.policy.special_calls
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    log_in(product)
    t0 = asterisk.tap.mark()
    caller = sipp.caller("100", "uac_silent_wait_bye.xml", caller_id="13900000021",
                         timeout_s=120)
    call_id = connected_call(asterisk, sipp, product, t0)
    channel = product.call(lambda: product.runtime.calls[call_id].channel)
    view = product.call(lambda: feature.act(call_id, "1001", "start", "silent"))
    assert view["procedure"] == "silent" and view["running"]
    assert caller.wait(90) == 0, caller.diagnostics()
    hangup = asterisk.tap.wait_event("Hangup", 10, since=t0, Uniqueid=call_id)
    spans = prompt_spans(asterisk, t0, channel)
    released = float(hangup["Timestamp"])
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    print(f"\nprompts {[(round(s - spans[0][0], 3), round(e - spans[0][0], 3)) for s, e in spans]}"
          f" gaps {[round(g, 3) for g in gaps]} release +{released - spans[-1][1]:.3f} s")
    assert len(spans) == sc.silent_prompts
    assert all(g == pytest.approx(sc.silent_gap_s, abs=TOLERANCE_S) for g in gaps), gaps
    assert released - spans[-1][1] == pytest.approx(sc.silent_release_delay_s, abs=TOLERANCE_S)
    played = [p["label"] for p in feature.plays if p["call_id"] == call_id]
    assert played == ["1:1", "1:2", "1:3"]

    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end")
    product.flush()
    call = product.store.read(repo.get_call, call_id)
    assert call is not None
    assert (call.outcome, call.released_by, call.release_compliant, call.release_procedure) == (
        "silent", "system", True, "silent")


@pytest.mark.std("STD-064", "STD-065")
def test_nuisance_warned_n_times_then_transferred_to_the_attendant(
        asterisk: PbxHandle, sipp: SippControl,
        nuisance_product: tuple[Product, SpecialCallsFeature]) -> None:
    product, feature = nuisance_product
    warnings = product.service.policy.special_calls.nuisance_warnings
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    log_in(product)
    t0 = asterisk.tap.mark()
    caller = sipp.caller("100", "uac_silent_wait_bye.xml", caller_id="13900000022",
                         timeout_s=120)
    call_id = connected_call(asterisk, sipp, product, t0)
    channel = product.call(lambda: product.runtime.calls[call_id].channel)
    for n in range(1, warnings + 1):
        view = product.call(lambda: feature.act(call_id, "1001", "nuisance"))
        assert view["warnings"] == n

        def played(n: int = n) -> bool:
            mine = [p for p in feature.plays if p["call_id"] == call_id and p["token"]]
            return len(mine) >= n and "ended" in mine[n - 1]

        product.wait_for(played, 40, f"statement {n} to be played")
    assert caller.wait(60) == 0, caller.diagnostics()
    spans = prompt_spans(asterisk, t0, channel)
    assert len(spans) == warnings
    attendant = asterisk.tap.wait_event("Newexten", 10, since=t0, Uniqueid=call_id,
                                        Context="callflow-attendant")
    assert float(attendant["Timestamp"]) >= spans[-1][1]
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end")
    product.flush()
    call = product.store.read(repo.get_call, call_id)
    assert call is not None
    assert (call.outcome, call.release_compliant, call.release_procedure) == (
        "nuisance", True, "nuisance")
    events: list[Any] = product.store.read(repo.read_events, uniqueid=call_id)
    flags = [e for e in events if e.kind == "number_flag"]
    assert len(flags) == 1 and flags[0].payload["number"] == "13900000022"


@pytest.fixture
def auto_product(asterisk: PbxHandle, asterisk_root: Path,
                 tmp_path: Path) -> Iterator[tuple[Product, SpecialCallsFeature]]:
    policy = parse_policy({"special_calls": {"silent_auto_start": True}})
    yield from start_product(asterisk, asterisk_root, tmp_path, policy)


def test_silent_script_starts_by_itself_and_caller_speech_cancels_it(
        asterisk: PbxHandle, sipp: SippControl,
        auto_product: tuple[Product, SpecialCallsFeature]) -> None:
    """STD-056 (ASSUMPTION: automatic start after one silent gap): the caller says nothing
    after the opening, so the procedure starts; then the caller speaks (TALK_DETECT's
    ChannelTalkingStart on their channel) and the procedure stops; the call goes on."""
    product, feature = auto_product
    sc = product.service.policy.special_calls
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    log_in(product)
    t0 = asterisk.tap.mark()
    # silent for 16 s after the answer: past the opening (~7 s) and the first prompt
    caller = sipp.caller("100", "uac_speak_later_wait_bye.xml", caller_id="13900000023",
                         talk_ms=16000, timeout_s=120)
    call_id = connected_call(asterisk, sipp, product, t0)
    enter = asterisk.tap.wait_event("BridgeEnter", 5, since=t0, Uniqueid=call_id)
    channel = product.call(lambda: product.runtime.calls[call_id].channel)
    first_spy = asterisk.tap.wait_event("ChanSpyStart", 15, since=t0, SpyeeChannel=channel)
    started = float(first_spy["Timestamp"]) - float(enter["Timestamp"])
    talk = asterisk.tap.wait_event("ChannelTalkingStart", 30, since=t0, Uniqueid=call_id)
    product.wait_for(lambda: feature.specials[call_id].cancelled, 5, "the script to stop")
    # nothing more is played or released for a while after the speech
    asterisk.tap.assert_no_event("Hangup", sc.silent_gap_s + sc.silent_release_delay_s + 1,
                                 since=t0, Uniqueid=call_id)
    spans = prompt_spans(asterisk, t0, channel)
    print(f"\nauto start +{started:.3f} s after the bridge; speech at "
          f"+{float(talk['Timestamp']) - float(enter['Timestamp']):.3f} s; "
          f"{len(spans)} prompt(s) played")
    assert started == pytest.approx(sc.silent_gap_s, abs=TOLERANCE_S + 0.2)
    assert 1 <= len(spans) < sc.silent_prompts
    assert all(start < float(talk["Timestamp"]) for start, _ in spans)
    asterisk.tap.action(Action="Hangup", Channel=channel)  # the call ends normally
    assert caller.wait(30) == 0, caller.diagnostics()
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end")
    product.flush()
    call = product.store.read(repo.get_call, call_id)
    assert call is not None and call.outcome == "answered" and call.release_procedure is None


SPEECH_PLAYS = 5  # 35.4 s of speech: the bridge ~7 s after the answer, then the 17 s statement


@pytest.mark.parametrize("speaking", [
    pytest.param(True, id="caller-sends-speech"),
    pytest.param(False, id="no-rtp", marks=pytest.mark.xfail(strict=True, reason=NO_MEDIA)),
])
def test_statement_spy_leaves_with_the_statement(
        asterisk: PbxHandle, sipp: SippControl, tmp_path: Path,
        default_product: tuple[Product, SpecialCallsFeature], speaking: bool) -> None:
    """Issue 13: one nuisance statement (barged: meant for both parties); within 1 s of its
    end (the ;1 half's Hangup) its ;2 half, the ChanSpy on the caller, is gone and Asterisk
    lists no channel of ours."""
    product, feature = default_product
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    log_in(product)
    t0 = asterisk.tap.mark()
    scenario = (str(speaking_caller(tmp_path / "speaking.xml", SPEECH_PLAYS)) if speaking
                else "uac_silent_wait_bye.xml")
    caller = sipp.caller("100", scenario, caller_id="13900000024", timeout_s=90)
    call_id = connected_call(asterisk, sipp, product, t0)
    answered = asterisk.tap.wait_event("Newstate", 5, since=t0, Uniqueid=call_id,
                                       ChannelStateDesc="Up")
    channel = product.call(lambda: product.runtime.calls[call_id].channel)
    product.call(lambda: feature.act(call_id, "1001", "nuisance"))

    def ended() -> bool:
        return any("ended" in p for p in feature.plays if p["call_id"] == call_id)

    product.wait_for(ended, 40, "the statement to end")
    play = next(p for p in feature.plays if p["call_id"] == call_id)
    left = spy_left_after(asterisk, t0, play["uid"])
    leftover = whisper_channels(asterisk)
    print(f"\nstatement {play['uid']}: spy gone "
          f"{'not within' if left is None else f'{left:.3f} s after'} the statement's end "
          f"({SPY_GONE_S} s allowed); still up: {leftover}")
    assert left is not None and left <= SPY_GONE_S, leftover
    assert leftover == []
    # hang up once the caller's scenario waits for the BYE (its last sample is playing)
    time.sleep(max(0.0, answered["t"] + (SPEECH_PLAYS - 1) * SPEECH_PCAP_S - time.monotonic()))
    asterisk.tap.action(Action="Hangup", Channel=channel)
    assert caller.wait(30) == 0, caller.diagnostics()
