"""An outbound call is recorded, on the real Asterisk with SIPp (STD-114).

The dialer rings agent 1001's softphone (SIPp answering), then the customer (SIPp
``uas_answer_speaking.xml``), who answers after one second, speaks without a gap for
6.5 s and hangs up. ``RecordingsFeature`` puts MixMonitor on the attempt's agent leg
when the two are bridged. Then:

* a ``recordings`` row: direction ``outbound``, the agent, the customer's number, keyed
  by the attempt id (the agent leg's uniqueid, which is also the outbound ``calls``
  row's uniqueid and the task attempt's ``call_uniqueid``);
* the WAV exists under ``<state>/recordings/YYYY/MM/DD/<attempt id>.wav``, is 8 kHz
  16-bit mono, lasts as long as the call was bridged by Asterisk's stamps (BridgeEnter
  of the second party -> the agent leg's Hangup) and holds the customer's speech;
* ``calls.recording_path`` of the attempt's call points at it, and the attempt
  recorded on the task names the same call.
"""

from __future__ import annotations

import array
import math
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest
from product import Product, make_roster, make_settings
from test_outbound_live import (
    AGENTS,
    CUSTOMER,
    add_task,
    customer,
    customer_dialled,
    live_policy,
    log_in,
    softphone,
    wait_log,
    wait_task,
)

from callflow.outbound.feature import OutboundFeature
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration
DURATION_TOLERANCE_S = 0.5  # MixMonitor's frames vs. Asterisk's event stamps, 2 shared cores
TALK_S = 6.5  # uas_answer_speaking.xml: the customer's BYE 6.5 s after the answer
SPEECH_RMS = 300  # g711a.pcap's speech mixes to an RMS in the thousands; silence is ~0


@pytest.fixture
def dialer() -> OutboundFeature:
    return OutboundFeature(tick_s=0.2)


@pytest.fixture
def recording(dialer: OutboundFeature) -> RecordingsFeature:
    return RecordingsFeature(outbound=dialer, purge=False)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path, dialer: OutboundFeature,
            recording: RecordingsFeature) -> Iterator[Product]:
    options = ServiceOptions(features=[dialer, recording])
    product = Product(make_settings(tmp_path, asterisk, asterisk_root), live_policy(),
                      make_roster(AGENTS, asterisk.agent_port), options)
    try:
        product.start()
        yield product
    finally:
        product.stop()


def _outbound(product: Product) -> OutboundFeature:
    return next(f for f in product.service.options.features if isinstance(f, OutboundFeature))


def _rms(samples: array.array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def test_an_outbound_call_is_recorded_on_the_agent_leg_for_its_bridged_time(
        asterisk: PbxHandle, sipp: SippControl, product: Product,
        recording: RecordingsFeature) -> None:
    t_start = time.monotonic()
    softphone(sipp, asterisk, "1001")
    callee = customer(sipp, asterisk, "uas_answer_speaking.xml", ring_ms=1000)
    log_in(product, "1001")
    t0 = asterisk.tap.mark()
    task = add_task(product, _outbound(product), kind="callback")
    begin = customer_dialled(asterisk, t0, 15)
    attempt = begin["Uniqueid"]
    assert attempt.startswith(f"cfo-{task.id}-")
    assert begin["Channel"].startswith("PJSIP/agent1001-")

    # the customer answers, speaks, hangs up; the agent leg follows
    wait_log(callee, "BYE", 10 + TALK_S)
    hangup = asterisk.tap.wait_event("Hangup", 5, since=t0, Uniqueid=attempt)
    legs = {attempt, begin["DestUniqueid"]}
    both = [e for e in asterisk.tap.events_since(t0, "BridgeEnter")
            if e.get("Uniqueid") in legs and int(e.get("BridgeNumChannels", "0")) >= 2]
    assert both, "the customer was never bridged with the agent"
    bridged_at = float(both[0]["Timestamp"])
    bridged_s = float(hangup["Timestamp"]) - bridged_at
    product.wait_for(lambda: bool(recording.finished), 15, "the recording to be finished")
    stored_at, stored_wall = time.monotonic(), time.time()
    product.flush()

    # the row: outbound, the agent, the customer's number, keyed by the attempt id
    row = product.store.read(repo.recording_for_call, attempt)
    assert row is not None, f"no recording row for {attempt}: {recording.finished}"
    assert (row.direction, row.agent_id, row.number) == ("outbound", "1001", CUSTOMER)
    assert row.started_at.timestamp() == pytest.approx(bridged_at, abs=0.001)
    assert row.ended_at is not None
    assert row.ended_at.timestamp() == pytest.approx(float(hangup["Timestamp"]), abs=0.001)

    # the file: <state>/recordings/YYYY/MM/DD/<attempt id>.wav, 8 kHz 16-bit mono
    path = Path(row.path)
    day = datetime.fromtimestamp(bridged_at, UTC).astimezone(
        ZoneInfo(product.service.policy.calendar.timezone))
    assert path == (product.settings.state_dir / "recordings" / f"{day:%Y}" / f"{day:%m}"
                    / f"{day:%d}" / f"{attempt}.wav")
    assert path.is_file()
    with wave.open(str(path), "rb") as wav:
        rate, channels, width, frames = (wav.getframerate(), wav.getnchannels(),
                                         wav.getsampwidth(), wav.getnframes())
        pcm = array.array("h", wav.readframes(frames))
    duration = frames / rate
    # the customer's speech is in it (the middle of the call, where the pcap talks)
    middle = pcm[len(pcm) // 4: 3 * len(pcm) // 4]
    level = _rms(middle)
    print(f"\nbridged {bridged_s:.3f} s (BridgeEnter -> agent leg Hangup), WAV {duration:.3f} s "
          f"({path.stat().st_size} bytes, RMS {level:.0f}); finished "
          f"{stored_wall - float(hangup['Timestamp']):.2f} s after the hang-up, "
          f"{stored_at - t_start:.1f} s after start")
    assert (rate, channels, width) == (8000, 1, 2)
    assert bridged_s == pytest.approx(TALK_S, abs=1.0)  # the scenario did what it says
    assert duration == pytest.approx(bridged_s, abs=DURATION_TOLERANCE_S)
    assert row.duration_s == pytest.approx(duration, abs=0.01)
    assert row.bytes == path.stat().st_size
    assert level > SPEECH_RMS, "the customer's speech is missing from the recording"

    # linkage: the attempt's calls row points at the file; the task's attempt names it
    call = product.store.read(repo.get_call, attempt)
    assert call is not None
    assert (call.direction, call.agent_id, call.caller_number, call.outcome) == (
        "outbound", "1001", CUSTOMER, "answered")
    assert call.recording_path == str(path)
    done = wait_task(product, task.id, "the task to be done", 5, lambda t: t.status == "done")
    assert done.last_outcome == "answered"
    [tried] = product.store.read(repo.task_attempts, task.id)
    assert (tried.outcome, tried.agent_id, tried.call_uniqueid) == ("answered", "1001", attempt)
    listed = product.store.read(repo.list_recordings, number=CUSTOMER)
    assert [r.id for r in listed] == [row.id]
    print(f"whole test {time.monotonic() - t_start:.1f} s")
