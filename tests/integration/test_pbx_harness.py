"""The harness itself, against the real Asterisk: the rendered config boots, the dialplan
keeps calls alive without the engine, softphones register with digest auth, restart works.

The fallback test is the spine's proof for design.md "Who routes calls" (STD-001):
with the FastAGI server stopped, a new call still reaches an agent.
"""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from amitap import AmiTap, AmiTapError

from callflow.errors import PbxConfigError, PbxError
from callflow.pbx.process import AsteriskProcess
from callflow.pbx.render import (
    AMI_HOST,
    CONF_DIR,
    FALLBACK_QUEUE,
    INBOUND_FLOW_CONTEXT,
    AgentEndpoint,
    PbxConfig,
    render,
)
from callflow.pbx.root import debian_mirror, ensure_root, installed_version

if TYPE_CHECKING:  # conftest modules are not importable by name at run time
    from conftest import PbxHandle
    from sippctl import SippControl


def _nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---- with the real Asterisk -----------------------------------------------------------


def test_rendered_config_boots_with_our_dialplan(asterisk: PbxHandle) -> None:
    gate = asterisk.cli("dialplan show inbound")
    assert "'_XX' =>" in gate and f"'_{'X' * 32}' =>" in gate and "_X." not in gate
    assert f"Goto({INBOUND_FLOW_CONTEXT},${{EXTEN}},1)" in gate
    flow = asterisk.cli(f"dialplan show {INBOUND_FLOW_CONTEXT}")
    agi = f"AGI(agi://127.0.0.1:{asterisk.ports.agi}/inbound,${{EXTEN}})"
    assert agi in flow
    assert f"Queue({FALLBACK_QUEUE})" in flow
    agents = asterisk.cli("dialplan show agents")
    assert "_*2X" in agents and "Playback(feature-not-avail-line)" in agents
    endpoints = asterisk.cli("pjsip show endpoints")
    for name in ("caller", "customer", *(f"agent{ext}" for ext in asterisk.agents)):
        assert f"Endpoint:  {name}" in endpoints
    queue = asterisk.cli(f"queue show {FALLBACK_QUEUE}")
    assert all(f"PJSIP/agent{ext}" in queue for ext in asterisk.agents)
    assert "rrmemory" in queue
    assert "Running" in asterisk.cli("module show like res_agi.so")
    print(f"Asterisk {asterisk.process.version}, booted in {asterisk.process.boot_seconds:.2f}s")


def test_ami_refuses_a_wrong_secret(asterisk: PbxHandle) -> None:
    with pytest.raises(AmiTapError, match="refused"):
        AmiTap("127.0.0.1", asterisk.ports.ami, asterisk.username, "wrong-" + asterisk.secret)
    manager = asterisk.process.etc_dir / "manager.conf"
    assert stat.S_IMODE(manager.stat().st_mode) == 0o600
    assert f"bindaddr = {AMI_HOST}" in manager.read_text()


def test_engine_down_call_reaches_an_agent_through_the_fallback_queue(
    asterisk: PbxHandle, sipp: SippControl
) -> None:
    assert _nothing_listens(asterisk.ports.agi), "this test needs the FastAGI port closed"
    tap = asterisk.tap
    agent = sipp.softphone("1002", "uas_answer.xml", ring_ms=1000)
    t0 = tap.mark()
    caller = sipp.caller("4008001234", "uac_call.xml", talk_ms=3000, caller_id="13912345678")

    agi = tap.wait_event("VarSet", 5, t0, Variable="AGISTATUS")
    assert agi["Value"] == "FAILURE"
    join = tap.wait_event("QueueCallerJoin", 5, t0, Queue=FALLBACK_QUEUE)
    assert join["CallerIDNum"] == "13912345678"
    connect = tap.wait_event("AgentConnect", 10, t0, Interface="PJSIP/agent1002")
    assert caller.wait(20) == 0, caller.diagnostics()
    tap.wait_event("AgentComplete", 5, t0, Interface="PJSIP/agent1002")
    assert agent.running

    # the fallback also records, so QA loses no call (MixMonitor closes just after hangup)
    wav = asterisk.monitor_dir / f"{FALLBACK_QUEUE}-{join['Uniqueid']}.wav"
    for _ in range(30):
        if wav.exists() and wav.stat().st_size > 44:
            break
        time.sleep(0.1)
    assert wav.stat().st_size > 44
    print(
        f"INVITE->queue {join['t'] - t0:.3f}s, ->agent connected {connect['t'] - t0:.3f}s "
        f"(ring 1 s), recording {wav.stat().st_size} bytes"
    )


