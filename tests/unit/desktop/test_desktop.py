"""The agent desktop on the real Service (no Asterisk): websocket, hot-desking, holds, restore.

The Service runs in the test's loop exactly as ``callflow run`` builds it (store, core,
FastAGI, API under uvicorn, the AgentDesktop feature); only the AMI link has no
Asterisk behind it, so the PBX's facts are fed to the runtime as AMI frames, the same
objects the adapter hands it. Desktops are real websocket clients (the websockets
library); every frame they receive is checked against docs/agent-protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from agent_protocol_schema import frame_errors
from edges import as_edges
from logins import session_token
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from callflow.agents.events import (
    AgentState,
    ApproveBusy,
    CallAnswered,
    CallEnded,
    CallOffered,
    HoldEnded,
    HoldStarted,
    RequestState,
    SubmitWrapup,
)
from callflow.agents.restore import StoredAgent, restored
from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import timer_key
from callflow.ami.client import AmiMessage
from callflow.desktop.feature import AgentDesktop
from callflow.engine.clock import FakeClock
from callflow.engine.effects import Alarm, Publish, ShowEndpoint, StartTimer
from callflow.engine.policy import Policy, parse_policy
from callflow.runtime.core import Runtime
from callflow.service import Service, ServiceOptions, edge_adapters
from callflow.settings import Ports, Settings
from callflow.store import repo

S = AgentState
TOKEN = "deployment-token-" + secrets.token_hex(8)
AGENTS = ("1001", "1002", "1003")
FAST = parse_policy({"agents": {"acw_limit_s": 0.4},
                     # reminders at 0.3 and 0.7 s, the limit at 1.0 s: apart by more than a
                     # loaded 2-core machine delays a timer
                     "hold": {"reminder_s": 0.3, "reminder_repeat_s": 0.4, "limit_s": 1.0},
                     "security": {"session_check_s": 0.2}})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Desk:
    """One desktop connection; every frame it reads must conform to the protocol."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert frame_errors(frame) == [], frame
        return frame

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request; return its ack or error (events before it are skipped)."""
        self.next_id += 1
        await self.send({"type": kind, "id": self.next_id, **fields})
        while True:
            frame = await self.recv()
            if frame["type"] in ("ack", "error") and frame.get("id") == self.next_id:
                return frame

    async def event(self, payload_type: str = "agent_state", timeout: float = 2.0,
                    **match: Any) -> dict[str, Any]:
        """The next event whose payload has this type (and fields)."""
        while True:
            frame = await self.recv(timeout)
            payload = frame.get("payload", {})
            if frame["type"] == "event" and payload.get("type") == payload_type and all(
                    payload.get(k) == v for k, v in match.items()):
                return frame

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within ``seconds`` (for 'nothing else happened')."""
        frames = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(await self.recv(left))
            except TimeoutError:
                break
        return frames


class Running:
    def __init__(self, service: Service, port: int) -> None:
        self.service = service
        self.port = port
        self.stopped = False

    async def stop(self) -> None:
        """The engine goes down (as for a restart); the fixture does not stop it again."""
        self.stopped = True
        await self.service.stop()

    @property
    def runtime(self) -> Runtime:
        assert self.service.runtime is not None
        return self.service.runtime

    def token(self, agent_id: str, role: str = "agent") -> str:
        assert self.service.store is not None and self.service.logins is not None
        return session_token(self.service.store, self.service.logins, agent_id, role,
                             agent_id if role == "agent" else None)

    def url(self, path: str = "/ws/desktop", **query: Any) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?{params}" if params else "")

    async def open(self, token: str | None, path: str = "/ws/desktop",
                   **query: Any) -> ClientConnection:
        """A connection that authenticates as the page does: a first ``auth`` frame."""
        ws = await connect(self.url(path, **query))
        if token is not None:
            await ws.send(json.dumps({"type": "auth", "token": token}))
        return ws

    async def desk(self, agent_id: str = "1001", token: str | None = None,
                   **query: Any) -> Desk:
        """A desktop for ``agent_id``, past its hello and first snapshot (or resumed)."""
        desk = Desk(await self.open(token or self.token(agent_id), **query))
        hello = await desk.recv()
        assert hello["type"] == "hello" and hello["agent_id"] == agent_id
        if "since" not in query:
            snapshot = await desk.recv()
            assert snapshot["type"] == "snapshot" and snapshot["reason"] == "initial"
        return desk


