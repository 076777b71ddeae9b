"""Carrier trunks on the real Asterisk with SIPp carriers (issue 16).

This module runs its own Asterisk, rendered from a real trunks file
(``CALLFLOW_TRUNKS_FILE`` format, read by ``callflow.trunks.load_trunks``), on ports of
the worker's block that the session's Asterisk does not use (AMI base+238, SIP base+260,
AGI base+673, API base+900, RTP base+1600..1999). Two SIPp carriers stand on other
loopback addresses, so Asterisk tells them from the session's callers by address, as it
would a real carrier:

- ``carrier`` (127.0.0.2:base+140) is a registrar that challenges REGISTER with a 401
  digest and checks the answer (SIPp ``verifyauth``), carries outbound calls (rings them
  until CANCEL, logging the request URI, From and P-Asserted-Identity) and delivers
  inbound calls to its DIDs (a SIPp UAC on 127.0.0.2);
- ``refusing`` (127.0.0.3:base+141) answers every REGISTER 403 Forbidden: the
  supervisor gets one ``trunk_registration_refused`` alarm while it lasts.

The carriers start before Asterisk, so its first REGISTERs are answered.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from amitap import AmiTap
from conftest import QUALIFY_S, QUALIFY_TIMEOUT_S, PbxHandle
from portblock import port_base
from product import Product, make_settings
from sippctl import SippControl, SippRun

from callflow.agents.events import IN_CALL
from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import LogIn
from callflow.engine import outbound
from callflow.engine.calls import Phase
from callflow.engine.policy import Policy
from callflow.outbound.feature import OutboundFeature
from callflow.pbx.process import AsteriskProcess
from callflow.pbx.render import AgentEndpoint, AmiLogin, PbxConfig
from callflow.service import ServiceOptions
from callflow.settings import Ports
from callflow.store import repo
from callflow.trunks import Trunk, load_trunks

PRESENTED = "4008001234"
DID = "4008001299"
TOLERANCE_S = 0.5
AGENTS = {"1001": "main", "1002": "vip"}
AUTH_USER = "4008001234"


@dataclass
class TrunkPbx(PbxHandle):
    """The module's Asterisk: agents' softphones on base+146.. (not the session's)."""

    trunks: tuple[Trunk, ...] = ()
    carrier: SippRun | None = None
    refusing: SippRun | None = None
    control: SippControl | None = None
    trunks_file: Path | None = None

    def agent_port(self, ext: str) -> int:
        return self.port_base + 145 + int(ext) - 1000


def _trunks_file(tmp: Path, base: int, password: str) -> Path:
    secret = tmp / "carrier.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    path = tmp / "trunks.toml"
    path.write_text(f'''
[trunks.carrier]
host = "127.0.0.2"
port = {base + 140}
auth = "register"
username = "{AUTH_USER}"
secret_file = "{secret}"
match = ["127.0.0.2"]
codecs = ["alaw", "ulaw"]
country = "cn"
number_format = "national"
outbound = true
presented_number = "{PRESENTED}"
dids = {{ "{DID}" = "vip" }}
registration_retry_s = 2
qualify_frequency_s = 1

[trunks.refusing]
host = "127.0.0.3"
port = {base + 141}
auth = "register"
username = "someone"
secret_file = "{secret}"
registration_retry_s = 2
qualify_frequency_s = 0
''')
    return path


@pytest.fixture(scope="module")
def trunk_pbx(asterisk_root: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[TrunkPbx]:
    base = port_base()
    tmp = tmp_path_factory.mktemp("trunks")
    password = secrets.token_urlsafe(12)
    trunks_file = _trunks_file(tmp, base, password)
    trunks = load_trunks(trunks_file)
    ports = Ports(ami=base + 238, sip=base + 260, agi=base + 673, api=base + 900,
                  rtp_start=base + 1600, rtp_end=base + 1999)
    agents = [AgentEndpoint(ext, static_contact=f"sip:agent{ext}@127.0.0.1:"
                                                f"{base + 145 + int(ext) - 1000}",
                            qualify_frequency=QUALIFY_S, qualify_timeout=QUALIFY_TIMEOUT_S)
              for ext in AGENTS]
    config = PbxConfig(
        ami_port=ports.ami, ami_username="callflow", ami_secret=secrets.token_urlsafe(18),
        sip_port=ports.sip, rtp_start=ports.rtp_start, rtp_end=ports.rtp_end,
        agi_host="127.0.0.1", agi_port=ports.agi, country="cn", agents=agents,
        observer=AmiLogin("observer", secrets.token_urlsafe(18)), trunks=trunks)
    assert config.observer is not None
    control = SippControl(None, ports.sip, base, tmp,  # type: ignore[arg-type]
                          {ext: base + 145 + int(ext) - 1000 for ext in AGENTS},
                          qualify_frequency=QUALIFY_S, qualify_timeout=QUALIFY_TIMEOUT_S)
    carrier = control.start("carrier", "carrier.xml", base + 140, "-aa",
                            "-key", "auth_user", AUTH_USER, "-key", "auth_pass", password,
                            local_ip="127.0.0.2")
    refusing = control.start("refusing", "carrier_forbid.xml", base + 141, "-deadcall_wait", 1,
                             local_ip="127.0.0.3")
    process = AsteriskProcess(asterisk_root, tmp / "pbx", config)
    try:
        process.start()
        tap = AmiTap("127.0.0.1", ports.ami, config.observer.username, config.observer.secret)
        control.tap = tap
        handle = TrunkPbx(process, config, ports, base, tap, {}, trunks, carrier, refusing,
                          control, trunks_file)
        try:
            yield handle
        finally:
            tap.close()
            process.stop()
    finally:
        control.stop_all()


@pytest.fixture(autouse=True)
def _clean_slate(trunk_pbx: TrunkPbx) -> Iterator[None]:
    """Each test ends with no call and none of its own SIPp left (the carriers stay)."""
    yield
    control = trunk_pbx.control
    assert control is not None
    for run in list(control.runs):
        if run not in (trunk_pbx.carrier, trunk_pbx.refusing):
            run.stop()
            control.runs.remove(run)
    trunk_pbx.tap.action(Action="Hangup", Channel="/.*/")


def registrations(pbx: TrunkPbx) -> dict[str, str]:
    _, items = pbx.tap.action_list(Action="PJSIPShowRegistrationsOutbound")
    return {i["ObjectName"]: i.get("Status", "") for i in items
            if i.get("Event") == "OutboundRegistrationDetail"}


def wait_until(what: str, timeout: float, check: object) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def ticks(run: SippRun, label: str) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2)) for m in
            re.finditer(rf"^(\d+) {label}\b ?(.*)$", run.log(), re.M)]


