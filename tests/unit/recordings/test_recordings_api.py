"""The recordings API on a real store (no Asterisk needed): roles, audit, errors, review,
sample, audio and retention. The live path (MixMonitor) is tests/integration."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from logins import session_token

from callflow.api.accounts import Logins
from callflow.api.credentials import authenticate_requests
from callflow.api.errors import install_error_handlers
from callflow.engine.clock import FakeClock, RealClock
from callflow.engine.policy import Policy
from callflow.recordings.feature import RecordingsFeature, settle, wav_info
from callflow.store import repo
from callflow.store.db import Store

TOKEN = "t" * 24
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


class Client:
    """Sync requests into the ASGI app (httpx's transport; no server, no port)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw: object) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(method, url, **kw)  # type: ignore[arg-type]
        return asyncio.run(go())

    def get(self, url: str, **kw: object) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: object) -> httpx.Response:
        return self.request("POST", url, **kw)


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * int(8000 * seconds))


@pytest.fixture
def env(store: Store, tmp_path: Path) -> Iterator[SimpleNamespace]:
    store.run(repo.upsert_agent, "1001", name="Li")
    logins = Logins(store, Policy.defaults().security, RealClock(), TOKEN)
    service = SimpleNamespace(store=store, auth=logins.auth,
                              policy=Policy.defaults(), clock=FakeClock(NOW),
                              settings=SimpleNamespace(state_dir=tmp_path),
                              options=SimpleNamespace(features=[]))
    feature = RecordingsFeature()
    feature._service = service  # type: ignore[assignment]
    app = FastAPI()
    install_error_handlers(app)
    authenticate_requests(app, logins.auth)
    for router in feature.routers():
        app.include_router(router)
    path = tmp_path / "recordings" / "a.wav"
    write_wav(path, 2.5)
    store.run(repo.upsert_call, "c1", direction="inbound", caller_number="139",
              outcome="answered", entered_at=NOW - timedelta(days=2))
    rec = store.run(repo.add_recording, "c1", direction="inbound", agent_id="1001",
                    number="139", path=str(path), started_at=NOW - timedelta(days=2),
                    duration_s=2.5, bytes=path.stat().st_size, flags=["late_answer"])
    tokens = {role: session_token(store, logins, f"{role}1", role,
                                  "1001" if role == "agent" else None)
              for role in ("agent", "supervisor", "qa", "admin")}
    yield SimpleNamespace(client=Client(app), store=store, feature=feature, rid=rec.id,
                              path=path, tokens=tokens)


def get(env: SimpleNamespace, role: str | None, url: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {env.tokens[role]}"} if role else {}
    return env.client.get(url, headers=headers, **kw)


def post(env: SimpleNamespace, role: str, url: str, **kw: object) -> httpx.Response:
    return env.client.post(url, headers={"Authorization": f"Bearer {env.tokens[role]}"}, **kw)


def audit_rows(env: SimpleNamespace, target: str) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in reversed(env.store.read(repo.audit_entries,
                                                                  target=target))]