def test_agent_hold_plays_our_hold_tone_to_the_caller(
    asterisk: PbxHandle, sipp: SippControl
) -> None:
    tap = asterisk.tap
    sipp.softphone("1004", "uas_answer_hold.xml", ring_ms=0)
    t0 = tap.mark()
    caller = sipp.caller("4008001234", "uac_call.xml", talk_ms=6000)
    hold = tap.wait_event("Hold", 10, t0)
    assert hold["Channel"].startswith("PJSIP/agent1004-")
    moh = tap.wait_event("MusicOnHoldStart", 1, hold["t"])
    assert moh["Channel"].startswith("PJSIP/caller-") and moh["Class"] == "default"
    unhold = tap.wait_event("Unhold", 5, hold["t"])
    tap.wait_event("MusicOnHoldStop", 1, moh["t"], Channel=moh["Channel"])
    assert caller.wait(15) == 0, caller.diagnostics()
    print(f"hold -> hold tone {moh['t'] - hold['t']:.3f}s, held {unhold['t'] - hold['t']:.2f}s")


def test_feature_code_without_engine_plays_an_error_and_hangs_up(
    asterisk: PbxHandle, sipp: SippControl
) -> None:
    assert _nothing_listens(asterisk.ports.agi)
    tap = asterisk.tap
    t0 = tap.mark()
    # From: agent1001 -> identified by username -> context "agents"
    phone = sipp.caller("*21", "uac_wait_bye.xml", caller_id="agent1001")
    assert phone.wait(15) == 0, phone.diagnostics()
    agi = tap.wait_event("VarSet", 1, t0, Variable="AGISTATUS")
    assert agi["Channel"].startswith("PJSIP/agent1001-")
    assert agi["Value"] == "FAILURE"
    tap.wait_event("Newexten", 1, t0, Application="Playback", AppData="feature-not-avail-line")


def test_agent_dials_another_agent(asterisk: PbxHandle, sipp: SippControl) -> None:
    tap = asterisk.tap
    sipp.softphone("1003", "uas_answer.xml", ring_ms=500)
    t0 = tap.mark()
    call = sipp.caller("1003", "uac_call.xml", talk_ms=1000, caller_id="agent1004")
    assert call.wait(15) == 0, call.diagnostics()
    end = tap.wait_event("DialEnd", 1, t0, DialStatus="ANSWER")
    assert end["DestChannel"].startswith("PJSIP/agent1003-")
    assert end["CallerIDNum"] == "1004"  # the endpoint's callerid, not the From user


def test_softphone_registers_with_digest_auth(asterisk: PbxHandle, sipp: SippControl) -> None:
    tap = asterisk.tap
    password = asterisk.agent_password("1005")
    port = asterisk.agent_port("1005")
    sipp.softphone("1005", "uas_answer.xml", wait=False)

    wrong = sipp.register("1005", "not-" + password)
    assert wrong.wait(20) != 0
    assert "agent1005/sip:" not in asterisk.cli("pjsip show contacts")

    t0 = tap.mark()
    ok = sipp.register("1005", password)
    assert ok.wait(10) == 0, ok.diagnostics()
    assert "REGISTER-401" in ok.log() and "REGISTER-200" in ok.log()
    reachable = tap.wait_event("ContactStatus", 5, t0, AOR="agent1005", ContactStatus="Reachable")
    assert f"agent1005/sip:agent1005@127.0.0.1:{port}" in asterisk.cli("pjsip show contacts")

    t1 = tap.mark()
    call = sipp.caller("1005", "uac_call.xml", talk_ms=500, caller_id="agent1001")
    assert call.wait(15) == 0, call.diagnostics()
    tap.wait_event("DialEnd", 1, t1, DialStatus="ANSWER")

    t2 = tap.mark()
    gone = sipp.register("1005", password, expires=0)
    assert gone.wait(10) == 0, gone.diagnostics()
    tap.wait_event("ContactStatus", 5, t2, AOR="agent1005", ContactStatus="Removed")
    print(f"REGISTER with digest auth -> contact Reachable in {reachable['t'] - t0:.3f}s")


def test_restart_comes_back_with_a_new_process(asterisk: PbxHandle) -> None:
    old_pid = asterisk.process.pid
    seconds = asterisk.restart()
    assert asterisk.process.pid != old_pid
    assert asterisk.tap.connected
    assert "Asterisk 22" in asterisk.cli("core show version")
    reply = asterisk.tap.action(Action="Ping")
    assert reply["Response"] == "Success"
    print(f"restart (stop + FullyBooted + tap login) {seconds:.2f}s")