def wait_log(run: SippRun, label: str, timeout: float) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while not (found := ticks(run, label)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {label} in {run.name}'s log after {timeout}s\n"
                                 f"{run.diagnostics()}")
        time.sleep(0.1)
    return found[-1]


def start_product(pbx: TrunkPbx, asterisk_root: Path, tmp: Path, policy: Policy
                  ) -> tuple[Product, OutboundFeature]:
    feature = OutboundFeature(tick_s=0.2)
    settings = replace(make_settings(tmp, pbx, asterisk_root), trunks=pbx.trunks)
    roster = Roster(tuple(RosterAgent(agent_id=a, name=f"Agent {a}", endpoint=f"agent{a}",
                                      static_contact=f"sip:agent{a}@127.0.0.1:"
                                                     f"{pbx.agent_port(a)}", queues=(q,))
                          for a, q in AGENTS.items()))
    product = Product(settings, policy, roster, ServiceOptions(features=[feature]))
    product.start()
    return product, feature


def live_policy(rings: int) -> Policy:
    return Policy.model_validate({"outbound": {
        "calling_window_start": "00:00", "calling_window_end": "23:59",
        "calling_days": "all_but_holidays", "no_answer_rings": rings},
        "agents": {"acw_limit_s": 3}})


def test_the_trunk_registers_with_digest_and_a_403_raises_one_alarm(
        trunk_pbx: TrunkPbx, asterisk_root: Path, tmp_path: Path) -> None:
    assert trunk_pbx.carrier is not None and trunk_pbx.refusing is not None
    wait_until("trunk-carrier registered", 15,
               lambda: registrations(trunk_pbx).get("trunk-carrier") == "Registered")
    wait_log(trunk_pbx.carrier, "REGISTER-200", 5)
    assert not ticks(trunk_pbx.carrier, "REGISTER-BAD-AUTH")
    wait_until("trunk-refusing rejected", 15,  # its first REGISTER may come later
               lambda: registrations(trunk_pbx).get("trunk-refusing") == "Rejected")
    product, _ = start_product(trunk_pbx, asterisk_root, tmp_path, live_policy(6))
    try:
        # Asterisk tries the refusing carrier again every 2 s: the alarm comes once
        product.wait_for(lambda: product.service.trunk_watch.health.refused == {"refusing"},
                         10, "the refusal to be seen")
        time.sleep(4.5)  # two more refusals
        product.flush()
        alarms = [a for a in product.store.read(repo.open_alarms)
                  if a.kind == "trunk_registration_refused"]
        assert len(alarms) == 1, alarms
        assert alarms[0].detail["trunk"] == "refusing"
        refusals = len(ticks(trunk_pbx.refusing, "REGISTER-403"))
        assert refusals >= 3
        print(f"\nrefusing trunk: {refusals} REGISTERs answered 403, 1 alarm "
              f"({alarms[0].detail})")
        assert "carrier" not in product.service.trunk_watch.health.down
    finally:
        product.stop()