def test_supervisor_lists_sees_and_plays_agent_refused_all_audited(env: SimpleNamespace) -> None:
    base = "/api/v1/recordings"
    listed = get(env, "supervisor", base).json()["recordings"]
    assert [(r["id"], r["call_id"], r["number"], r["outcome"], r["reviewed"],
             r["started_at"]) for r in listed] == [
        (env.rid, "c1", "139", "answered", False, (NOW - timedelta(days=2)).isoformat())]
    assert get(env, "qa", base, params={"number": "000"}).json() == {"recordings": []}
    assert len(get(env, "admin", base, params={"since": "2026-03-18", "until": "2026-03-18",
                                               "qa": "all", "limit": "5"}).json()[
        "recordings"]) == 1
    audio = get(env, "supervisor", f"{base}/{env.rid}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content == env.path.read_bytes()
    refused = get(env, "agent", f"{base}/{env.rid}/audio")
    assert refused.status_code == 403 and refused.json()["detail"]["error"] == "forbidden"
    assert get(env, "agent", base).status_code == 403
    assert get(env, None, base).status_code == 401
    detail = get(env, "qa", f"{base}/{env.rid}").json()
    assert [(a["actor"], a["action"]) for a in detail["access"]] == [  # newest first
        ("qa1", "recording.detail"), ("agent1", "recording.denied"),
        ("supervisor1", "recording.play")]
    assert audit_rows(env, f"recording:{env.rid}") == [
        ("supervisor1", "recording.play"), ("agent1", "recording.denied"),
        ("qa1", "recording.detail")]
    assert ("agent1", "recording.denied") in audit_rows(env, "recording:*")
    assert ("supervisor1", "recording.list") in audit_rows(env, "recording:*")


@pytest.mark.parametrize(("url", "params", "status", "reason"), [
    ("/api/v1/recordings/abc", {}, 422, "bad_id"),
    ("/api/v1/recordings/999", {}, 404, "not_found"),
    ("/api/v1/recordings", {"qa": "maybe"}, 422, "bad_qa"),
    ("/api/v1/recordings", {"limit": "501"}, 422, "bad_limit"),
    ("/api/v1/recordings", {"since": "yesterday"}, 422, "bad_date"),
])
def test_bad_requests_say_why(env: SimpleNamespace, url: str, params: dict[str, str],
                              status: int, reason: str) -> None:
    reply = get(env, "supervisor", url, params=params)
    assert reply.status_code == status and reply.json()["detail"]["error"] == reason


def test_review_scoring_sheet_and_sample(env: SimpleNamespace) -> None:
    base = "/api/v1/recordings"
    sheet = get(env, "qa", f"{base}/scoring-sheet").json()
    scores = {c["code"]: c["max"] for c in sheet["criteria"]}
    body = {"scores": scores, "penalties": [{"code": "non_standard_phrase", "count": 2}],
            "notes": "two non-standard closings"}
    stored = post(env, "qa", f"{base}/{env.rid}/review", json=body).json()
    assert (stored["total"], stored["unqualified"], stored["reviewer"]) == (80, False, "qa1")
    assert post(env, "admin", f"{base}/{env.rid}/review", json=body).status_code == 403
    bad = post(env, "qa", f"{base}/{env.rid}/review",
               json={**body, "scores": {**scores, "speech_rate": 99}})
    assert bad.status_code == 422 and bad.json()["detail"]["error"] == "score_out_of_range"
    bad = post(env, "qa", f"{base}/{env.rid}/review", json={"scores": [], "x": 1})
    assert bad.json()["detail"]["error"] == "bad_review"
    detail = get(env, "supervisor", f"{base}/{env.rid}").json()
    assert [r["total"] for r in detail["reviews"]] == [80] and detail["reviewed"] is True
    picked = post(env, "supervisor", f"{base}/sample", params={"month": "2026-03"}).json()
    assert picked["selected"] == [{"id": env.rid, "agent_id": "1001",
                                   "reason": "flagged: late_answer"}]
    assert post(env, "qa", f"{base}/sample", params={"month": "2026-13"}).json()[
        "detail"]["error"] == "bad_month"
    selected = get(env, "qa", base, params={"qa": "selected"}).json()["recordings"]
    assert selected[0]["qa_reason"] == "flagged: late_answer"
    assert len(get(env, "qa", base, params={"qa": "reviewed"}).json()["recordings"]) == 1


def test_retention_deletes_the_file_and_audio_is_gone(env: SimpleNamespace) -> None:
    feature = env.feature
    assert feature.purge(NOW) == 0
    assert feature.purge(NOW + timedelta(days=365)) == 1
    assert not env.path.exists()
    reply = get(env, "supervisor", f"/api/v1/recordings/{env.rid}/audio")
    assert reply.status_code == 410 and reply.json()["detail"]["error"] == "purged"
    due = feature.next_purge(datetime(2026, 3, 20, 19, 0, tzinfo=UTC))  # 03:00 local
    assert due == datetime(2026, 3, 20, 19, 30, tzinfo=UTC)  # 03:30 Asia/Shanghai
    assert feature.next_purge(due) == due + timedelta(days=1)


def test_wav_header_and_settling(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    write_wav(path, 1.25)
    info = wav_info(path)
    assert (info.rate, info.channels, info.sample_width) == (8000, 1, 2)
    assert info.duration_s == pytest.approx(1.25)
    assert settle(path, interval_s=0.01) == path.stat().st_size
    assert settle(tmp_path / "none.wav", interval_s=0.01, timeout_s=0.05) == -1
    # a header not yet final (MixMonitor still writing): the data bytes count
    raw = bytearray(path.read_bytes())
    raw[40:44] = b"\0\0\0\0"
    path.write_bytes(bytes(raw))
    assert wav_info(path).duration_s == pytest.approx(1.25)