# ---- without Asterisk: config and root guards -----------------------------------------


def _config(**overrides: object) -> PbxConfig:
    values: dict[str, object] = dict(
        ami_port=15038, ami_username="callflow", ami_secret="s3cret-generated", sip_port=15060,
        rtp_start=16000, rtp_end=16999, agi_host="127.0.0.1", agi_port=15573,
        agents=[AgentEndpoint("1001", static_contact="sip:agent1001@127.0.0.1:15101"),
                AgentEndpoint("1002", password="generated-pw-1")],
    )  # fmt: skip
    values.update(overrides)
    return PbxConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ami_secret": ""}, "ami_secret"),
        ({"ami_secret": "short"}, "ami_secret"),
        ({"ami_secret": "has space in it"}, "ami_secret"),
        ({"ami_username": "bad\nname"}, "ami_username"),
        ({"bind_host": "localhost"}, "bind_host"),
        ({"country": "China"}, "country"),
        ({"rtp_start": 17000}, "rtp_start"),
        ({"agents": [AgentEndpoint("1001")]}, "exactly one"),
        ({"agents": [AgentEndpoint("1001", password="pw\n[evil]")]}, "password"),
        ({"agents": [AgentEndpoint("x1", password="generated-pw-1")]}, "extension"),
        ({"agents": [AgentEndpoint("1001", password="generated-pw-1")] * 2}, "twice"),
    ],
)
def test_bad_config_is_refused_with_the_field_named(
    overrides: dict[str, object], field: str, tmp_path: Path
) -> None:
    with pytest.raises(PbxConfigError, match=field):
        render(CONF_DIR, tmp_path, _config(**overrides), tmp_path)
    assert not (tmp_path / "manager.conf").exists()


def test_render_writes_only_configured_values(tmp_path: Path) -> None:
    stock = tmp_path / "stock"
    stock.mkdir()
    (stock / "indications.conf").write_text("[general]\ncountry=us\n\n[us]\n[cn]\n")
    out = tmp_path / "etc"
    render(CONF_DIR, out, _config(country="cn"), stock)
    manager = (out / "manager.conf").read_text()
    assert "secret = s3cret-generated" in manager and manager.count("secret =") == 1
    assert stat.S_IMODE((out / "pjsip.conf").stat().st_mode) == 0o600
    pjsip = (out / "pjsip.conf").read_text()
    assert "password = generated-pw-1" in pjsip
    assert "contact = sip:agent1001@127.0.0.1:15101" in pjsip
    assert "country=cn" in (out / "indications.conf").read_text()
    assert "member => PJSIP/agent1002" in (out / "queues.conf").read_text()
    extensions = (out / "extensions.conf").read_text()
    assert "Playback(ss-noservice)" in extensions  # no customer trunk configured
    for template in CONF_DIR.glob("*.j2"):
        text = template.read_text()
        assert "secret =" not in text or "{{ cfg.ami_secret }}" in text, template


def test_unknown_country_is_refused(tmp_path: Path) -> None:
    (tmp_path / "indications.conf").write_text("[general]\ncountry=us\n\n[us]\n")
    with pytest.raises(PbxConfigError, match="'cn' has no section"):
        render(CONF_DIR, tmp_path / "etc", _config(country="cn"), tmp_path)


def test_mirror_comes_from_apt_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
    )
    assert debian_mirror(deb822, tmp_path / "none") == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert debian_mirror(tmp_path / "none", one_line) == "http://old.example/debian"
    assert debian_mirror(tmp_path / "none", tmp_path / "none") == "http://deb.debian.org/debian"


def test_missing_mmdebstrap_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PbxError, match="apt-get install mmdebstrap"):
        ensure_root(tmp_path / "root", progress=lambda _line: None)
    assert not (tmp_path / "root").exists()


def test_half_built_root_is_not_taken_for_a_good_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    with pytest.raises(PbxError, match="holds no Asterisk"):
        ensure_root(root, progress=lambda _line: None)
    with pytest.raises(PbxError, match="cannot read"):
        installed_version(root)


def test_start_refuses_an_unbuilt_root(tmp_path: Path) -> None:
    with pytest.raises(PbxError, match="not a built Asterisk root"):
        AsteriskProcess(tmp_path / "root", tmp_path / "work", _config()).start()