def test_outbound_through_the_trunk_presents_the_centre_and_cancels_after_the_rings(
        trunk_pbx: TrunkPbx, asterisk_root: Path, tmp_path: Path) -> None:
    """Two rings (10.0 s at cn cadence) to keep the test short; a '+' number written by
    a person is stored in E.164 and dialled in the trunk's national format."""
    assert trunk_pbx.carrier is not None and trunk_pbx.control is not None
    wait_until("trunk-carrier registered", 15,
               lambda: registrations(trunk_pbx).get("trunk-carrier") == "Registered")
    phone = trunk_pbx.control.softphone("1001", "uas_answer.xml", ring_ms=300)
    product, feature = start_product(trunk_pbx, asterisk_root, tmp_path, live_policy(2))
    try:
        for agent in AGENTS:
            product.call(lambda a=agent: product.runtime.agent_event(a, LogIn()))
        before = len(ticks(trunk_pbx.carrier, "INVITE"))
        task, created = product.run(feature.add_task("manual", "+86 139 0000 0001"))
        assert created and task.number == "+8613900000001"
        limit = outbound.customer_ring_seconds(product.service.policy)
        assert limit == 10.0
        deadline = time.monotonic() + 20
        while len(ticks(trunk_pbx.carrier, "INVITE")) <= before:
            assert time.monotonic() < deadline, trunk_pbx.carrier.diagnostics()
            time.sleep(0.1)
        invite_at, ruri = ticks(trunk_pbx.carrier, "INVITE")[-1]
        _, from_header = ticks(trunk_pbx.carrier, "FROM")[-1]
        _, pai = ticks(trunk_pbx.carrier, "PAI")[-1]
        cancel_at, _ = wait_log(trunk_pbx.carrier, "CANCEL", limit + 10)
        rang = (cancel_at - invite_at) / 1000
        print(f"\nthrough the trunk: {ruri}\n  {from_header}\n  {pai}\n"
              f"  rang {rang:.3f} s (limit {limit:g} s)")
        assert "sip:13900000001@127.0.0.2" in ruri  # national format: a cn mobile, no 0
        assert f"sip:{PRESENTED}@" in from_header and "Task" not in from_header
        assert "13900000001" not in from_header  # never the customer's own number
        assert f"sip:{PRESENTED}@" in pai
        assert rang == pytest.approx(limit, abs=TOLERANCE_S)
        done = wait_for_task(product, task.id, 10)
        assert done.last_outcome == "no_answer" and done.attempts == 1
        assert phone.running
    finally:
        product.stop()


