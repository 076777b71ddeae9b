"""The QA monthly totals (STD-117) and the morning digest (STD-121) over HTTP on a real
store: the centre's local months and days, roles, audit, bad input."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from logins import session_token

from callflow.api.accounts import Logins
from callflow.api.credentials import authenticate_requests
from callflow.api.errors import install_error_handlers
from callflow.engine.clock import FakeClock, RealClock
from callflow.engine.policy import parse_policy
from callflow.recordings.feature import RecordingsFeature
from callflow.recordings.scoring import Sheet
from callflow.store import repo
from callflow.store.db import Store

TOKEN = "t" * 24
BASE = "/api/v1/recordings"
#: 09:00 on 19 March in the centre (Asia/Shanghai, UTC+8): the reviews of the 19th.
MORNING_19 = datetime(2026, 3, 19, 1, 0, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


#: id key -> (agent, direction, started, flags); local time = UTC + 8
RECORDINGS: dict[str, tuple[str, str, datetime, list[str]]] = {
    "r1": ("1001", "inbound", utc(19, 2), ["late_answer"]),  # 19th 10:00 local
    "r2": ("1001", "inbound", utc(19, 17), ["hold_breach"]),  # 20th 01:00 local
    "r3": ("1002", "outbound", utc(18, 16, 30), []),  # 19th 00:30 local, no flag
    "r4": ("1002", "outbound", utc(27, 2, month=2), ["transfer"]),  # February
    "r5": ("1002", "inbound", utc(28, 16, 30, month=2), []),  # 1 March 00:30 local
}


class Client:
    """Sync requests into the ASGI app (httpx's transport; no server, no port)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(method, url, **kw)
        return asyncio.run(go())


@pytest.fixture
def env(store: Store, tmp_path: Path) -> Iterator[SimpleNamespace]:
    store.run(repo.upsert_agent, "1001", name="Li", team="A")
    store.run(repo.upsert_agent, "1002", name="Wang", team="B")
    policy = parse_policy({"qa": {"min_monitored_per_agent_month": 2}})
    clock = FakeClock(MORNING_19)
    logins = Logins(store, policy.security, RealClock(), TOKEN)  # the tests move `clock`
    service = SimpleNamespace(store=store, auth=logins.auth, policy=policy,
                              clock=clock, settings=SimpleNamespace(state_dir=tmp_path),
                              options=SimpleNamespace(features=[]))
    feature = RecordingsFeature()
    feature._service = service  # type: ignore[assignment]
    app = FastAPI()
    install_error_handlers(app)
    authenticate_requests(app, logins.auth)
    for router in feature.routers():
        app.include_router(router)
    ids = {}
    for key, (agent, direction, started, flags) in RECORDINGS.items():
        store.run(repo.upsert_call, key, direction=direction, caller_number=f"13{key}",
                  outcome="answered", entered_at=started)
        ids[key] = store.run(repo.add_recording, key, direction=direction, agent_id=agent,
                             number=f"13{key}", path=str(tmp_path / f"{key}.wav"),
                             started_at=started, duration_s=30.0, flags=flags).id
    tokens = {role: session_token(store, logins, f"{role}1", role,
                                  "1001" if role == "agent" else None)
              for role in ("agent", "supervisor", "qa", "admin")}
    yield SimpleNamespace(client=Client(app), store=store, clock=clock, ids=ids,
                          tokens=tokens, sheet=Sheet.from_policy(policy))


def call(env: SimpleNamespace, role: str | None, method: str, url: str,
         **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {env.tokens[role]}"} if role else {}
    return env.client.request(method, url, headers=headers, **kw)


def review(env: SimpleNamespace, key: str, penalties: list[dict[str, Any]], *,
           zero: bool = False, role: str = "qa") -> dict[str, Any]:
    scores = {c.code: 0 if zero else c.max for c in env.sheet.criteria}
    reply = call(env, role, "POST", f"{BASE}/{env.ids[key]}/review",
                 json={"scores": scores, "penalties": penalties, "notes": f"on {key}"})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def audited(env: SimpleNamespace, action: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.actor, e.detail) for e in reversed(env.store.read(
        repo.audit_entries, target="recording:*", action=action))]


def write_reviews(env: SimpleNamespace) -> dict[str, dict[str, Any]]:
    """Two reviews on the 19th (one of a February call), one on the 20th, 09:00 local."""
    done = {"r1": review(env, "r1", [{"code": "non_standard_phrase", "count": 2}]),
            "r4": review(env, "r4", [{"code": "missing_disclosure"}], role="supervisor")}
    env.clock.advance(24 * 3600)
    done["r2"] = review(env, "r2", [], zero=True)
    return done


def test_month_totals_per_agent_in_the_centres_months(env: SimpleNamespace) -> None:
    write_reviews(env)
    march = call(env, "supervisor", "GET", f"{BASE}/qa-totals",
                 params={"month": "2026-03"}).json()
    assert (march["month"], march["minimum"]) == ("2026-03", 2)
    li, wang = march["agents"]
    assert li == {"agent_id": "1001", "name": "Li", "team": "A", "recordings": 2,
                  "selected": 0, "reviewed": 2, "reviews": 2, "total": 80 - 50,
                  "average": 15.0, "unqualified": 1,
                  "penalties": {"non_standard_phrase": {"count": 2, "deducted": 20},
                                "zero_score": {"count": 1, "deducted": 50}},
                  "minimum": 2, "minimum_met": True}
    # r3 and r5 (1 March 00:30 local, 28 Feb in UTC) are March calls nobody reviewed
    assert (wang["agent_id"], wang["recordings"], wang["reviewed"], wang["average"],
            wang["penalties"], wang["minimum_met"]) == ("1002", 2, 0, None, {}, False)
    # the February call reviewed in March counts for February, the month of the call
    feb = call(env, "qa", "GET", f"{BASE}/qa-totals", params={"month": "2026-02"}).json()
    assert [(a["agent_id"], a["recordings"], a["reviews"], a["total"], a["unqualified"],
             a["penalties"]) for a in feb["agents"]] == [
        ("1002", 1, 1, 50, 1, {"missing_disclosure": {"count": 1, "deducted": 50}})]
    sampled = call(env, "supervisor", "POST", f"{BASE}/sample", params={"month": "2026-03"})
    assert sampled.status_code == 200
    again = call(env, "admin", "GET", f"{BASE}/qa-totals").json()  # this month by default
    assert again["month"] == "2026-03"
    assert [(a["agent_id"], a["selected"]) for a in again["agents"]] == [("1001", 2),
                                                                        ("1002", 2)]
    assert [(actor, d["month"], d["agents"], d["reviews"])
            for actor, d in audited(env, "recording.totals")] == [
        ("supervisor1", "2026-03", 2, 2), ("qa1", "2026-02", 1, 1),
        ("admin1", "2026-03", 2, 2)]


def test_the_morning_digest_of_yesterday(env: SimpleNamespace) -> None:
    done = write_reviews(env)  # the clock is now 09:00 on the 20th
    digest = call(env, "supervisor", "GET", f"{BASE}/digest").json()
    assert digest["day"] == "2026-03-19"
    assert [(c["recording_id"], c["agent_id"], c["team"], c["number"], c["outcome"],
             c["flags"]) for c in digest["flagged"]] == [
        (env.ids["r1"], "1001", "A", "13r1", "answered", ["late_answer"])]
    assert [(r["review_id"], r["agent_id"], r["reviewer"], r["total"], r["unqualified"])
            for r in digest["reviews"]] == [
        (done["r1"]["id"], "1001", "qa1", 80, False),
        (done["r4"]["id"], "1002", "supervisor1", 50, True)]
    assert digest["unqualified"] == [done["r4"]["id"]]
    assert digest["reviews"][1]["unqualified_because"] == ["missing_disclosure"]
    assert digest["counts"]["by_penalty"] == {"missing_disclosure": 1,
                                              "non_standard_phrase": 2}
    today = call(env, "qa", "GET", f"{BASE}/digest", params={"day": "2026-03-20"}).json()
    assert [c["recording_id"] for c in today["flagged"]] == [env.ids["r2"]]
    assert [(r["review_id"], r["unqualified_because"]) for r in today["reviews"]] == [
        (done["r2"]["id"], ["zero_score"])]
    team_b = call(env, "qa", "GET", f"{BASE}/digest",
                  params={"day": "2026-03-19", "team": "B"}).json()
    assert (team_b["flagged"], [r["review_id"] for r in team_b["reviews"]]) == (
        [], [done["r4"]["id"]])
    reply = call(env, "admin", "GET", f"{BASE}/digest", params={"format": "csv"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    assert reply.headers["content-disposition"] == \
        'attachment; filename="qa-digest-2026-03-19.csv"'
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["kind"], r["recording_id"], r["call_started"]) for r in rows] == [
        ("flagged", str(env.ids["r1"]), "2026-03-19T10:00:00+08:00"),
        ("review", str(env.ids["r1"]), "2026-03-19T10:00:00+08:00"),
        ("review", str(env.ids["r4"]), "2026-02-27T10:00:00+08:00")]
    assert rows[2]["penalties"] == "missing_disclosure x1 (-50)"
    assert rows[2]["reviewed_at"] == "2026-03-19T09:00:00+08:00"
    assert [(actor, d["day"], d["format"], d["flagged"], d["reviews"])
            for actor, d in audited(env, "recording.digest")] == [
        ("supervisor1", "2026-03-19", "json", 1, 2), ("qa1", "2026-03-20", "json", 1, 1),
        ("qa1", "2026-03-19", "json", 0, 1), ("admin1", "2026-03-19", "csv", 1, 2)]


@pytest.mark.parametrize(("route", "params", "reason"), [
    ("qa-totals", {"month": "2026-13"}, "bad_month"),
    ("qa-totals", {"month": "2026-3"}, "bad_month"),
    ("qa-totals", {"month": "march"}, "bad_month"),
    ("qa-totals", {"month": "2026-03-01"}, "bad_month"),
    ("digest", {"day": "2026-02-30"}, "bad_day"),
    ("digest", {"day": "yesterday"}, "bad_day"),
    ("digest", {"day": "2026-3-1"}, "bad_day"),
    ("digest", {"day": "2026-W12-4"}, "bad_day"),  # an ISO week date is not a day here
    ("digest", {"format": "pdf"}, "bad_format"),
])
def test_bad_input_is_refused_with_a_reason(env: SimpleNamespace, route: str,
                                            params: dict[str, str], reason: str) -> None:
    reply = call(env, "qa", "GET", f"{BASE}/{route}", params=params)
    assert reply.status_code == 422
    assert reply.json()["detail"]["error"] == reason and reply.json()["detail"]["message"]


@pytest.mark.parametrize("route", ["qa-totals", "digest"])
def test_an_agent_is_refused_and_audited(env: SimpleNamespace, route: str) -> None:
    reply = call(env, "agent", "GET", f"{BASE}/{route}")
    assert reply.status_code == 403 and reply.json()["detail"]["error"] == "forbidden"
    denied = audited(env, "recording.denied")
    assert [(actor, d["role"]) for actor, d in denied] == [("agent1", "agent")]
    assert "QA" in denied[0][1]["wanted"]
    assert call(env, None, "GET", f"{BASE}/{route}").status_code == 401
    assert audited(env, "recording.totals") == audited(env, "recording.digest") == []
