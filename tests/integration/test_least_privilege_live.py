"""Least privilege on a real Asterisk (issue 15): the engine's AMI login may do what callflow
does and nothing else, hears only the event classes callflow reads, and is reachable on
loopback only; what Asterisk writes (a recording, its database, its logs) only its owner
may read. The engine's classes are rendered from callflow.pbx.render ``AMI_READ`` /
``AMI_WRITE``; the tests' own tap logs in as another user (tests/integration/conftest.py).
"""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from amitap import AmiTap

from callflow.pbx.render import FALLBACK_QUEUE

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

REFUSED = {  # an action of each class the engine does not have, with harmless fields
    "command": {"Action": "Command", "Command": "core show uptime"},
    "config": {"Action": "UpdateConfig", "SrcFilename": "manager.conf",
               "DstFilename": "manager.conf", "Reload": "no"},
    "agent": {"Action": "QueuePause", "Interface": "PJSIP/agent1001", "Paused": "false"},
    "user": {"Action": "UserEvent", "UserEvent": "callflow-test"},
    "config,reporting": {"Action": "ShowDialPlan", "Context": "inbound"},
}
OUTSIDE_ITS_CLASSES = ("VarSet", "Newexten", "AGIExecStart", "QueueCallerJoin", "TestEvent")


def engine_login(asterisk: PbxHandle) -> AmiTap:
    return AmiTap("127.0.0.1", asterisk.ports.ami, asterisk.username, asterisk.secret)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("cls", sorted(REFUSED))
def test_asterisk_refuses_the_engine_an_action_outside_its_classes(
        asterisk: PbxHandle, cls: str) -> None:
    engine = engine_login(asterisk)
    try:
        reply = engine.action(**REFUSED[cls])
        assert (reply.get("Response"), reply.get("Message")) == ("Error", "Permission denied")
        assert engine.action(Action="Ping").get("Response") == "Success"
        assert engine.action_list(Action="CoreShowChannels")[0].get("Response") == "Success"
    finally:
        engine.close()
    # the same action is allowed to a user that has the class: the refusal is the class's
    if cls != "config":  # (not rewriting manager.conf under the running tests)
        assert asterisk.tap.action(**REFUSED[cls]).get("Message") != "Permission denied"


def test_the_engine_hears_only_the_classes_it_reads(asterisk: PbxHandle,
                                                    sipp: SippControl) -> None:
    """A call with no engine: its channel events reach the engine's login, the dialplan's,
    AGI's and the queue's do not (the tap, with every class, hears them all)."""
    engine = engine_login(asterisk)
    try:
        since = asterisk.tap.mark()
        sipp.caller("8000", "uac_call.xml", talk_ms=2000).wait(30)
        asterisk.tap.wait_event("Hangup", 10, since)
        time.sleep(0.5)
        heard = {e["Event"] for e in engine.events_since(since)}
        everything = {e["Event"] for e in asterisk.tap.events_since(since)}
    finally:
        engine.close()
    assert {"Newchannel", "Newstate", "Hangup", "HangupRequest"} <= heard
    assert set(OUTSIDE_ITS_CLASSES) & everything
    assert not set(OUTSIDE_ITS_CLASSES) & heard


def test_ami_listens_on_loopback_only(asterisk: PbxHandle) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))              # no packet: just the route's source
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this host has no address besides loopback")
    with pytest.raises(OSError):
        socket.create_connection((address, asterisk.ports.ami), timeout=1).close()
    assert "127.0.0.1" in asterisk.cli("manager show settings")


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
