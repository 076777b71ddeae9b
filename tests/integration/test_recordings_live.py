"""Call recording end to end on the real Asterisk with SIPp (STD-114..119, STD-078).

A caller (SIPp) reaches agent 1001's softphone (SIPp answering) and sends G.711 audio
without a gap for 13.5 s (the opening plays first, then they are bridged), then hangs
up. MixMonitor records only sent audio, as a real phone sends it all the time. Then:
the WAV exists, is 8 kHz 16-bit mono, and lasts as long as the call was bridged
(Asterisk's BridgeEnter -> Hangup);
the recordings row and calls.recording_path are stored; over HTTP the supervisor lists
and downloads it (the bytes equal the file), the agent is refused (403); audit_log holds
each access and the refusal; a QA review is stored and totalled; the month's sample
selects it.
"""

from __future__ import annotations

import json
import stat
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from product import Product, running_product

from callflow.agents.state import LogIn
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.integration
AGENTS = ["1001"]
CALLER = "13900000041"
DURATION_TOLERANCE_S = 0.5  # MixMonitor's frames vs. Asterisk's event stamps, 2 shared cores


@pytest.fixture
def feature() -> RecordingsFeature:
    return RecordingsFeature(purge=False)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path,
            feature: RecordingsFeature) -> Iterator[Product]:
    with running_product(asterisk, asterisk_root, tmp_path, Policy.defaults(), AGENTS,
                         ServiceOptions(features=[feature])) as running:
        yield running


def http(product: Product, method: str, path: str, role: str,
         body: dict[str, Any] | None = None) -> tuple[int, bytes, str]:
    agent = "1001" if role == "agent" else None
    token = product.session(f"{role}-user", role, agent)
    request = urllib.request.Request(
        f"http://127.0.0.1:{product.settings.ports.api}/api/v1/recordings{path}",
        data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read(), reply.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("content-type", "")


@pytest.mark.std("STD-114", "STD-115", "STD-116")
def test_a_call_is_recorded_stored_played_audited_reviewed_and_sampled(
        asterisk: PbxHandle, sipp: SippControl, product: Product,
        feature: RecordingsFeature) -> None:
    t_start = time.monotonic()
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    product.call(lambda: product.runtime.agent_event("1001", LogIn()))
    t0 = asterisk.tap.mark()
    caller = sipp.caller("100", "uac_call_speaking.xml", caller_id=CALLER)
    assert caller.wait(60) == 0, caller.diagnostics()
    hangup = asterisk.tap.wait_event(
        lambda e: e["Event"] == "Hangup" and e.get("Channel", "").startswith("PJSIP/caller"),
        10, since=t0)
    call_id = hangup["Uniqueid"]
    bridged = [e for e in asterisk.tap.events_since(t0, "BridgeEnter")
               if e.get("Uniqueid") == call_id]
    assert bridged, "the caller was never bridged to the agent"
    bridged_s = float(hangup["Timestamp"]) - float(bridged[0]["Timestamp"])
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end")
    product.wait_for(lambda: bool(feature.finished), 20, "the recording to be finished")
    stored_at = time.monotonic()
    product.flush()

    # the file: under <state>/recordings/YYYY/MM/DD/<uniqueid>.wav, 8 kHz 16-bit mono
    row = product.store.read(repo.recording_for_call, call_id)
    assert row is not None
    path = Path(row.path)
    assert path.is_file() and path.name == f"{call_id}.wav"
    assert path.parent.parent.parent.parent == product.settings.state_dir / "recordings"
    # its owner's alone (issue 15): Asterisk writes it with umask 077, the engine makes
    # the folders 0700
    folders = [path.parent, path.parent.parent, path.parent.parent.parent,
               product.settings.state_dir / "recordings"]
    assert [stat.S_IMODE(p.stat().st_mode) for p in (path, *folders)] == [0o600] + [0o700] * 4
    with wave.open(str(path), "rb") as wav:
        rate, channels, width, frames = (wav.getframerate(), wav.getnchannels(),
                                         wav.getsampwidth(), wav.getnframes())
    duration = frames / rate
    print(f"\nbridged {bridged_s:.3f} s, WAV {duration:.3f} s ({path.stat().st_size} bytes), "
          f"row stored {stored_at - t_start:.1f} s after start")
    assert (rate, channels, width) == (8000, 1, 2)
    assert duration == pytest.approx(bridged_s, abs=DURATION_TOLERANCE_S)
    assert row.duration_s == pytest.approx(duration, abs=0.01)
    assert row.bytes == path.stat().st_size
    assert (row.direction, row.agent_id, row.number) == ("inbound", "1001", CALLER)
    call = product.store.read(repo.get_call, call_id)
    assert call is not None and call.recording_path == str(path)

    # HTTP: the supervisor lists and downloads; the agent is refused
    status, body, _ = http(product, "GET", f"?number={CALLER}", "supervisor")
    assert status == 200
    listed = json.loads(body)["recordings"]
    assert [(r["id"], r["call_id"], r["agent_id"]) for r in listed] == [
        (row.id, call_id, "1001")]
    status, audio, kind = http(product, "GET", f"/{row.id}/audio", "supervisor")
    assert (status, kind) == (200, "audio/wav")
    assert audio == path.read_bytes()
    status, body, _ = http(product, "GET", f"/{row.id}/audio", "agent")
    assert status == 403 and json.loads(body)["detail"]["error"] == "forbidden"

    # a QA review, totalled on the sheet
    _, sheet, _ = http(product, "GET", "/scoring-sheet", "qa")
    scores = {c["code"]: c["max"] for c in json.loads(sheet)["criteria"]}
    scores["speech_rate"] = 2
    status, body, _ = http(product, "POST", f"/{row.id}/review", "qa", {
        "scores": scores, "penalties": [{"code": "non_standard_phrase", "count": 1}],
        "notes": "closing not standard"})
    review = json.loads(body)
    assert status == 200, review
    assert (review["total"], review["unqualified"]) == (100 - 2 - 10, False)

    # the month's sample selects it (fewer calls than the minimum: all of them)
    month = datetime.fromtimestamp(float(bridged[0]["Timestamp"]), UTC).astimezone(
        ZoneInfo(product.service.policy.calendar.timezone))
    status, body, _ = http(product, "POST", f"/sample?month={month:%Y-%m}", "supervisor")
    assert status == 200
    assert row.id in [p["id"] for p in json.loads(body)["selected"]]

    # every access audited, the refusal too
    target = f"recording:{row.id}"
    trail = [(e.actor, e.action) for e in reversed(
        product.store.read(repo.audit_entries, target=target))]
    assert trail == [("supervisor-user", "recording.play"), ("agent-user", "recording.denied"),
                     ("qa-user", "recording.review")]
    listing = {(e.actor, e.action)
               for e in product.store.read(repo.audit_entries, target="recording:*")}
    assert {("supervisor-user", "recording.list"),
            ("supervisor-user", "recording.sample")} <= listing
    print(f"whole test {time.monotonic() - t_start:.1f} s")