Start = Callable[..., Awaitable[Running]]


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir for the run: the generated prompt files are reused by every service."""
    return tmp_path_factory.mktemp("desktop-state")


@pytest.fixture
async def start(tmp_path: Path, prompts_dir: Path,
                migrated_sqlite_file: Path) -> AsyncIterator[Start]:
    services: list[Running] = []
    database = tmp_path / "callflow.db"
    shutil.copyfile(migrated_sqlite_file, database)

    async def start_service(policy: Policy = FAST, agents: tuple[str, ...] = AGENTS,
                            features: list[Any] | None = None) -> Running:
        port = _free_port()
        settings = Settings(state_dir=prompts_dir, database_url=f"sqlite:///{database}",
                            asterisk_root=tmp_path, policy_file=None, api_token=TOKEN,
                            ports=Ports(ami=_free_port(), agi=0, api=port))
        roster = Roster(tuple(RosterAgent(a, f"Agent {a}", f"agent{a}") for a in agents))
        service = Service(settings, policy, roster,
                          ServiceOptions(features=features or [AgentDesktop()]))
        await service.start()
        services.append(Running(service, port))
        return services[-1]

    yield start_service
    for running in reversed(services):
        if not running.stopped:
            await running.stop()


def ami(name: str, **fields: str) -> AmiMessage:
    return AmiMessage(name, {"Event": name, **fields}, time.monotonic())


async def expect_close(ws: ClientConnection, timeout: float = 2.0) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


# --- logging in at a desk ------------------------------------------------------------------


async def test_login_at_a_desk_routes_that_desks_calls_and_facts_to_the_agent(
        start: Start) -> None:
    running = await start()
    rt = running.runtime
    desk = await running.desk("1001")
    ack = await desk.request("login", extension="1003")
    assert (ack["type"], ack["state"]) == ("ack", "ready")
    event = await desk.event(state="ready")
    assert event["payload"]["extension"] == "agent1003" and event["payload"]["cause"] == "login"
    assert event["seq"] <= ack["seq"]
    assert rt.agent_at("agent1003") == "1001"
    assert rt.agent_for_channel("PJSIP/agent1003-0000002a") == "1001"
    assert rt.agent_at("agent1001") is None  # its owner sits elsewhere: nobody's now
    # a call for the agent rings the desk they sit at
    rt.call_entered("c1", "PJSIP/caller-1", "13900000001", "100")
    member = rt.choose_agent("c1")
    assert member is not None and (member.agent_id, member.endpoint) == ("1001", "agent1003")
    await desk.event(state="ringing", call_id="c1")
    # DialBegin to that desk is this agent's offer; its answer makes them talk
    rt.on_ami_batch([ami("DialBegin", Uniqueid="c1", DestChannel="PJSIP/agent1003-00000001",
                         DestUniqueid="leg1", Timestamp=f"{time.time():.6f}")])
    offer = await desk.event("call")
    assert offer["payload"]["call"]["caller_number"] == "13900000001"
    rt.on_ami_batch([ami("Newstate", Uniqueid="leg1", ChannelStateDesc="Up",
                         Timestamp=f"{time.time():.6f}")])
    await desk.event(state="on_call")
    # a desktop opened now shows the call again (the snapshot's desk part)
    late = await running.open(running.token("1001"))
    second = Desk(late)
    await second.recv()  # hello
    snapshot = await second.recv()
    assert snapshot["state"]["desks"]["1001"]["call"]["uniqueid"] == "c1"
    assert [a["agent_id"] for a in snapshot["state"]["agents"]] == ["1001"]
    await late.close()
    await desk.ws.close()


async def test_a_taken_or_unknown_desk_is_refused_and_nothing_changes(start: Start) -> None:
    running = await start()
    one = await running.desk("1001")
    assert (await one.request("login", extension="agent1003"))["type"] == "ack"
    two = await running.desk("1002")
    for extension, error in (("1003", "extension_taken"), ("9999", "unknown_extension"),
                             ("agent10", "unknown_extension")):
        refused = await two.request("login", extension=extension)
        assert (refused["type"], refused["error"], refused["request"]) == (
            "error", error, "login")
    assert running.runtime.agents["1002"].state is S.LOGGED_OUT
    assert (await two.request("login", extension="1002"))["state"] == "ready"
    # logged out, the desk is free again
    assert (await one.request("logout"))["state"] == "logged_out"
    three = await running.desk("1003")
    assert (await three.request("login", extension="1003"))["state"] == "ready"
    for d in (one, two, three):
        await d.ws.close()


async def test_desk_reachability_follows_the_desk_not_the_person(start: Start) -> None:
    running = await start()
    rt = running.runtime
    rt.on_ami_batch([ami("ContactStatus", AOR="agent1003", ContactStatus="Unreachable")])
    assert rt.endpoint_reachable["agent1003"] is False
    assert rt.agents["1003"].softphone_reachable is False  # its logged-out owner is told
    desk = await running.desk("1001")
    ack = await desk.request("login", extension="1003")
    assert (ack["state"], ack["reason"]) == ("not_ready", "unreachable")  # STD-099
    assert (await desk.request("ready"))["error"] == "softphone_unreachable"
    rt.on_ami_batch([ami("ContactStatus", AOR="agent1003", ContactStatus="Reachable")])
    event = await desk.event(softphone_reachable=True)
    assert event["payload"]["state"] == "not_ready"  # the agent makes themselves ready
    assert (await desk.request("ready"))["state"] == "ready"
    rt.on_ami_batch([ami("ContactStatus", AOR="agent1003", ContactStatus="Removed")])
    event = await desk.event(state="not_ready")
    assert event["payload"]["reason"] == "unreachable"
    assert event["payload"]["cause"] == "softphone_unreachable"
    assert rt.agents["1003"].state is S.LOGGED_OUT
    await desk.ws.close()


# --- who may see what ----------------------------------------------------------------------


async def test_an_agent_cannot_open_another_agents_topic(start: Start) -> None:
    running = await start()
    mine = running.token("1001")
    cases: list[tuple[str, str, dict[str, str], str]] = [
        (mine, "/ws/desktop", {"agent": "1002"}, "forbidden topics for this principal"),
        (mine, "/ws/events", {"topics": "agent:1002"}, "forbidden topics for this principal"),
        (mine, "/ws/events", {"topics": "board"}, "forbidden topics for this principal"),
        ("s1.forged.token", "/ws/desktop", {}, "unauthorized"),
        ("s2.forged-token", "/ws/desktop", {}, "unauthorized"),
        ("", "/ws/desktop", {}, "unauthorized"),
        (TOKEN, "/ws/desktop", {}, "bad agent: a supervisor names the agent with ?agent="),
        (TOKEN, "/ws/desktop", {"agent": "4242"}, "bad agent: not in the roster"),
        (mine, "/ws/desktop", {"since": "x"}, "bad since: expected a non-negative integer"),
    ]
    for token, path, query, reason in cases:
        ws = await running.open(token, path, **query)
        assert await expect_close(ws) == (1008, reason), (path, query)
    # the agent's own events stream carries only its own topic
    rt = running.runtime
    async with await running.open(mine, "/ws/events") as events:
        snapshot = json.loads(await events.recv())
        assert [a["agent_id"] for a in snapshot["state"]["agents"]] == ["1001"]
        assert snapshot["state"]["calls"] == [] and list(snapshot["state"]["desks"]) == ["1001"]
        rt.log_in("1002")
        rt.log_in("1001")
        frame = json.loads(await asyncio.wait_for(events.recv(), 2))
        assert frame["topic"] == "agent:1001"


async def test_logging_out_or_an_admins_revoke_closes_the_open_desktop(start: Start) -> None:
    running = await start()  # FAST: sessions are re-checked every 0.2 s
    token = running.token("1001")
    mine, other = await running.desk("1001", token), await running.desk("1002")
    admin = {"Authorization": "Bearer " + running.token("root", "admin")}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http:
        out = await http.delete("/api/v1/session", headers={"Authorization": f"Bearer {token}"})
        assert out.json() == {"ended": True}
        assert await expect_close(mine.ws) == (1008, "session ended")
        revoked = await http.delete("/api/v1/users/1002/sessions", headers=admin)
        assert revoked.json() == {"username": "1002", "sessions_ended": 1}
        assert await expect_close(other.ws) == (1008, "session ended")
        # the supervisor's desktop on the deployment token is not a session: it stays
        watcher = Desk(await running.open(TOKEN, agent="1001"))
        await watcher.recv()  # hello
        await asyncio.sleep(0.5)
        await watcher.request("login", extension="1001")
        await watcher.ws.close()


async def test_a_supervisor_opens_any_desktop_and_acts_as_supervisor(start: Start) -> None:
    running = await start()
    ws = await running.open(TOKEN, agent="1002")
    desk = Desk(ws)
    hello = await desk.recv()
    assert (hello["agent_id"], hello["role"]) == ("1002", "supervisor")
    await desk.recv()  # snapshot
    await desk.request("login", extension="1002")
    event = await desk.event(state="ready")
    assert event["payload"]["by"] == "supervisor"
    assert (await desk.request("logout"))["state"] == "logged_out"
    await ws.close()
    qa = running.token("qa1", "qa")
    async with await running.open(qa, agent="1002") as ws:
        watcher = Desk(ws)
        assert (await watcher.recv())["role"] == "qa"
        await watcher.recv()  # snapshot
        refused = await watcher.request("login", extension="1002")
        assert (refused["type"], refused["error"]) == ("error", "read_only")
    assert running.runtime.agents["1002"].state is S.LOGGED_OUT


# --- requests ------------------------------------------------------------------------------


async def test_illegal_requests_get_the_machines_reason_and_change_nothing(start: Start) -> None:
    running = await start()
    rt = running.runtime
    desk = await running.desk("1001")
    assert (await desk.request("ready"))["error"] == "not_logged_in"
    await desk.request("login", extension="1001")
    await desk.event(state="ready")
    before = rt.agents["1001"]
    refusals = [
        (("ready",), {}, "no_change"),
        (("not_ready",), {}, "reason_required"),
        (("busy",), {"reason": "nap"}, "unknown_reason"),
        (("not_ready",), {"reason": "ring_no_answer"}, "system_reason"),
        (("end_acw",), {}, "not_in_acw"),
        (("login",), {"extension": "1001"}, "already_logged_in"),
    ]
    for (kind,), fields, error in refusals:
        refused = await desk.request(kind, **fields)
        assert (refused["type"], refused["error"], refused["request"]) == ("error", error, kind)
    assert rt.agents["1001"] == before  # state unchanged, not even a timer
    await desk.send({"type": "ping", "id": "after"})
    assert await desk.recv() == {"v": 1, "type": "pong", "id": "after"}  # no event came
    assert (await desk.request("busy", reason="meal"))["state"] == "busy"
    rt.agent_event("1001", RequestState(S.READY))
    rt.agent_event("1001", CallOffered("c9"))
    assert (await desk.request("logout"))["error"] == "on_call"
    await desk.ws.close()


async def test_two_desktops_resume_garbage_unknown_and_oversized_frames(start: Start) -> None:
    running = await start()
    rt = running.runtime
    errors_before = rt.stats.errors
    a = await running.desk("1001")
    b = await running.desk("1001")
    await a.request("login", extension="1001")
    seen_a = await a.event(state="ready")
    seen_b = await b.event(state="ready")
    assert seen_a == seen_b  # both desktops get the same event, same seq
    await b.ws.close()
    last = seen_b["seq"]
    # changes while b is away
    await a.request("busy", reason="meal")
    await a.request("not_ready", reason="training")
    await a.request("ready")
    b = await running.desk("1001", since=last)
    resumed = [await b.event() for _ in range(3)]
    assert [(f["payload"]["state"], f["payload"]["reason"]) for f in resumed] == [
        ("busy", "meal"), ("not_ready", "training"), ("ready", "")]
    assert [f["seq"] for f in resumed] == sorted(f["seq"] for f in resumed)
    assert resumed[0]["seq"] > last
    # garbage, unknown types and binary frames: an error frame, the connection kept
    for bad, code in (("{nope", "bad_json"), ('{"type":"subscribe","topic":"agent:1002"}',
                                              "unknown_type"),
                      ('{"type":"dance"}', "unknown_type"), (b"\x00\x01", "binary_not_supported")):
        await b.send(bad) if isinstance(bad, str) else await b.ws.send(bad)
        frame = await b.recv()
        assert (frame["type"], frame["error"]) == ("error", code)
    await b.send({"type": "ping", "id": 1})
    assert (await b.recv())["type"] == "pong"
    # oversized: an error frame, then a clean close 1009
    await b.send(json.dumps({"type": "ready", "pad": "x" * 70_000}))
    frame = await b.recv()
    assert frame["error"] == "frame_too_large"
    assert await expect_close(b.ws) == (1009, "frame_too_large")
    # the engine and the other desktop are unaffected
    assert (await a.request("busy", reason="restroom"))["state"] == "busy"
    assert rt.stats.errors == errors_before
    await a.ws.close()


async def test_a_slow_desktop_gets_one_snapshot_instead_of_its_backlog(start: Start) -> None:
    running = await start()
    rt = running.runtime
    desk = await running.desk("1001")
    rt.log_in("1001")
    for i in range(150):  # 300 changes published at once: more than the 256 buffered
        rt.agent_event("1001", RequestState(S.BUSY, "meal" if i % 2 else "restroom"))
        rt.agent_event("1001", RequestState(S.READY))
    frames = []
    while (frame := await desk.recv())["type"] != "snapshot":
        frames.append(frame)
    assert frame["reason"] == "overflow"
    assert frame["state"]["agents"][0]["state"] == "ready"
    assert frame["seq"] == running.service.hub.last_seq
    assert len(frames) < 260
    await desk.ws.close()


# --- timers: ACW and hold reminders ---------------------------------------------------------


async def test_acw_ends_by_itself_at_the_limit_and_the_desktop_knows_when(start: Start) -> None:
    running = await start()
    rt = running.runtime
    desk = await running.desk("1001")
    await desk.request("login", extension="1001")
    rt.agent_event("1001", CallOffered("c1"))
    rt.agent_event("1001", CallAnswered("c1"))
    rt.agent_event("1001", CallEnded("c1"))
    acw = (await desk.event(state="acw"))["payload"]
    limit = FAST.agents.acw_limit_s
    assert acw["acw_deadline_epoch"] == pytest.approx(acw["since_epoch"] + limit, abs=0.01)
    ready = await desk.event(state="ready")
    assert ready["payload"]["cause"] == "acw_limit"
    assert time.time() == pytest.approx(acw["acw_deadline_epoch"], abs=0.25)
    await desk.ws.close()


async def test_hold_reminders_and_limit_until_the_hold_ends(start: Start) -> None:
    running = await start()
    rt = running.runtime
    desk = await running.desk("1001")
    await desk.request("login", extension="1001")
    rt.call_entered("c1", "PJSIP/caller-1", "13900000001", "100")
    rt.choose_agent("c1")
    rt.on_ami_batch([ami("DialBegin", Uniqueid="c1", DestChannel="PJSIP/agent1001-00000001",
                         DestUniqueid="leg1", Timestamp=f"{time.time():.6f}")])
    rt.on_ami_batch([ami("Newstate", Uniqueid="leg1", ChannelStateDesc="Up",
                         Timestamp=f"{time.time():.6f}")])
    await desk.event(state="on_call")
    rt.on_ami_batch([ami("Hold", Uniqueid="leg1", Channel="PJSIP/agent1001-00000001")])
    held = (await desk.event(state="on_hold"))["payload"]
    hold = FAST.hold
    reminders = []
    while len(reminders) < 3:
        frame = await desk.recv()
        if frame.get("payload", {}).get("type") in ("hold_reminder", "hold_limit"):
            reminders.append(frame["payload"])
    assert [(r["type"], r.get("count"), r["std"]) for r in reminders] == [
        ("hold_reminder", 1, "STD-041"), ("hold_reminder", 2, "STD-041"),
        ("hold_limit", None, "STD-040")]
    assert reminders[0]["held_s"] == pytest.approx(hold.reminder_s, abs=0.2)
    assert reminders[1]["held_s"] == pytest.approx(hold.reminder_s + hold.reminder_repeat_s,
                                                   abs=0.2)
    assert reminders[2]["held_s"] == pytest.approx(hold.limit_s, abs=0.2)
    rt.on_ami_batch([ami("Unhold", Uniqueid="leg1", Channel="PJSIP/agent1001-00000001")])
    back = (await desk.event(state="on_call"))["payload"]
    assert back["since_epoch"] > held["since_epoch"]
    later = await desk.quiet(3 * hold.reminder_repeat_s)
    assert not [f for f in later if f.get("payload", {}).get("type", "").startswith("hold_")]
    # a new hold starts its own count
    rt.agent_event("1001", HoldStarted("c1"))
    again = (await desk.event("hold_reminder"))["payload"]
    assert again["count"] == 1
    rt.agent_event("1001", HoldEnded("c1"))
    await desk.ws.close()


def test_the_default_features_send_the_hold_reminders_once() -> None:
    """The special-calls feature runs the hold machine; exactly one of it and the desktop
    tells the desktop of hold reminders (the wiring in default_features decides)."""
    from callflow.cli import default_features
    from callflow.special_calls.feature import SpecialCallsFeature

    features = default_features()
    desktop = next(f for f in features if isinstance(f, AgentDesktop))
    special = next(f for f in features if isinstance(f, SpecialCallsFeature))
    assert desktop.hold_reminders != special.desktop_hold_reminders


@pytest.mark.parametrize(("features", "sent"), [
    (lambda: [AgentDesktop(hold_reminders=False)], False),
    (lambda: [AgentDesktop()], True),
], ids=["switched-off", "on-by-default"])
async def test_one_sender_of_hold_reminders(start: Start, features: Any, sent: bool) -> None:
    running = await start(features=features())
    rt = running.runtime
    desk = await running.desk("1001")
    await desk.request("login", extension="1001")
    for event in (CallOffered("c1"), CallAnswered("c1"), HoldStarted("c1")):
        rt.agent_event("1001", event)
    await desk.event(state="on_hold")
    frames = await desk.quiet(FAST.hold.limit_s + 0.3)
    kinds = [f["payload"]["type"] for f in frames if f.get("type") == "event"
             and f["payload"]["type"].startswith("hold_")]
    if sent:  # reminders at 0.2 s, then every 0.25 s; the limit at 0.5 s
        assert kinds[:3] == ["hold_reminder", "hold_reminder", "hold_limit"], kinds
    else:
        assert kinds == []
    await desk.ws.close()


# --- restore after an engine restart ---------------------------------------------------------


async def test_an_engine_restart_restores_agents_desks_and_acw_time(start: Start) -> None:
    policy = parse_policy({"agents": {"acw_limit_s": 1.5}})
    first = await start(policy)
    rt = first.runtime
    rt.log_in("1001", "1002")  # hot-desked
    rt.agent_event("1001", RequestState(S.BUSY, "meal"))
    rt.log_in("1003")
    rt.agent_event("1003", CallOffered("c1"))
    rt.agent_event("1003", CallAnswered("c1"))
    rt.agent_event("1003", CallEnded("c1"))
    busy_since = rt.epoch_of(rt.agents["1001"].since)
    acw_deadline = rt.epoch_of(rt.agents["1003"].acw_deadline)
    await first.stop()
    await asyncio.sleep(0.3)

    second = await start(policy)
    rt = second.runtime
    one, two, three = (rt.agents[a] for a in AGENTS)
    assert (one.state, one.reason, one.extension) == (S.BUSY, "meal", "agent1002")
    assert rt.epoch_of(one.since) == pytest.approx(busy_since, abs=0.01)
    assert rt.agent_at("agent1002") == "1001"
    assert two.state is S.LOGGED_OUT
    assert (three.state, three.call_id) == (S.ACW, "c1")
    assert rt.epoch_of(three.acw_deadline) == pytest.approx(acw_deadline, abs=0.01)
    desk = await second.desk("1003")
    ready = await desk.event(state="ready", timeout=3)
    assert ready["payload"]["cause"] == "acw_limit"
    assert time.time() == pytest.approx(acw_deadline, abs=0.3)  # the original limit
    await desk.ws.close()


async def test_an_owed_wrap_up_form_is_still_owed_after_an_engine_restart(start: Start
                                                                           ) -> None:
    """STD-092: the form owed when the engine stopped is owed after it comes back; one
    submitted before the stop is not."""
    policy = parse_policy({"agents": {"acw_limit_s": 0.5}})
    first = await start(policy)
    rt = first.runtime
    for agent_id, call_id in (("1001", "cfo-1-1-aa"), ("1003", "cfo-2-1-bb")):
        rt.log_in(agent_id)
        rt.agent_event(agent_id, CallOffered(call_id, outbound=True))
        rt.agent_event(agent_id, CallAnswered(call_id))
        rt.agent_event(agent_id, CallEnded(call_id))
    rt.agent_event("1003", SubmitWrapup("cfo-2-1-bb", "resolved"))
    assert rt.agents["1001"].wrapup_call == "cfo-1-1-aa"
    await first.stop()

    second = await start(policy)
    rt = second.runtime
    assert (rt.agents["1001"].state, rt.agents["1001"].wrapup_call) == (S.ACW, "cfo-1-1-aa")
    assert rt.agents["1003"].wrapup_call == ""
    desk = await second.desk("1001")
    await asyncio.sleep(0.6)  # past the ACW limit: the form still holds the agent
    assert rt.agents["1001"].state is S.ACW
    refused = await desk.request("ready")
    assert refused["error"] == "wrapup_required"
    done = await desk.request("wrapup", call_id="cfo-1-1-aa", disposition="resolved",
                              notes="after the restart")
    assert (done["type"], done["state"]) == ("ack", "ready")
    await desk.ws.close()


def test_restore_rules_with_a_fake_clock() -> None:
    clock = FakeClock()
    policy = Policy.defaults()
    wall = clock.wall()
    now = clock.now()

    def back(state: str, ago: float, **kw: Any) -> tuple[Any, list[Any]]:
        stored = StoredAgent("1001", state, kw.pop("reason", None),
                             wall - timedelta(seconds=ago), **kw)
        return restored(stored, "agent1001", now, wall, policy)

    agent, effects = back("acw", 20, call_id="c1")
    limit = policy.agents.acw_limit_s
    assert (agent.state, agent.call_id, agent.since) == (S.ACW, "c1", now - 20)
    assert StartTimer(timer_key(agent, "acw"), now - 20 + limit) in effects  # 40 s left
    agent, effects = back("acw", limit + 5, call_id="c1", acw_extended=True, acw_extra_s=30)
    assert agent.acw_deadline == now - limit - 5 + limit + 30 and agent.acw_extended
    agent, effects = back("acw", limit + 5, call_id="c1")
    timer = next(e for e in effects if isinstance(e, StartTimer))
    assert timer.at < now  # past: fires at once, the machine ends the ACW (STD-100)
    agent, effects = back("busy", 600, reason="meal", extension="agent1003")
    assert (agent.reason, agent.extension) == ("meal", "agent1003")
    assert StartTimer(timer_key(agent, "limit"), now - 600 + 30 * 60) in effects  # STD-104
    agent, effects = back("on_call", 5, call_id="c2")
    assert (agent.state, agent.call_id) == (S.ON_CALL, "c2")
    assert not [e for e in effects if isinstance(e, StartTimer)]
    agent, _ = back("dancing", 5)
    assert agent.state is S.LOGGED_OUT
    published = [e for e in as_edges(back("ready", 1)[1]) if isinstance(e, Publish)]
    assert [p.topic for p in published] == ["agent:1001", "board"]
    assert published[0].payload["cause"] == "restored"


async def test_resync_ends_or_relinks_calls_of_restored_agents(start: Start) -> None:
    running = await start()
    rt = running.runtime
    wall = datetime.now(UTC)
    rt.restore_agents([
        restored(StoredAgent(a, "on_call", None, wall - timedelta(seconds=30), call_id=f"c{a}"),
                 f"agent{a}", rt.clock.now(), wall, running.service.policy)
        for a in ("1001", "1002")])
    live_leg = ami("CoreShowChannel", Uniqueid="leg2", Channel="PJSIP/agent1002-00000009",
                   BridgeId="b1")
    rt.apply_resync([live_leg], [])
    assert rt.agents["1001"].state is S.ACW  # Asterisk has no channel of it: the call is over
    assert rt.agents["1002"].state is S.ON_CALL  # still talking, linked to its leg
    rt.on_ami_batch([ami("Hangup", Uniqueid="leg2", Cause="16")])
    assert (rt.agents["1002"].state, rt.agents["1002"].call_id) == (S.ACW, "c1002")


async def test_resync_reads_contact_list_aors_and_older_words_lose(start: Start) -> None:
    running = await start()
    rt = running.runtime
    registered = AmiMessage("ContactList", {"Event": "ContactList",
                                            "ObjectName": "agent1001;@77a2ad9cf43435fb",
                                            "Endpoint": "agent1001", "Status": "Reachable"},
                            time.monotonic())
    rt.apply_resync([], [registered])
    assert rt.endpoint_reachable == {"agent1001": True}
    assert rt.agents["1001"].softphone_reachable
    # a listing sent before an event but answered after it does not undo the event
    asked = time.monotonic()
    rt.on_ami_batch([ami("ContactStatus", AOR="agent1002", ContactStatus="Unreachable")])
    rt.softphone_status("agent1002", True, asked)
    assert rt.endpoint_reachable["agent1002"] is False
    rt.softphone_status("agent1002", True, time.monotonic())
    assert rt.agents["1002"].softphone_reachable


class Pjsip:
    """Asterisk's PJSIP listings: each endpoint's device state and contacts' statuses."""

    up = True

    def __init__(self, endpoints: dict[str, tuple[str, list[str]]]) -> None:
        self.endpoints = endpoints
        self.asked: list[Any] = []

    @property
    def stats(self) -> dict[str, float]:
        return {}

    async def send(self, action: Any) -> Any:
        raise AssertionError(f"no action expected: {action}")

    async def query(self, query: Any) -> list[AmiMessage]:
        self.asked.append(query)
        if isinstance(query, ShowEndpoint):
            return [ami("ContactStatusDetail", Status=status)
                    for status in self.endpoints[query.endpoint][1]]
        return [ami("EndpointList", ObjectName=name, DeviceState=state)
                for name, (state, _) in self.endpoints.items()]


