"""Tickets on the desktop (issue 19) on a real store: the recording link filled when the
recording is written, the repeat-caller view by role, and the close by the follow-up
call's wrap-up disposition (STD-134)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from ticket_api import TicketApi

from callflow.engine.clock import FakeClock
from callflow.engine.policy import Policy
from callflow.store import records, repo
from callflow.store import tickets as store_tickets
from callflow.store.db import Store
from callflow.tickets.desk import close_by_followup

NOW = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)
BASE = "/api/v1/tickets"
NUMBER = "13900000001"


@pytest.fixture
def env(store: Store) -> Iterator[SimpleNamespace]:
    store.run(repo.upsert_agent, "1001", name="Li", team="red")
    store.run(repo.upsert_agent, "1002", name="Wang", team="red")
    store.run(repo.upsert_agent, "1003", name="Zhao", team="blue")
    policy = Policy()
    api = TicketApi(store, policy, FakeClock(NOW))
    store.run(repo.upsert_call, "c1", direction="inbound", caller_number=NUMBER,
              agent_id="1001", outcome="answered", entered_at=NOW - timedelta(days=2))
    store.run(repo.upsert_call, "c2", direction="inbound", caller_number=NUMBER,
              agent_id="1001", entered_at=NOW - timedelta(seconds=5))
    store.run(repo.set_user, "lead_red", "shift_lead", "x", team="red")
    store.run(repo.set_user, "lead_blue", "shift_lead", "x", team="blue")
    store.run(repo.set_user, "manager", "department_manager", "x")
    for who, username, role, agent in (
            ("lead_red", "lead_red", "shift_lead", None),
            ("lead_blue", "lead_blue", "shift_lead", None),
            ("manager", "manager", "department_manager", None),
            ("agent", "1001", "agent", "1001"),
            ("other", "1003", "agent", "1003"),
            ("qa", "qa1", "qa", None),
            ("supervisor", "boss", "supervisor", None)):
        api.log_in(who, username, role, agent)

    def call(method: str, url: str, role: str = "agent", **kw: Any) -> httpx.Response:
        return api.call(method, url, role, **kw)

    yield SimpleNamespace(call=call, store=store, policy=policy)


def record(env: SimpleNamespace, call_id: str) -> int:
    env.store.run(records.write_recording, {
        "call_uniqueid": call_id, "path": f"/rec/{call_id}.wav",
        "started_at": (NOW - timedelta(days=2)).isoformat(), "duration_s": 30.0})
    rec = env.store.read(repo.recording_for_call, call_id)
    assert rec is not None
    return int(rec.id)


def test_the_recording_written_after_the_call_is_linked_once(env: SimpleNamespace) -> None:
    made = env.call("POST", BASE, json={"type": "complaint_simple", "call_id": "c1",
                                        "description": "<i>noisy</i>"})
    assert made.status_code == 201, made.text
    tid = made.json()["ticket"]["id"]
    assert env.store.read(store_tickets.get, tid).recording_id is None
    rec_id = record(env, "c1")
    row = env.store.read(store_tickets.get, tid)
    assert (row.recording_id, row.version) == (rec_id, 1)  # a link: no one's form turns stale
    record(env, "c1")  # the same recording reported again: nothing changes
    assert env.store.read(store_tickets.get, tid).recording_id == rec_id
    # a ticket opened once the recording exists is linked at once
    again = env.call("POST", BASE, json={"type": "enquiry", "call_id": "c1",
                                         "description": "second"})
    assert env.store.read(store_tickets.get, again.json()["ticket"]["id"]).recording_id \
        == rec_id


@pytest.mark.std("STD-073")
def test_repeat_caller_view_by_role(env: SimpleNamespace) -> None:
    made = env.call("POST", BASE, json={"type": "complaint_simple", "call_id": "c1",
                                        "description": "<b>bill</b> wrong"}).json()["ticket"]
    rec_id = record(env, "c1")
    got = env.call("GET", f"{BASE}/caller/c2")
    assert got.status_code == 200, got.text
    view = got.json()
    assert [t["id"] for t in view["tickets"]] == [made["id"]]
    assert [c["call_id"] for c in view["calls"]] == ["c1"]  # never the ringing call
    assert view["calls"][0]["outcome"] == "answered"
    # agents: no recordings (STD-078); their own call's number in full
    assert view["tickets"][0]["recording_id"] is None
    assert view["calls"][0]["recording_id"] is None
    assert view["caller_number"] == NUMBER
    boss = env.call("GET", f"{BASE}/caller/c2", "supervisor").json()
    assert boss["tickets"][0]["recording_id"] == rec_id
    assert boss["calls"][0]["recording_id"] == rec_id
    qa = env.call("GET", f"{BASE}/caller/c2", "qa").json()
    assert qa["caller_number"] == "139****0001"  # masked per the existing rules
    # another agent learns nothing of a call not theirs; bad ids get one clear error
    assert env.call("GET", f"{BASE}/caller/c2", "other").status_code == 404
    assert env.call("GET", f"{BASE}/caller/nope").status_code == 404
    bad = env.call("GET", f"{BASE}/caller/{'x' * 101}")
    assert bad.status_code == 422 and bad.json()["detail"]["error"] == "bad_call_id"
    form = env.call("GET", f"{BASE}/form").json()
    assert (form["team"], form["may_play_recordings"]) == ("red", False)
    assert "complaint_simple" in form["types"]


@pytest.mark.std("STD-073")
def test_the_caller_history_for_leads_by_team_and_every_read_audited(
        env: SimpleNamespace) -> None:
    """STD-148's people: the department manager sees every call's history, a shift lead
    the calls of their team's agents only; each read (not a refusal) is in the audit."""
    made = env.call("POST", BASE, json={"type": "enquiry", "call_id": "c1",
                                        "description": "address"}).json()["ticket"]
    for who in ("manager", "lead_red"):
        got = env.call("GET", f"{BASE}/caller/c2", who)
        assert got.status_code == 200, (who, got.text)
        assert [t["id"] for t in got.json()["tickets"]] == [made["id"]]
    assert env.call("GET", f"{BASE}/caller/c2", "lead_blue").status_code == 404
    entries = env.store.read(repo.audit_entries, action="caller_history.read")
    assert sorted((e.actor, e.target, e.detail["tickets"]) for e in entries) == [
        ("lead_red", "c2", 1), ("manager", "c2", 1)]


