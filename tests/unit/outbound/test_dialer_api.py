"""The task REST API: roles (agents act on their own tasks only), clear errors for bad
input (invalid number 422, duplicate 409), edits, cancel, preview dial, history."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from logins import session_token
from test_dialer import MONDAY_10, SHANGHAI, FakePbx, Rig, frame

from callflow.agents.state import LogIn
from callflow.api.accounts import Logins, SessionAuth
from callflow.api.credentials import authenticate_requests
from callflow.api.errors import install_error_handlers
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy
from callflow.outbound.feature import OutboundFeature
from callflow.outbound.routes import tasks_router
from callflow.store import repo
from callflow.store.db import Store, open_store

TOKEN = "deployment-token-0123456789"


@dataclass
class Parts:
    """The parts of the service the task API uses, real ones (no Asterisk, no sockets)."""

    store: Store
    runtime: Any
    policy: Policy
    clock: Any
    roster: Any
    auth: SessionAuth
    ami: FakePbx


@dataclass
class Api:
    http: httpx.AsyncClient
    rig: Rig
    logins: Logins

    def as_agent(self, agent_id: str) -> dict[str, str]:
        token = session_token(self.rig.store, self.logins, agent_id, "agent", agent_id)
        return {"Authorization": f"Bearer {token}"}

    def as_qa(self) -> dict[str, str]:
        token = session_token(self.rig.store, self.logins, "qa1", "qa")
        return {"Authorization": f"Bearer {token}"}

    @property
    def boss(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(migrated_sqlite_file: Path, tmp_path: Path) -> AsyncIterator[Api]:
    target = tmp_path / "callflow.db"
    shutil.copyfile(migrated_sqlite_file, target)
    store = open_store(f"sqlite:///{target}")
    rig = Rig(store, Policy.defaults())
    logins = Logins(store, rig.policy.security, RealClock(), TOKEN)  # the rig moves its clock
    feature = OutboundFeature()
    feature.service = Parts(store, rig.runtime, rig.policy, rig.clock,  # type: ignore[assignment]
                            rig.roster, logins.auth, rig.ami)
    feature.dialer = rig.dialer
    app = FastAPI()
    install_error_handlers(app)
    authenticate_requests(app, logins.auth)
    app.include_router(tasks_router(feature))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tasks") as http:
            yield Api(http, rig, logins)
    finally:
        store.close()


async def create(api: Api, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await api.http.post("/api/v1/tasks", json=body, headers=headers)


async def test_login_is_required(api: Api) -> None:
    assert (await api.http.get("/api/v1/tasks")).status_code == 401
    assert (await create(api, api.as_qa(), number="13900000001")).status_code == 403


async def test_supervisor_creates_lists_and_sees_history(api: Api) -> None:
    reply = await create(api, api.boss, number="139 0000 0001", note="promised a call")
    assert reply.status_code == 201, reply.text
    task = reply.json()["task"]
    assert (task["number"], task["kind"], task["status"], task["owner_agent_id"]) == (
        "13900000001", "manual", "pending", None)
    assert datetime.fromisoformat(task["due_at"]) == MONDAY_10
    listed = (await api.http.get("/api/v1/tasks", headers=api.boss)).json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
    assert (await api.http.get("/api/v1/tasks", headers=api.as_qa())).status_code == 200
    one = (await api.http.get(f"/api/v1/tasks/{task['id']}", headers=api.boss)).json()
    assert one["task"]["note"] == "promised a call" and one["attempts"] == []
    assert [p["task"]["id"] for p in api.rig.tasks_published("board")] == [task["id"]]


@pytest.mark.parametrize("number", ["+86139", "call me", "12", ""])
async def test_invalid_numbers_are_422_with_a_reason(api: Api, number: str) -> None:
    reply = await create(api, api.boss, number=number)
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert detail["error"] == "invalid_number" and number in detail["message"]
    assert (await api.http.get("/api/v1/tasks", headers=api.boss)).json()["tasks"] == []


async def test_a_second_task_for_the_same_number_and_purpose_is_409(api: Api) -> None:
    first = (await create(api, api.boss, number="13900000001")).json()["task"]
    again = await create(api, api.boss, number="139-0000-0001")
    assert again.status_code == 409
    assert again.json()["detail"]["error"] == "duplicate_task"
    assert again.json()["detail"]["task"]["id"] == first["id"]
    other = await create(api, api.boss, number="13900000001", kind="callback")
    assert other.status_code == 201  # another purpose is another task (dialled one at a time)


async def test_bad_requests_are_422(api: Api) -> None:
    naive = await create(api, api.boss, number="13900000001", due_at="2026-01-05T10:00:00")
    assert naive.status_code == 422
    unknown = await create(api, api.boss, number="13900000001", owner_agent_id="9999")
    assert unknown.status_code == 422 and unknown.json()["detail"]["error"] == "unknown_agent"
    named = await create(api, api.boss, number="13900000001", kind="named_agent")
    assert named.json()["detail"]["error"] == "owner_required"
    extra = await create(api, api.boss, number="13900000001", status="done")
    assert extra.status_code == 422


async def test_agents_see_and_act_on_their_own_tasks_only(api: Api) -> None:
    mine = await create(api, api.as_agent("1001"), number="13900000001", kind="follow_up",
                        owner_agent_id="1002", follow_up="fault")
    assert mine.status_code == 201
    task = mine.json()["task"]
    assert task["owner_agent_id"] == "1001"  # agents create tasks for themselves
    due = datetime.fromisoformat(task["due_at"]).astimezone(SHANGHAI)
    assert (due.day, due.hour) == (6, 9)  # the next working day (STD-089)
    theirs = (await create(api, api.boss, number="13900000002",
                           owner_agent_id="1002")).json()["task"]
    listed = (await api.http.get("/api/v1/tasks?owner=1002",
                                 headers=api.as_agent("1001"))).json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
    for method, path in (("GET", ""), ("POST", "/cancel"), ("PATCH", ""), ("POST", "/dial")):
        reply = await api.http.request(method, f"/api/v1/tasks/{theirs['id']}{path}",
                                       json={"note": "x"} if method == "PATCH" else None,
                                       headers=api.as_agent("1001"))
        assert reply.status_code == 403, (method, path, reply.text)
    reassign = await api.http.patch(f"/api/v1/tasks/{task['id']}", json={"owner_agent_id": ""},
                                    headers=api.as_agent("1001"))
    assert reassign.status_code == 403
    assert (await api.http.get("/api/v1/tasks/999", headers=api.boss)).status_code == 404


async def test_edit_a_pending_task(api: Api) -> None:
    task = (await create(api, api.boss, number="13900000001",
                         owner_agent_id="1001")).json()["task"]
    await create(api, api.boss, number="13900000002")
    night = datetime(2026, 1, 5, 23, 0, tzinfo=SHANGHAI).isoformat()
    reply = await api.http.patch(f"/api/v1/tasks/{task['id']}", headers=api.boss,
                                 json={"due_at": night, "owner_agent_id": "", "max_attempts": 5})
    assert reply.status_code == 200, reply.text
    edited = reply.json()["task"]
    assert datetime.fromisoformat(edited["due_at"]) == datetime(2026, 1, 6, 9, tzinfo=SHANGHAI)
    assert (edited["owner_agent_id"], edited["max_attempts"]) == (None, 5)
    assert api.rig.tasks_published("agent:1001")[-1]["task"]["owner_agent_id"] is None
    dup = await api.http.patch(f"/api/v1/tasks/{task['id']}", headers=api.boss,
                               json={"number": "13900000002"})
    assert (dup.status_code, dup.json()["detail"]["error"]) == (409, "duplicate_task")
    bad = await api.http.patch(f"/api/v1/tasks/{task['id']}", headers=api.boss,
                               json={"number": "abc"})
    assert (bad.status_code, bad.json()["detail"]["error"]) == (422, "invalid_number")
    empty = await api.http.patch(f"/api/v1/tasks/{task['id']}", headers=api.boss, json={})
    assert empty.status_code == 422


async def test_cancel(api: Api) -> None:
    task = (await create(api, api.boss, number="13900000001")).json()["task"]
    done = await api.http.post(f"/api/v1/tasks/{task['id']}/cancel", headers=api.boss)
    assert done.json()["task"]["status"] == "cancelled"
    again = await api.http.post(f"/api/v1/tasks/{task['id']}/cancel", headers=api.boss)
    assert (again.status_code, again.json()["detail"]["error"]) == (409, "task_closed")
    listed = await api.http.get("/api/v1/tasks?status=cancelled", headers=api.boss)
    assert [t["id"] for t in listed.json()["tasks"]] == [task["id"]]


async def test_agent_presses_dial_and_sees_the_attempt(api: Api) -> None:
    rig = api.rig
    task = (await create(api, api.as_agent("1001"), number="13900000001")).json()["task"]
    refused = await api.http.post(f"/api/v1/tasks/{task['id']}/dial",
                                  headers=api.as_agent("1001"))
    assert (refused.status_code, refused.json()["detail"]["error"]) == (409, "agent_not_ready")
    rig.runtime.agent_event("1001", LogIn())
    reply = await api.http.post(f"/api/v1/tasks/{task['id']}/dial", headers=api.as_agent("1001"))
    assert reply.status_code == 202, reply.text
    attempt = reply.json()["attempt_id"]
    assert rig.ami.originates()[0]["ChannelId"] == attempt
    busy = await api.http.post(f"/api/v1/tasks/{task['id']}/cancel", headers=api.boss)
    assert (busy.status_code, busy.json()["detail"]["error"]) == (409, "task_dialing")
    edit = await api.http.patch(f"/api/v1/tasks/{task['id']}", json={"note": "x"},
                                headers=api.boss)
    assert (edit.status_code, edit.json()["detail"]["error"]) == (409, "task_not_pending")
    rig.feed(frame("Newchannel", Uniqueid=attempt),
             frame("OriginateResponse", Uniqueid=attempt, Response="Failure", Reason="3"),
             frame("Hangup", Uniqueid=attempt, Cause="19"))
    await rig.dialer.drain()
    history = await api.http.get(f"/api/v1/tasks/{task['id']}/attempts",
                                 headers=api.as_agent("1001"))
    assert [(a["outcome"], a["counted"], a["hangup_cause"], a["agent_id"])
            for a in history.json()["attempts"]] == [("agent_no_answer", False, 19, "1001")]
    nobody = await api.http.post(f"/api/v1/tasks/{task['id']}/dial", headers=api.boss)
    assert (nobody.status_code, nobody.json()["detail"]["error"]) == (422, "agent_required")


async def test_store_queries_see_what_the_api_wrote(api: Api) -> None:
    due = (MONDAY_10 + timedelta(hours=2)).astimezone(UTC).isoformat()
    await create(api, api.boss, number="13900000001", due_at=due, kind="callback")
    tasks = api.rig.store.read(repo.list_open_tasks)
    assert [(t.kind, t.due_at) for t in tasks] == [("callback", MONDAY_10 + timedelta(hours=2))]
