"""Campaign lists and the do-not-call list over the REST API, with the real dialer on a
fake PBX and fake clock: CSV rows reported one line each, duplicates folded, the DNC
number never originated, paused campaigns and closed windows not claimed, the campaign's
agents only, and the wrap-up form stored with the attempt."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from logins import session_token
from test_dialer import Rig, frame

from callflow.agents.state import AgentState, SubmitWrapup
from callflow.api.accounts import Logins
from callflow.api.credentials import authenticate_requests
from callflow.api.errors import install_error_handlers
from callflow.engine.clock import RealClock
from callflow.engine.policy import Policy
from callflow.errors import StateError
from callflow.outbound.campaign_routes import campaigns_router
from callflow.outbound.feature import OutboundFeature
from callflow.store import campaigns as campaign_store
from callflow.store import records, repo
from callflow.store.db import open_store

TOKEN = "deployment-token-0123456789"
CSV = ("number,name,note\n"
       "13900000001,Wang,\n"
       "call me,Li,\n"
       "13900000002,Zhao,evenings\n"
       "139-0000-0001,Wang twice,\n"
       "13900000003,Chen,\n")


@dataclass
class Settings:
    csv_max_rows: int = 100


@dataclass
class Parts:
    """What the routes use of the service: real store, runtime, dialer; no sockets."""

    store: Any
    runtime: Any
    policy: Policy
    clock: Any
    roster: Any
    auth: Any
    settings: Settings


@dataclass
class Api:
    http: httpx.AsyncClient
    rig: Rig
    logins: Logins

    @property
    def boss(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def as_agent(self, agent_id: str) -> dict[str, str]:
        token = session_token(self.rig.store, self.logins, agent_id, "agent", agent_id)
        return {"Authorization": f"Bearer {token}"}

    async def campaign(self, **body: Any) -> dict[str, Any]:
        fields = {"name": "winter", "window_start": "09:00", "window_end": "21:00", **body}
        reply = await self.http.post("/api/v1/campaigns", json=fields, headers=self.boss)
        assert reply.status_code == 201, reply.text
        campaign: dict[str, Any] = reply.json()["campaign"]
        return campaign

    async def upload(self, path: str, text: str) -> httpx.Response:
        return await self.http.post(path, content=text.encode(),
                                    headers={**self.boss, "Content-Type": "text/csv"})


@pytest.fixture
def policy() -> Policy:
    return Policy.defaults()


@pytest.fixture
async def api(migrated_sqlite_file: Path, tmp_path: Path, policy: Policy
              ) -> AsyncIterator[Api]:
    target = tmp_path / "callflow.db"
    shutil.copyfile(migrated_sqlite_file, target)
    store = open_store(f"sqlite:///{target}")
    rig = Rig(store, policy)
    logins = Logins(store, rig.policy.security, RealClock(), TOKEN)
    feature = OutboundFeature()
    feature.service = Parts(store, rig.runtime, rig.policy, rig.clock,  # type: ignore[assignment]
                            rig.roster, logins.auth, Settings())
    feature.dialer = rig.dialer
    app = FastAPI()
    install_error_handlers(app)
    authenticate_requests(app, logins.auth)
    app.include_router(campaigns_router(feature))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://campaigns") as http:
            yield Api(http, rig, logins)
    finally:
        store.close()


async def test_only_supervisors_create_and_import(api: Api) -> None:
    body = {"name": "x"}
    assert (await api.http.post("/api/v1/campaigns", json=body)).status_code == 401
    agent = await api.http.post("/api/v1/campaigns", json=body, headers=api.as_agent("1001"))
    assert agent.status_code == 403
    bad = await api.http.post("/api/v1/campaigns", headers=api.boss, json={
        "name": "x", "window_start": "12:00", "window_end": "10:00"})
    assert bad.status_code == 422 and "window_end" in bad.json()["detail"]["message"]
    nobody = await api.http.post("/api/v1/campaigns", headers=api.boss, json={
        "name": "x", "agents": ["9999"]})
    assert nobody.json()["detail"]["error"] == "unknown_agent"
    await api.campaign(name="x")
    again = await api.http.post("/api/v1/campaigns", json=body, headers=api.boss)
    assert again.status_code == 409


async def test_csv_import_reports_bad_rows_and_keeps_the_good(api: Api) -> None:
    await api.http.post("/api/v1/dnc", json={"number": "139 0000 0003"}, headers=api.boss)
    campaign = await api.campaign(max_attempts=2, retry_spacing_min=45)
    reply = await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers", CSV)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["imported"] == 3 and report["rows"] == 5
    [bad] = report["bad_rows"]
    assert bad.startswith("row 3: ") and "call me" in bad
    assert report["duplicates"] == ["row 5: 13900000001 duplicates row 2; imported once"]
    assert report["do_not_call"] == [
        "row 6: 13900000003 is on the do-not-call list; imported closed, never dialled"]
    progress = (await api.http.get(f"/api/v1/campaigns/{campaign['id']}",
                                   headers=api.boss)).json()
    numbers = {n["number"]: n for n in progress["numbers"]}
    assert set(numbers) == {"13900000001", "13900000002", "13900000003"}
    assert numbers["13900000002"]["max_attempts"] == 2
    assert numbers["13900000002"]["note"] == "Zhao evenings"
    assert (numbers["13900000003"]["status"], numbers["13900000003"]["last_outcome"]) == (
        "cancelled", "do_not_call")
    assert progress["counts"] == {"pending": 2, "do_not_call": 1}
    # the same file again: nothing doubled, each number reported once
    again = (await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers", CSV)).json()
    assert again["imported"] == 1  # only the do-not-call row is added again, closed
    assert sum("already has an open task" in line for line in again["bad_rows"]) == 2


@pytest.mark.parametrize("text", ["phone\n123456\n", "", "number,extra\n1234567,x\n"])
async def test_a_file_that_cannot_be_read_is_refused_whole(api: Api, text: str) -> None:
    campaign = await api.campaign()
    reply = await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers", text)
    assert reply.status_code == 422 and reply.json()["detail"]["error"] == "invalid_csv"
    assert api.rig.store.read(campaign_store.campaign_tasks, campaign["id"]) == []


async def test_not_utf8_and_too_large_are_refused(api: Api) -> None:
    campaign = await api.campaign()
    path = f"/api/v1/campaigns/{campaign['id']}/numbers"
    latin = await api.http.post(path, content=b"number\n\xff\n",
                                headers={**api.boss, "Content-Type": "text/csv"})
    assert latin.status_code == 422 and "UTF-8" in latin.json()["detail"]["message"]
    big = await api.upload(path, "number\n" + "13900000001\n" * 5000)
    assert big.status_code == 413
    unknown = await api.upload("/api/v1/campaigns/99/numbers", "number\n13900000001\n")
    assert unknown.status_code == 404


async def test_dnc_add_closes_pending_tasks_and_is_never_dialled(api: Api) -> None:
    rig = api.rig
    task = rig.add("13900000007", kind="manual")
    reply = await api.http.post("/api/v1/dnc", headers=api.boss,
                                json={"number": "139-0000-0007", "note": "asked us"})
    assert reply.status_code == 201 and reply.json()["closed_tasks"] == [task.id]
    closed = rig.task(task.id)
    assert (closed.status, closed.last_outcome) == ("cancelled", "do_not_call")
    # a task written later for the number (e.g. by the inbound flow) is never claimed,
    # and the dialer's sweep closes it
    rig.login("1001")
    await rig.dialer.tick()  # the first tick sweeps
    late = rig.add("13900000007", kind="callback")
    with pytest.raises(StateError, match="do-not-call"):
        rig.store.run(repo.claim_task, late.id, rig.clock.wall())
    await rig.dialer.tick()
    assert rig.ami.originates() == [] and rig.task(late.id).status == "pending"
    rig.clock.advance(11)
    await rig.dialer.tick()
    assert rig.task(late.id).last_outcome == "do_not_call"
    assert rig.ami.originates() == []
    listed = (await api.http.get("/api/v1/dnc", headers=api.boss)).json()
    assert listed["total"] == 1 and listed["numbers"][0]["note"] == "asked us"
    assert (await api.http.delete("/api/v1/dnc/13900000007", headers=api.boss)).status_code \
        == 200
    assert (await api.http.delete("/api/v1/dnc/13900000007", headers=api.boss)).status_code \
        == 404
    bad = await api.http.post("/api/v1/dnc", headers=api.boss, json={"number": "nope"})
    assert bad.status_code == 422
    agent = await api.http.post("/api/v1/dnc", headers=api.as_agent("1001"),
                                json={"number": "13900000008"})
    assert agent.status_code == 403


async def test_dnc_csv_import(api: Api) -> None:
    reply = await api.upload("/api/v1/dnc/import",
                             "number,note\n13900000001,x\nbad,y\n13900000001,z\n")
    body = reply.json()
    assert body["added"] == 1 and len(body["bad_rows"]) == 1
    assert body["bad_rows"][0].startswith("row 3: ") and len(body["duplicates"]) == 1


async def test_the_dialer_dials_only_open_active_campaigns_and_their_agents(api: Api
                                                                             ) -> None:
    rig = api.rig
    campaign = await api.campaign(agents=["1002"])
    await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers",
                     "number\n13900000001\n13900000002\n")
    rig.login("1001")
    await rig.dialer.tick()
    assert rig.ami.originates() == []  # 1001 is not one of the campaign's agents
    paused = await api.http.post(f"/api/v1/campaigns/{campaign['id']}/pause",
                                 headers=api.boss)
    assert paused.json()["campaign"]["status"] == "paused"
    rig.login("1002")
    await rig.dialer.tick()
    assert rig.ami.originates() == []  # paused
    await api.http.post(f"/api/v1/campaigns/{campaign['id']}/resume", headers=api.boss)
    await rig.dialer.tick()
    [dialled] = rig.ami.originates()
    assert dialled["Channel"] == "PJSIP/agent1002" and dialled["Exten"] == "13900000001"


async def test_a_closed_window_is_not_dialled_and_the_retry_keeps_the_spacing(api: Api
                                                                              ) -> None:
    rig = api.rig  # the rig's clock: Monday 10:00 in Shanghai
    early = await api.campaign(name="afternoon", window_start="14:00", window_end="18:00")
    reply = await api.upload(f"/api/v1/campaigns/{early['id']}/numbers",
                             "number\n13900000005\n")
    assert reply.json()["due_at"].startswith("2026-01-05T06:00")  # 14:00 local
    rig.login("1001")
    await rig.dialer.tick()
    assert rig.ami.originates() == []
    # put it due now anyway (as an edit could): the closed window still keeps it back
    [task] = rig.store.read(campaign_store.campaign_tasks, early["id"])
    rig.store.run(repo.update_task, task.id, due_at=rig.clock.wall())
    await rig.dialer.tick()
    assert rig.ami.originates() == []
    morning = await api.campaign(name="morning", window_start="09:00", window_end="11:00",
                                 retry_spacing_min=50, max_attempts=2)
    await api.upload(f"/api/v1/campaigns/{morning['id']}/numbers", "number\n13900000006\n")
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    rig.customer_ends(attempt, "BUSY", "17")
    await rig.dialer.drain()
    [busy] = rig.store.read(campaign_store.campaign_tasks, morning["id"])
    assert (busy.status, busy.attempts, busy.last_outcome) == ("pending", 1, "busy")
    # the ladder's 30 min would be 10:30; the campaign's 50 min spacing wins: 10:50 local
    assert (busy.due_at - rig.clock.wall()).total_seconds() == pytest.approx(50 * 60, abs=2)


async def test_the_wrap_up_form_is_stored_with_the_attempt(api: Api) -> None:
    rig = api.rig
    campaign = await api.campaign()
    await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers", "number\n13900000004\n")
    rig.login("1001")
    await rig.dialer.tick()
    attempt = rig.attempt_of("1001")
    rig.agent_answers(attempt)
    rig.feed(frame("Newstate", Uniqueid=f"{attempt}-cust", ChannelStateDesc="Up"),
             frame("DialEnd", Uniqueid=attempt, DialStatus="ANSWER"))
    rig.customer_ends(attempt, "ANSWER", "16")
    await rig.dialer.drain()
    agent = rig.runtime.agents["1001"]
    assert (agent.state, agent.wrapup_call) == (AgentState.ACW, attempt)
    rig.runtime.agent_event("1001", SubmitWrapup(attempt, "resolved", "happy"))
    [(kind, row)] = [(k, d) for k, d in rig.persisted if k == "wrapup"]
    records.write(rig.store, kind, row)  # what the service's writer does with it
    progress = (await api.http.get(f"/api/v1/campaigns/{campaign['id']}",
                                   headers=api.boss)).json()
    [number] = progress["numbers"]
    assert (number["status"], number["last_outcome"], number["disposition"]) == (
        "done", "answered", "resolved")
    [form] = rig.store.read(campaign_store.wrapups_for_call, attempt)
    assert (form.task_id, form.notes, form.agent_id) == (number["task_id"], "happy", "1001")


async def test_preview_offers_only_dialable_numbers_of_open_campaigns(
        migrated_sqlite_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "preview.db"
    shutil.copyfile(migrated_sqlite_file, target)
    store = open_store(f"sqlite:///{target}")
    try:
        rig = Rig(store, Policy.model_validate({"outbound": {"dial_mode": "preview"}}))
        c = store.run(campaign_store.add_campaign, created_by="boss", name="p", agents=[],
                      queue="", days=[], window_start="09:00", window_end="21:00",
                      max_attempts=2, retry_spacing_min=30.0, caller_id_key="")
        store.run(campaign_store.set_campaign_status, c.id, "paused")
        store.run(campaign_store.add_campaign_number, c, "13900000002", rig.clock.wall(),
                  note="", on_dnc=False)
        rig.login("1001")
        await rig.dialer.tick()  # (the first tick also sweeps do-not-call tasks)

        def previews() -> list[str]:
            return [p["task"]["number"] for topic, p in rig.published
                    if topic == "agent:1001" and p.get("type") == "task"
                    and p.get("change") == "preview"]

        assert previews() == []  # paused
        # listed, then a task written for it before the next sweep: due, earliest, pending
        store.run(campaign_store.add_dnc, "13900000001", by="boss")
        store.run(campaign_store.add_campaign_number, c, "13900000001",
                  rig.clock.wall() - timedelta(minutes=5), note="", on_dnc=False)
        store.run(campaign_store.set_campaign_status, c.id, "active")
        await rig.dialer.tick()
        assert previews() == ["13900000002"]  # never the do-not-call number
    finally:
        store.close()


PRESENTED = Policy.model_validate({"outbound": {"caller_id": "4008000000",
                                                "list_caller_ids": {"winter": "4008001234"}}})


@pytest.mark.parametrize("policy", [PRESENTED])
async def test_a_campaign_presents_the_number_it_chose(api: Api) -> None:
    rig = api.rig
    campaign = await api.campaign(caller_id_key="winter")
    await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers", "number\n13900000001\n")
    rig.add("13900000009")  # a task of no campaign: the Policy's own number
    rig.login("1001")
    rig.login("1002")
    await rig.dialer.tick()
    shown = {f["Exten"]: dict(v.split("=", 1) for v in f["Variable"])["CALLFLOW_CLI"]
             for f in rig.ami.originates()}
    assert shown == {"13900000001": "4008001234", "13900000009": "4008000000"}
    refused = await api.http.post("/api/v1/campaigns", headers=api.boss, json={
        "name": "x", "caller_id_key": "summer"})
    assert (refused.status_code, refused.json()["detail"]["error"]) == (
        422, "unknown_caller_id_key")


async def test_a_campaigns_queue_is_dialled_by_the_agents_serving_it(api: Api) -> None:
    rig = api.rig
    nobody = await api.http.post("/api/v1/campaigns", headers=api.boss, json={
        "name": "vip", "queue": "vip"})
    assert (nobody.status_code, nobody.json()["detail"]["error"]) == (422, "unknown_queue")
    campaign = await api.campaign(queue="main")  # every agent of the test roster serves main
    await api.upload(f"/api/v1/campaigns/{campaign['id']}/numbers", "number\n13900000001\n")
    rig.login("1001")
    await rig.dialer.tick()
    assert [f["Exten"] for f in rig.ami.originates()] == ["13900000001"]