@pytest.mark.std("STD-134")
def test_the_follow_up_wrapup_closes_or_keeps_the_ticket(env: SimpleNamespace) -> None:
    tickets = []
    for n in range(2):
        t = env.call("POST", BASE, json={"type": "complaint_simple", "call_id": "c1",
                                         "description": f"complaint {n}"}).json()["ticket"]
        closed = env.call("POST", f"{BASE}/{t['id']}/close", json={"version": t["version"]})
        assert closed.json()["ticket"]["status"] == "awaiting_confirmation"
        tickets.append(closed.json()["ticket"])
    task_id = tickets[0]["followup_task_id"]
    assert task_id is not None and tickets[1]["followup_task_id"] == task_id  # one task
    claimed = env.store.run(repo.claim_next_task, NOW + timedelta(days=5))
    assert claimed is not None and claimed.id == task_id
    env.store.run(repo.finish_attempt, task_id, NOW, "answered", reached=False,
                  call_uniqueid="f1", agent_id="1002")
    # not reached: both stay awaiting, each with a history row naming the disposition
    kept = close_by_followup(env.store, "f1", "1002", "no_conversation", NOW, env.policy)
    assert [r.status for r in kept] == ["awaiting_confirmation"] * 2
    history = env.store.read(store_tickets.history, tickets[0]["id"])
    assert history[-1].action == "followup_unconfirmed"
    assert history[-1].detail["disposition"] == "no_conversation"
    # the customer confirmed: closed
    done = close_by_followup(env.store, "f1", "1002", "resolved", NOW, env.policy)
    assert [r.status for r in done] == ["closed", "closed"]
    assert env.store.read(store_tickets.get, tickets[0]["id"]).closed_at is not None
    # a call that was no ticket's follow-up changes nothing
    assert close_by_followup(env.store, "c1", "1001", "resolved", NOW, env.policy) == []
