"""The special-calls feature on the real Service, no Asterisk (issue 6).

The Service runs in the test's loop with its store, core and API; the PBX's facts are
fed to the runtime as AMI frames (the objects the adapter hands it) and the AMI
actions the feature sends are collected where the adapter would send them (there is
no Asterisk to receive them here; tests/integration/test_*_live.py prove them on one).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from logins import session_token

from callflow.agents.events import LogIn
from callflow.agents.roster import Roster, RosterAgent
from callflow.ami.actions import Fields, encode
from callflow.ami.client import AmiMessage
from callflow.engine.effects import PbxAction, PbxQuery
from callflow.engine.policy import Policy, parse_policy
from callflow.runtime.core import Runtime
from callflow.service import Service, ServiceOptions
from callflow.settings import Ports, Settings
from callflow.special_calls.feature import SpecialCallsFeature
from callflow.store import repo

TOKEN = "deployment-token-" + secrets.token_hex(8)
AGENTS = ("1001", "1002")
FAST = parse_policy({"hold": {"reminder_s": 0.2, "reminder_repeat_s": 0.2, "limit_s": 0.3},
                     "hangup": {"closing_grace_s": 0.2}})
CALLER = "PJSIP/caller-00000001"
LEG = "PJSIP/agent1001-00000002"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ami(name: str, **fields: str) -> AmiMessage:
    return AmiMessage(name, {"Event": name, "Timestamp": f"{time.time():.6f}", **fields},
                      time.monotonic())


class RecordingPbx:
    """The runtime's PBX port, keeping what is sent as AMI wire fields (the real encoder)."""

    def __init__(self, sent: list[tuple[str, Fields]]) -> None:
        self.sent = sent
        self.up = True
        self.stats: dict[str, float] = {}

    async def send(self, action: PbxAction) -> AmiMessage:
        self.sent.append(encode(action))
        return ami("Success")

    async def query(self, query: PbxQuery) -> list[AmiMessage]:
        return []


class Running:
    def __init__(self, service: Service, feature: SpecialCallsFeature, port: int) -> None:
        self.service = service
        self.feature = feature
        self.port = port
        self.sent: list[tuple[str, Fields]] = []
        self.runtime.adapters.pbx = RecordingPbx(self.sent)

    @property
    def runtime(self) -> Runtime:
        assert self.service.runtime is not None
        return self.service.runtime

    def client(self, agent_id: str | None, role: str = "agent") -> httpx.AsyncClient:
        headers = {}
        if agent_id is not None or role != "agent":
            assert self.service.store is not None and self.service.logins is not None
            token = session_token(self.service.store, self.service.logins, agent_id or role,
                                  role, agent_id)
            headers["Authorization"] = f"Bearer {token}"
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", headers=headers)

    def connect_call(self, call_id: str = "c1", agent_id: str = "1001") -> None:
        rt = self.runtime
        rt.agent_event(agent_id, LogIn())
        rt.call_entered(call_id, CALLER, "13900000001", "100")
        rt.choose_agent(call_id, only=agent_id)
        rt.on_ami_batch([ami("DialBegin", Uniqueid=call_id, DestChannel=LEG,
                             DestUniqueid="leg1")])
        rt.on_ami_batch([ami("Newstate", Uniqueid="leg1", ChannelStateDesc="Up")])

    def flush(self) -> None:
        assert self.service.writer is not None
        assert self.service.writer.flush(5)


@pytest.fixture
async def running(tmp_path: Path, migrated_sqlite_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    database = tmp_path / "callflow.db"
    shutil.copyfile(migrated_sqlite_file, database)
    port = _free_port()
    state = tmp_path_factory.getbasetemp() / "special-calls-prompts"
    settings = Settings(state_dir=state, database_url=f"sqlite:///{database}",
                        asterisk_root=tmp_path, policy_file=None, api_token=TOKEN,
                        ports=Ports(ami=_free_port(), agi=0, api=port))
    roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}") for a in AGENTS))
    feature = SpecialCallsFeature()
    service = Service(settings, FAST, roster, ServiceOptions(features=[feature]))
    await service.start()
    try:
        yield Running(service, feature, port)
    finally:
        await service.stop()


async def test_rest_actions_only_on_your_own_call(running: Running) -> None:
    running.connect_call()
    async with running.client(None) as anon:
        r = await anon.post("/api/v1/calls/c1/closing")
        assert r.status_code == 401
    async with running.client("1002") as other:
        r = await other.post("/api/v1/calls/c1/special", json={"procedure": "silent"})
        assert r.status_code == 403 and r.json()["detail"]["error"] == "not_your_call"
        r = await other.post("/api/v1/calls/c1/nuisance")
        assert r.status_code == 403
    assert running.feature.specials["c1"].procedure is None and running.sent == []
    async with running.client("1001") as mine:
        r = await mine.post("/api/v1/calls/nope/closing")
        assert r.status_code == 404 and r.json()["detail"]["error"] == "not_found"
        r = await mine.post("/api/v1/calls/c1/special", json={"procedure": "dance"})
        assert r.status_code == 422
        r = await mine.post("/api/v1/calls/c1/special", json={"procedure": "silent"})
        assert r.status_code == 200, r.text
        assert r.json()["procedure"] == "silent" and r.json()["running"] is True
        r = await mine.post("/api/v1/calls/c1/special", json={"procedure": "noisy_line"})
        assert r.status_code == 409 and r.json()["detail"]["error"] == "procedure_running"
    originates = [f for a, f in running.sent if a == "Originate"]
    assert len(originates) == 1
    assert originates[0]["Channel"] == "Local/barge@callflow-whisper/n"
    assert originates[0]["Variable"] == [f"CALLFLOW_SPY={CALLER}"]
    assert originates[0]["Application"] == "Playback" and "silent_1-" in originates[0]["Data"]
    async with running.client(None, role="supervisor") as sup:  # acts for the call's agent
        r = await sup.post("/api/v1/calls/c1/closing")
        assert r.status_code == 200 and r.json()["closing"] is True