async def test_a_softphone_pjsip_has_not_qualified_yet_is_not_unreachable(
        start: Start) -> None:
    """Right after Asterisk (re)started its contacts wait for their first qualify
    (NonQualified, ~0.3 s after FullyBooted, measured) and the endpoints say Unavailable:
    the resync's refresh took that for unreachable and put every ready agent not-ready
    at each Asterisk restart (found by the endings matrix, restart while ringing)."""
    # no grace after the resync (runtime/core.py softphone_status): judged at once
    running = await start(FAST.model_copy(update={"supervision": FAST.supervision.model_copy(
        update={"softphone_grace_s": 0.0})}))
    rt = running.runtime
    for agent_id in AGENTS:
        rt.log_in(agent_id)
    pjsip = Pjsip({"agent1001": ("Unavailable", ["NonQualified"]),
                   "agent1002": ("Unavailable", ["Unreachable"]),
                   "agent1003": ("Not in use", ["Reachable"])})
    rt.adapters.pbx = pjsip
    rt.apply_resync([], [])
    await asyncio.sleep(0.05)  # the desktop's refresh runs as a task
    assert [type(q).__name__ for q in pjsip.asked] == [
        "ListEndpoints", "ShowEndpoint", "ShowEndpoint"]
    assert rt.agents["1001"].state is S.READY and rt.agents["1001"].softphone_reachable
    assert (rt.agents["1002"].state, rt.agents["1002"].reason) == (S.NOT_READY, "unreachable")
    assert rt.agents["1003"].state is S.READY
    # the first qualify's word comes as an event
    rt.on_ami_batch([ami("ContactStatus", AOR="agent1001", ContactStatus="Reachable")])
    assert rt.agents["1001"].state is S.READY