def test_six_rings_at_the_default_cadence_through_the_trunk_is_30_s(
        trunk_pbx: TrunkPbx, asterisk_root: Path, tmp_path: Path) -> None:
    """STD-081 at the Policy's default (6 rings x 5 s at cn cadence) through the trunk."""
    assert trunk_pbx.carrier is not None and trunk_pbx.control is not None
    wait_until("trunk-carrier registered", 15,
               lambda: registrations(trunk_pbx).get("trunk-carrier") == "Registered")
    trunk_pbx.control.softphone("1001", "uas_answer.xml", ring_ms=300)
    product, feature = start_product(trunk_pbx, asterisk_root, tmp_path, live_policy(6))
    try:
        product.call(lambda: product.runtime.agent_event("1001", LogIn()))
        before = len(ticks(trunk_pbx.carrier, "CANCEL"))
        task, _ = product.run(feature.add_task("manual", "0086 139 0000 0002"))
        assert task.number == "+8613900000002"
        limit = outbound.customer_ring_seconds(product.service.policy)
        assert limit == 30.0
        deadline = time.monotonic() + limit + 20
        while len(ticks(trunk_pbx.carrier, "CANCEL")) <= before:
            assert time.monotonic() < deadline, trunk_pbx.carrier.diagnostics()
            time.sleep(0.1)
        invite_at, ruri = ticks(trunk_pbx.carrier, "INVITE")[-1]
        cancel_at, _ = ticks(trunk_pbx.carrier, "CANCEL")[-1]
        rang = (cancel_at - invite_at) / 1000
        print(f"\ndefault cadence through the trunk: {ruri}, rang {rang:.3f} s "
              f"(limit {limit:g} s)")
        assert "sip:13900000002@" in ruri
        assert rang == pytest.approx(30.0, abs=TOLERANCE_S)
        done = wait_for_task(product, task.id, 10)
        assert done.last_outcome == "no_answer" and done.attempts == 1  # type: ignore[attr-defined]
    finally:
        product.stop()


def test_an_unknown_final_code_from_the_carrier_is_a_counted_failure(
        trunk_pbx: TrunkPbx, asterisk_root: Path, tmp_path: Path) -> None:
    """The carrier answers 499 (no RFC defines it): the attempt is classified (failed),
    counted, and the dialer goes on; the agent is free again."""
    assert trunk_pbx.carrier is not None and trunk_pbx.control is not None
    wait_until("trunk-carrier registered", 15,
               lambda: registrations(trunk_pbx).get("trunk-carrier") == "Registered")
    trunk_pbx.control.softphone("1001", "uas_answer.xml", ring_ms=300)
    product, feature = start_product(trunk_pbx, asterisk_root, tmp_path, live_policy(2))
    try:
        product.call(lambda: product.runtime.agent_event("1001", LogIn()))
        t0 = trunk_pbx.tap.mark()
        task, _ = product.run(feature.add_task("manual", "+86 139 9900 0001"))
        end = trunk_pbx.tap.wait_event(
            lambda e: e["Event"] == "DialEnd" and e.get("DestChannel", "").startswith(
                "PJSIP/trunk-carrier-"), 20, t0)
        assert ticks(trunk_pbx.carrier, "USER")[-1][1] == "INVITE sip:13999000001@"
        done = wait_for_task(product, task.id, 10)
        attempts = product.store.read(repo.task_attempts, task.id)
        print(f"\n499 from the carrier: DialStatus {end['DialStatus']}, outcome "
              f"{done.last_outcome}, cause {attempts[0].hangup_cause}")  # type: ignore[attr-defined]
        assert done.last_outcome == "failed" and done.attempts == 1  # type: ignore[attr-defined]
        assert [a.outcome for a in attempts] == ["failed"]
        product.wait_for(lambda: product.runtime.agents["1001"].state not in IN_CALL, 10,
                         "agent 1001 to be free of the attempt")
    finally:
        product.stop()