async def test_action_on_a_call_not_connected_is_refused(running: Running) -> None:
    running.runtime.call_entered("c9", CALLER, "13900000001", "100")
    async with running.client("1001") as mine:
        r = await mine.post("/api/v1/calls/c9/closing")
        assert r.status_code == 409 and r.json()["detail"]["error"] == "not_connected"


async def test_duplicated_and_out_of_order_hold_frames_corrupt_nothing(
        running: Running) -> None:
    running.connect_call()
    rt = running.runtime
    rt.on_ami_batch([ami("Unhold", Uniqueid="leg1", Channel=LEG)])  # no hold yet: ignored
    assert "c1" not in running.feature.holds
    rt.on_ami_batch([ami("Hold", Uniqueid="leg1", Channel=LEG)])
    rt.on_ami_batch([ami("Hold", Uniqueid="leg1", Channel=LEG)])  # duplicate: ignored
    await asyncio.sleep(0.45)  # past the reminder (0.2 s) and the limit (0.3 s)
    rt.on_ami_batch([ami("Unhold", Uniqueid="leg1", Channel=LEG)])
    rt.on_ami_batch([ami("Unhold", Uniqueid="leg1", Channel=LEG)])  # duplicate: ignored
    holds = running.feature.holds["c1"]
    assert holds.count == 1 and holds.breaches == 1
    spied = [v for a, f in running.sent if a == "Originate" for v in f["Variable"]]
    assert f"CALLFLOW_SPY={LEG}" in spied  # the beep, to the agent's leg
    assert f"CALLFLOW_SPY={CALLER}" in spied  # the reassurance, to the caller
    rt.on_ami_batch([ami("HangupRequest", Uniqueid="leg1"), ami("Hangup", Uniqueid="leg1"),
                     ami("Hangup", Uniqueid="c1", Cause="16")])
    rt.on_ami_batch([ami("Hold", Uniqueid="leg1", Channel=LEG)])  # after the end: ignored
    assert "c1" not in running.feature.holds
    running.flush()
    store = running.service.store
    assert store is not None
    rows = store.read(repo.holds_for_call, "c1")
    assert len(rows) == 1 and rows[0].hold_s is not None and rows[0].hold_s >= 0.4
    call = store.read(repo.get_call, "c1")
    assert call is not None and call.hold_count == 1
    # the agent released first with no closing: STD-110 violation
    assert (call.released_by, call.release_compliant) == ("agent", False)
    kinds = [a.kind for a in store.read(repo.recent_alarms)]
    assert "hold_limit" in kinds and "agent_hung_up_first" in kinds


async def test_the_agents_line_dropping_is_no_std_110_violation(running: Running) -> None:
    """BYE with Q.850 cause 38 from the agent's phone: a network drop, not the agent
    hanging up on the caller (the live endings matrix found it alarmed as one)."""
    running.connect_call()
    rt = running.runtime
    rt.on_ami_batch([ami("HangupRequest", Uniqueid="leg1", Cause="38"),
                     ami("Hangup", Uniqueid="c1", Cause="16")])
    running.flush()
    store = running.service.store
    assert store is not None
    call = store.read(repo.get_call, "c1")
    assert call is not None and (call.released_by, call.ending) == ("agent", "network_drop")
    assert call.release_compliant is True
    assert "agent_hung_up_first" not in [a.kind for a in store.read(repo.recent_alarms)]


@pytest.mark.parametrize(("wait_s", "compliant"), [(0.3, True), (0.0, False)])
async def test_agent_release_after_the_closing_grace_std_111(
        running: Running, wait_s: float, compliant: bool) -> None:
    policy: Policy = running.service.policy
    running.connect_call()
    rt = running.runtime
    running.feature.act("c1", "1001", "closing")
    await asyncio.sleep(wait_s)
    assert (wait_s >= policy.hangup.closing_grace_s) is compliant
    rt.on_ami_batch([ami("HangupRequest", Uniqueid="leg1"),
                     ami("Hangup", Uniqueid="c1", Cause="16")])
    running.flush()
    store = running.service.store
    assert store is not None
    call = store.read(repo.get_call, "c1")
    assert call is not None and (call.released_by, call.release_compliant) == ("agent", compliant)
    assert call.closing_at is not None