def test_hot_desk_helpers_refuse_what_does_not_exist() -> None:
    from callflow.agents.desks import resolve_desk
    from callflow.errors import StateError
    roster = Roster((RosterAgent("1001", "A", "agent1001"), RosterAgent("7", "B", "desk-7")))
    assert resolve_desk(roster, " 1001 ") == "agent1001"
    assert resolve_desk(roster, "desk-7") == "desk-7"
    assert resolve_desk(roster, "7") == "desk-7"
    for raw in ("", "100", "agent", "PJSIP/agent1001", "\x00"):
        with pytest.raises(StateError) as refused:
            resolve_desk(roster, raw)
        assert refused.value.reason == "unknown_extension"


def test_restored_agents_outside_the_roster_are_skipped() -> None:
    clock = FakeClock()
    roster = Roster((RosterAgent("1001", "A", "agent1001"),))
    published: list[tuple[str, dict[str, Any]]] = []
    rt = Runtime(Policy.defaults(), clock, roster, edge_adapters(
        clock, persist=lambda k, d: None, publish=lambda t, p: published.append((t, p))))
    step = restored(StoredAgent("9999", "ready", None, clock.wall()), "agent9999", clock.now(),
                    clock.wall(), Policy.defaults())
    rt.restore_agents([step])
    assert "9999" not in rt.agents and published == []
    ok = restored(StoredAgent("1001", "busy", "restroom", clock.wall()), "agent1001",
                  clock.now(), clock.wall(), Policy.defaults())
    rt.restore_agents([ok])
    assert rt.agents["1001"].state is S.BUSY and len(published) == 2


