"""The demo carrier and ``callflow demo`` on the real Asterisk with SIPp (issue 16).

This module runs an Asterisk of its own, rendered as ``make run`` renders it with no
trunk configured: the outbound route dials the demo carrier. It lives in the worker's
port block beside the session's Asterisk (which has a customer trunk, so no demo
carrier): AMI base+238, SIP base+260, FastAGI base+773, API base+850, RTP
base+1600..1999; the demo's SIPp phones at base+400 (``callflow demo``) and base+1000.
Agents 1001-1005 REGISTER with digest auth, as the phones of ``make run`` do.

- each demo test number gives its documented outcome when the product's dialer calls
  it: answered; busy (cause 17); no answer (the ring limit hangs up: 2 rings = 10.0 s
  here, cn cadence); answered then dropped with cause 38; not in service (cause 1);
- ``callflow demo`` (the real command, in its own process) run against the engine for
  about a minute leaves consistent records: every call one outcome, no agent on two
  calls at once, no SIPp process behind; the board page in Chromium shows DEMO.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser
from portblock import port_base
from product import Product, make_settings

from callflow.agents.roster import Roster, RosterAgent
from callflow.cli import default_features
from callflow.demo.phones import SippPhones
from callflow.engine.policy import Policy
from callflow.outbound.feature import OutboundFeature
from callflow.pbx.demo_carrier import DemoCarrier
from callflow.pbx.process import AsteriskProcess
from callflow.pbx.render import AgentEndpoint, PbxConfig
from callflow.service import ServiceOptions
from callflow.settings import REPO_ROOT, Ports
from callflow.store import repo
from callflow.store.models import Call

AGENTS = ["1001", "1002", "1003", "1004", "1005"]
TOLERANCE_S = 0.5
CARRIER = DemoCarrier(answer_rings=1, ring_s=5.0, talk_s=3, drop_after_s=1, drop_cause=38)


@dataclass
class DemoPbx:
    process: AsteriskProcess
    config: PbxConfig
    ports: Ports
    base: int
    passwords: dict[str, str]

    # what make_settings reads
    @property
    def username(self) -> str:
        return self.config.ami_username

    @property
    def secret(self) -> str:
        return self.config.ami_secret

    @property
    def workdir(self) -> Path:
        return self.process.workdir


@pytest.fixture(scope="module")
def demo_pbx(asterisk_root: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[DemoPbx]:
    base = port_base()
    ports = Ports(ami=base + 238, sip=base + 260, agi=base + 773, api=base + 850,
                  rtp_start=base + 1600, rtp_end=base + 1999)
    passwords = {ext: secrets.token_urlsafe(12) for ext in AGENTS}
    config = PbxConfig(
        ami_port=ports.ami, ami_username="callflow", ami_secret=secrets.token_urlsafe(18),
        sip_port=ports.sip, rtp_start=ports.rtp_start, rtp_end=ports.rtp_end,
        agi_host="127.0.0.1", agi_port=ports.agi, country="cn",
        agents=[AgentEndpoint(ext, password=passwords[ext], qualify_frequency=1,
                              qualify_timeout=1.0) for ext in AGENTS],
        demo_carrier=CARRIER)
    process = AsteriskProcess(asterisk_root, tmp_path_factory.mktemp("demo-pbx"), config)
    process.start()
    try:
        yield DemoPbx(process, config, ports, base, passwords)
    finally:
        process.stop()


def demo_policy() -> Policy:
    """Calls allowed all day (the suite runs at any hour); two rings (10 s) before the
    dialer hangs up (the demo numbers answer on the first), so the no-answer number is
    quick; short after-call work."""
    return Policy.model_validate({
        "outbound": {"calling_window_start": "00:00", "calling_window_end": "23:59",
                     "calling_days": "all_but_holidays", "caller_id": "4008001234",
                     "no_answer_rings": 2},
        "agents": {"acw_limit_s": 2}})


def roster_of(pbx: DemoPbx) -> Roster:
    return Roster(tuple(RosterAgent(agent_id=a, name=f"Agent {a}", endpoint=f"agent{a}",
                                    password=pbx.passwords[a]) for a in AGENTS))


def write_roster_file(path: Path, pbx: DemoPbx) -> None:
    lines = []
    for a in AGENTS:
        lines += ["[[agent]]", f'id = "{a}"', f'name = "Agent {a}"',
                  f'endpoint = "agent{a}"', f'password = "{pbx.passwords[a]}"', ""]
    path.write_text("\n".join(lines))
    path.chmod(0o600)


@pytest.fixture
def product(demo_pbx: DemoPbx, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    """The whole product (every feature, the API) against the demo Asterisk."""
    features = [f if not isinstance(f, OutboundFeature) else OutboundFeature(tick_s=0.2)
                for f in default_features()]
    settings = make_settings(tmp_path, demo_pbx, asterisk_root)
    write_roster_file(tmp_path / "agents.toml", demo_pbx)
    running = Product(settings, demo_policy(), roster_of(demo_pbx),
                      ServiceOptions(features=features, demo_carrier=CARRIER))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def feature_of(product: Product) -> OutboundFeature:
    [feature] = [f for f in product.service.options.features
                 if isinstance(f, OutboundFeature)]
    return feature


def wait_until(what: str, timeout: float, done: Any) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return value


def test_each_demo_number_gives_its_documented_outcome(
        demo_pbx: DemoPbx, product: Product, tmp_path: Path) -> None:
    phones = SippPhones(tmp_path, "127.0.0.1", demo_pbx.ports.sip, demo_pbx.base + 1000)
    try:
        for i, ext in enumerate(AGENTS):
            port = demo_pbx.base + 1001 + i
            # the agent answers at once and talks longer than any demo customer stays
            phones.softphone(f"agent{ext}", port, ring_ms=200, talk_ms=30_000)
            phones.register(f"agent{ext}", demo_pbx.passwords[ext], port,
                            demo_pbx.base + 1030 + i, expires=600)
        for ext in AGENTS:
            wait_until(f"agent{ext} reachable", 10,
                       lambda e=ext: product.call(
                           lambda: product.runtime.endpoint_reachable.get(f"agent{e}")))
            product.call(lambda e=ext: product.runtime.log_in(e))
        feature = feature_of(product)
        tasks = {}
        for number in CARRIER.numbers_in_order():
            task, created = product.run(feature.add_task("manual", number))
            assert created
            tasks[number] = task.id

        def attempts(number: str) -> list[Any]:
            return list(product.store.read(repo.task_attempts, tasks[number]))

        results = {}
        for number in CARRIER.numbers_in_order():
            [attempt] = wait_until(f"the attempt on {number}", 40, lambda n=number: attempts(n))
            results[number] = attempt
        product.flush()
        calls = {n: product.store.read(repo.get_call, a.call_uniqueid)
                 for n, a in results.items()}
        # the attempt's outcome; the cause is the call record's (an answered attempt is
        # written at the answer, before the customer's leg ends)
        summary = {n: (a.outcome, calls[n].hangup_cause if calls[n] else None)
                   for n, a in results.items()}
        print(f"\ndemo carrier outcomes: {summary}")
        for n, call in calls.items():
            assert call is not None, n
            talked = ((call.ended_at - call.answered_at).total_seconds()
                      if call.answered_at and call.ended_at else None)
            rang = ((call.ended_at if call.answered_at is None else call.answered_at)
                    - call.ring_started_at).total_seconds() if call.ring_started_at else None
            print(f"  {n}: {call.outcome}, cause {call.hangup_cause}, released by "
                  f"{call.released_by}, rang {rang} s, talked {talked} s")
        assert summary[CARRIER.answer] == ("answered", 16)
        assert summary[CARRIER.busy] == ("busy", 17)
        assert summary[CARRIER.no_answer][0] == "no_answer"
        assert summary[CARRIER.drop] == ("answered", 38)
        assert summary[CARRIER.not_in_service] == ("invalid_number", 1)
        # the ring limit fired at 2 rings (10 s at cn cadence): the call's record says so
        unanswered = calls[CARRIER.no_answer]
        assert unanswered is not None and unanswered.ring_started_at and unanswered.ended_at
        assert (unanswered.ended_at - unanswered.ring_started_at).total_seconds() == \
            pytest.approx(10.0, abs=TOLERANCE_S)
        # the answering number rang one ring, then talked its talk_s
        answered = calls[CARRIER.answer]
        assert answered is not None and answered.answered_at and answered.ring_started_at
        assert (answered.answered_at - answered.ring_started_at).total_seconds() == \
            pytest.approx(CARRIER.answer_after_s, abs=TOLERANCE_S + 0.5)
        statuses = {n: product.store.read(repo.get_task, t).status for n, t in tasks.items()}
        assert statuses[CARRIER.not_in_service] == "unreachable"
        assert statuses[CARRIER.answer] == "done"
        assert statuses[CARRIER.busy] == "pending"  # retried per rule
    finally:
        for i, ext in enumerate(AGENTS):
            try:
                phones.register(f"agent{ext}", demo_pbx.passwords[ext], demo_pbx.base + 1001 + i,
                                demo_pbx.base + 1030 + i, expires=0)
            except Exception as exc:
                print(f"unregister agent{ext}: {exc}")
        phones.stop_all()


def sipp_pids_on(ports: range) -> list[int]:
    """SIPp processes whose command line names one of ``ports`` (ours, not others')."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"sipp") and b"-p" in argv:
            port = argv[argv.index(b"-p") + 1]
            if port.isdigit() and int(port) in ports:
                found.append(int(entry.name))
    return found


def test_callflow_demo_for_a_minute_leaves_consistent_records_and_a_demo_marker(
        demo_pbx: DemoPbx, product: Product, tmp_path: Path, browser: Browser) -> None:
    settings = product.settings
    demo_base = demo_pbx.base + 400
    env = {**os.environ, "CALLFLOW_STATE_DIR": str(settings.state_dir),
           "CALLFLOW_DATABASE_URL": settings.database_url,
           "CALLFLOW_AMI_PORT": str(settings.ports.ami),
           "CALLFLOW_SIP_PORT": str(settings.ports.sip),
           "CALLFLOW_AGI_PORT": str(settings.ports.agi),
           "CALLFLOW_API_PORT": str(settings.ports.api),
           "CALLFLOW_API_TOKEN": settings.api_token,
           "CALLFLOW_AMI_SECRET": settings.ami_secret, "PYTHONUNBUFFERED": "1"}
    env.pop("CALLFLOW_PORT_BASE", None)
    out_file = tmp_path / "demo.out"
    t0 = time.monotonic()
    with out_file.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "callflow.cli", "demo", "--agents", "4", "--rate", "20",
             "--duration", "50", "--ring", "1", "--talk", "30", "--wrap", "1",
             "--patience", "12", "--port-base", str(demo_base)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=REPO_ROOT)
    try:
        # the board says DEMO while the demo runs (and /healthz says why)
        url = f"http://127.0.0.1:{settings.ports.api}"
        wait_until("the demo to log its agents in", 30,
                   lambda: "agents logged in" in out_file.read_text())
        health = httpx.get(url + "/healthz").json()
        assert "callflow demo" in health["demo"] and "demo carrier" in health["demo"]
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/board")
        banner = page.wait_for_selector("#callflow-demo", timeout=10_000)
        assert banner is not None and banner.is_visible()
        assert banner.inner_text().startswith("DEMO")
        artifacts = REPO_ROOT / "build" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(20_000)  # calls on the board
        page.screenshot(path=str(artifacts / "demo-board.png"))
        page.close()
        code = demo.wait(120)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.wait(60)
    took = time.monotonic() - t0
    output = out_file.read_text()
    print(f"\ncallflow demo ran {took:.1f} s, exit {code}\n{output[-1500:]}")
    assert code == 0, output
    assert "no SIPp process left" in output
    assert sipp_pids_on(range(demo_base, demo_base + 100)) == []
    assert not (settings.state_dir / "demo.pid").exists()
    # every call ended with exactly one outcome; no agent had two calls at once
    wait_until("Asterisk to carry no call", 15,
               lambda: "0 active channels" in demo_pbx.process.cli("core show channels count"))
    time.sleep(1)  # the last hang-ups' AMI events reach the engine
    left = product.call(lambda: {uid: str(call) for uid, call in product.runtime.calls.items()})
    print(f"calls the engine still holds: {left}")
    product.flush()
    with product.store.session() as s:
        calls = list(s.query(Call).all())
    inbound = [c for c in calls if c.direction == "inbound"]
    print(f"calls recorded: {len(calls)} ({len(inbound)} inbound); outcomes "
          f"{sorted({c.outcome for c in calls if c.outcome})}")
    assert len(inbound) >= 8
    assert all(c.outcome and c.ended_at for c in calls), [
        (c.uniqueid, c.outcome, c.ended_at) for c in calls if not (c.outcome and c.ended_at)]
    answered = [c for c in inbound if c.answered_at is not None]
    assert len(answered) >= 4
    # the demo's callers hang up first (STD-110): --patience 12 s < an agent's --talk 30 s
    assert {c.released_by for c in answered} == {"caller"}
    states = product.call(lambda: {a: str(s.state) for a, s in product.runtime.agents.items()})
    print(f"agents after the demo: {states}")
    assert all(state.endswith("logged_out") for a, state in states.items() if a != "1005")
    by_agent: dict[str, list[Call]] = {}
    for c in answered:
        assert c.agent_id is not None
        by_agent.setdefault(c.agent_id, []).append(c)
    for agent, own in by_agent.items():
        own.sort(key=lambda c: c.answered_at)  # type: ignore[arg-type, return-value]
        for first, second in itertools.pairwise(own):
            assert first.ended_at is not None and second.answered_at is not None
            assert first.ended_at <= second.answered_at, (agent, first.uniqueid,
                                                          second.uniqueid)
    # the demo's agents logged out at its end; the demo marker is gone with the demo
    assert "callflow demo" not in (httpx.get(url + "/healthz").json().get("demo") or "")