def wait_for_task(product: Product, task_id: int, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while True:
        task = product.store.read(repo.get_task, task_id)
        if task is not None and task.attempts >= 1 and task.last_outcome:
            return task
        assert time.monotonic() < deadline, "the attempt was not recorded"
        time.sleep(0.1)


def test_an_inbound_call_to_a_did_reaches_the_mapped_queue(
        trunk_pbx: TrunkPbx, asterisk_root: Path, tmp_path: Path) -> None:
    """The carrier (127.0.0.2) calls DID 4008001299, mapped to queue vip in the trunks
    file: agent 1002 (vip) answers, agent 1001 (main) is never offered it."""
    assert trunk_pbx.control is not None
    control = trunk_pbx.control
    phones = [control.softphone(ext, "uas_answer.xml", ring_ms=500, wait=False)
              for ext in AGENTS]
    control.wait_ready(*phones)
    product, _ = start_product(trunk_pbx, asterisk_root, tmp_path, live_policy(6))
    try:
        for agent in AGENTS:
            product.call(lambda a=agent: product.runtime.agent_event(a, LogIn()))
        t0 = trunk_pbx.tap.mark()
        caller = control.start("carrier-uac", "uac_call.xml", trunk_pbx.port_base + 142,
                               "-s", DID, control.target, "-m", 1, "-d", 2000,
                               "-timeout", "60s", "-key", "from_user", "13800000009",
                               local_ip="127.0.0.2")
        begin = trunk_pbx.tap.wait_event("DialBegin", 20, since=t0)
        assert begin["DestChannel"].startswith("PJSIP/agent1002-"), begin
        assert begin["Channel"].startswith("PJSIP/trunk-carrier-"), begin
        assert caller.wait(60) == 0, caller.diagnostics()
        call_id = begin["Uniqueid"]

        def ended() -> bool:
            call = product.runtime.calls.get(call_id)
            return call is not None and call.phase is Phase.ENDED

        product.wait_for(ended, 15, "the call to end")
        product.flush()
        call = product.store.read(repo.get_call, call_id)
        assert call is not None
        assert (call.queue, call.agent_id, call.caller_number) == ("vip", "1002",
                                                                   "13800000009")
        offers = product.store.read(repo.offers_for_call, call_id)
        assert [o.agent_id for o in offers] == ["1002"]
    finally:
        product.stop()


def test_a_did_the_trunk_does_not_carry_is_refused(trunk_pbx: TrunkPbx) -> None:
    assert trunk_pbx.control is not None
    control = trunk_pbx.control
    caller = control.start("carrier-uac-bad", "uac_call.xml", trunk_pbx.port_base + 143,
                           "-s", "4008007777", control.target, "-m", 1, "-d", 500,
                           "-timeout", "20s", "-key", "from_user", "13800000009",
                           local_ip="127.0.0.2")
    status = caller.wait(30)
    assert status != 0  # the call failed ...
    assert "404" in caller.diagnostics()  # ... with 404 Not Found, before any channel



def test_trunk_check_reports_each_trunk_and_fails_when_one_is_down(
        trunk_pbx: TrunkPbx, tmp_path: Path) -> None:
    """``callflow trunk check`` against the running Asterisk: one line a trunk; the 403
    trunk is down, so the exit status is 1."""
    wait_until("trunk-carrier registered", 15,
               lambda: registrations(trunk_pbx).get("trunk-carrier") == "Registered")
    wait_until("the carrier's contact qualified", 10,
               lambda: trunk_pbx.control is not None
               and trunk_pbx.control.contact_status("trunk-carrier") == "Reachable")
    env = {**os.environ, "CALLFLOW_STATE_DIR": str(tmp_path / "state"),
           "CALLFLOW_AMI_PORT": str(trunk_pbx.ports.ami),
           "CALLFLOW_SIP_PORT": str(trunk_pbx.ports.sip),
           "CALLFLOW_AGI_PORT": str(trunk_pbx.ports.agi),
           "CALLFLOW_API_PORT": str(trunk_pbx.ports.api),
           "CALLFLOW_AMI_USERNAME": trunk_pbx.username, "CALLFLOW_AMI_SECRET": trunk_pbx.secret,
           "CALLFLOW_TRUNKS_FILE": str(trunk_pbx.trunks_file)}
    env.pop("CALLFLOW_PORT_BASE", None)
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "callflow.cli", "trunk", "check"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - t0
    print(f"\n{done.stdout}{done.stderr}(exit {done.returncode}, {took:.2f} s)")
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 2
    assert lines[0].startswith("carrier: up -- registration Registered, "
                               f"sip:127.0.0.2:{trunk_pbx.port_base + 140} Reachable rtt ")
    assert lines[1].startswith("refusing: DOWN -- registration Rejected")
    env["CALLFLOW_TRUNKS_FILE"] = ""
    none = subprocess.run([sys.executable, "-m", "callflow.cli", "trunk", "check"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (none.returncode, none.stdout.strip()) == (
        0, "no trunk configured (CALLFLOW_TRUNKS_FILE): outbound calls have no way out")


def test_a_dead_carrier_raises_one_alarm_and_attempts_are_counted_failures(
        trunk_pbx: TrunkPbx, asterisk_root: Path, tmp_path: Path) -> None:
    """Last in this module: the carrier goes silent mid-campaign (its SIPp stopped). The
    qualify OPTIONS go unanswered: one ``trunk_unreachable`` alarm. An attempt dialled
    meanwhile cannot reach the customer (Asterisk refuses the Dial at once, CHANUNAVAIL,
    no customer leg; Dial gives the agent's leg cause 3, no route to destination): it is
    recorded in the task's history as ``no_route`` -- not an invalid number, not a
    no-answer -- counted on the retry ladder (issue 16), and the task waits out the retry
    spacing instead of being dialled again at once."""
    assert trunk_pbx.carrier is not None and trunk_pbx.control is not None
    trunk_pbx.control.softphone("1001", "uas_answer.xml", ring_ms=300)
    product, feature = start_product(trunk_pbx, asterisk_root, tmp_path, live_policy(2))
    try:
        product.call(lambda: product.runtime.agent_event("1001", LogIn()))
        t0 = time.monotonic()
        trunk_pbx.carrier.stop()
        watch = product.service.trunk_watch
        product.wait_for(lambda: "carrier" in watch.health.unreachable, 15,
                         "the carrier to be seen unreachable")
        seen = time.monotonic() - t0
        task, _ = product.run(feature.add_task("manual", "+86 139 0000 0003"))
        deadline = time.monotonic() + 20
        while not (attempts := product.store.read(repo.task_attempts, task.id)):
            assert time.monotonic() < deadline, "the attempt was not recorded"
            time.sleep(0.1)
        time.sleep(3)  # more unanswered OPTIONS: still one alarm; no second dial
        product.flush()
        alarms = [a for a in product.store.read(repo.open_alarms)
                  if a.kind == "trunk_unreachable"]
        print(f"\ncarrier silent: unreachable after {seen:.2f} s; alarms {len(alarms)}; "
              f"attempt {attempts[0].outcome} cause {attempts[0].hangup_cause}")
        assert len(alarms) == 1 and alarms[0].detail["trunk"] == "carrier"
        assert [a.outcome for a in product.store.read(repo.task_attempts, task.id)] == [
            "no_route"]
        assert [a.kind for a in product.store.read(repo.open_alarms)
                if a.kind == "no_route"] == ["no_route"]
        after = product.store.read(repo.get_task, task.id)
        assert after is not None and (after.status, after.attempts) == ("pending", 1)
    finally:
        product.stop()