async def test_the_centres_midnight_closes_every_agents_day(start: Start) -> None:
    running = await start()
    rt = running.runtime
    desktop = next(f for f in running.service.options.features if isinstance(f, AgentDesktop))
    zone = ZoneInfo(running.service.policy.calendar.timezone)
    tomorrow = (datetime.now(zone) + timedelta(days=1)).date().isoformat()
    key = f"agentday:{tomorrow}"
    handle = rt._timers[key]  # armed for the next local midnight
    midnight = datetime.combine(date.fromisoformat(tomorrow), dtime(0), zone)
    left = (midnight - datetime.now(zone)).total_seconds()
    assert handle.when() - asyncio.get_running_loop().time() == pytest.approx(left, abs=1.0)
    rt.log_in("1001")
    for event in (CallOffered("c1"), CallAnswered("c1"), CallEnded("c1")):
        rt.agent_event("1001", event)
    assert rt.agents["1001"].calls_handled == 1
    rt._timers.pop(key).cancel()
    desktop._on_midnight(key)  # what the timer does when it fires
    one = rt.agents["1001"]
    assert (one.state, one.calls_handled, dict(one.totals)) == (S.ACW, 0, {})
    assert rt.agents["1002"].calls_handled == 0
    assert key in rt._timers  # re-armed for the next midnight (still tomorrow's, here)
    assert await asyncio.to_thread(running.service.writer.flush)
    store = running.service.store
    assert store is not None
    events = [e for e in store.read(repo.read_events) if e.kind == "agent_day"]
    assert {e.payload["agent_id"] for e in events} >= {"1001", "1002"}
    assert next(e for e in events if e.payload["agent_id"] == "1001"
                ).payload["calls_handled"] == 1


