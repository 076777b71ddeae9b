"""Least privilege on a real Asterisk (issue 15): what Asterisk writes (a recording, its
database, its logs) only its owner may read.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from callflow.pbx.render import FALLBACK_QUEUE

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_what_asterisk_writes_only_its_owner_may_read(asterisk: PbxHandle,
                                                      sipp: SippControl) -> None:
    """The fallback queue's recording (MixMonitor, the engine down), the astdb, the logs."""
    since = asterisk.tap.mark()
    sipp.softphone("1001", "uas_answer.xml")
    sipp.caller("8000", "uac_call.xml", talk_ms=2000).wait(40)
    join = asterisk.tap.wait_event("QueueCallerJoin", 10, since)
    asterisk.tap.wait_event("Hangup", 10, since, Uniqueid=join["Uniqueid"])
    recording = asterisk.monitor_dir / f"{FALLBACK_QUEUE}-{join['Uniqueid']}.wav"
    deadline = time.monotonic() + 5
    while not recording.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    written = [recording, *(asterisk.workdir / "var/lib").glob("astdb*"),
               *(p for p in (asterisk.workdir / "var/log").rglob("*") if p.is_file())]
    assert recording.stat().st_size > 0
    assert {(p.name, mode(p)) for p in written} == {(p.name, 0o600) for p in written}
    folders = [asterisk.monitor_dir, asterisk.workdir / "var/lib", asterisk.workdir / "var/log"]
    assert {mode(p) for p in folders} == {0o700}