async def test_a_busy_awaiting_approval_still_awaits_it_after_a_restart(start: Start) -> None:
    """STD-106: the absence timer counts from the busy's real start; an approved busy
    stays approved."""
    policy = parse_policy({"agents": {"absence_flag_min": 0.02}})  # 1.2 s
    first = await start(policy)
    rt = first.runtime
    for agent_id in ("1001", "1002"):
        rt.log_in(agent_id)
        rt.agent_event(agent_id, RequestState(S.BUSY, "away"))
    assert rt.agents["1001"].approval_pending and rt.agents["1002"].approval_pending
    rt.agent_event("1002", ApproveBusy())
    busy_since = rt.epoch_of(rt.agents["1001"].since)
    await first.stop()

    second = await start(policy)
    rt = second.runtime
    one, two = rt.agents["1001"], rt.agents["1002"]
    assert (one.state, one.reason, one.approval_pending) == (S.BUSY, "away", True)
    assert (two.state, two.reason, two.approval_pending) == (S.BUSY, "away", False)
    seen: list[Alarm] = []
    rt.on_event(lambda event: seen.append(event) if isinstance(event, Alarm) else None)
    deadline = time.monotonic() + 3
    while not seen and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [(a.kind, a.detail["agent_id"]) for a in seen] == [("unapproved_absence", "1001")]
    assert time.time() == pytest.approx(busy_since + 1.2, abs=0.4)
