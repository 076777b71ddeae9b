"""The real app under uvicorn on 127.0.0.1, driven by httpx and the websockets library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import shutil
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from callflow.api import app as app_module
from callflow.api import wsconnection
from callflow.api.app import ApiDeps, create_app, server_config
from callflow.api.auth import SUPERVISOR, TokenAuth
from callflow.stream.hub import EventHub

TOKEN = "test-token-0123456789abcdef"
DOC = Path(__file__).resolve().parents[3] / "docs" / "websocket-protocol.md"


def _schemas() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [json.loads(block) for block in blocks if '"$schema"' in block]


SERVER_FRAME_SCHEMA = next(s for s in _schemas() if s["$id"].endswith("server-frame"))
CLIENT_FRAME_SCHEMA = next(s for s in _schemas() if s["$id"].endswith("client-frame"))


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """The JSON Schema subset the protocol document uses (oneOf, type, const, enum, ...)."""
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not schema_errors(value, s, path)]
        return [] if len(matches) == 1 else [f"{path}: matches {len(matches)} of oneOf"]
    errors: list[str] = []
    kinds = {"object": dict, "string": str, "integer": int, "array": list}
    wanted = schema.get("type")
    if wanted is not None:
        types = tuple(kinds[t] for t in ([wanted] if isinstance(wanted, str) else wanted))
        if not isinstance(value, types) or isinstance(value, bool):
            return [f"{path}: {value!r} is not {wanted}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value!r} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected {k}" for k in value if k not in props]
        for key, sub in props.items():
            if key in value:
                errors += schema_errors(value[key], sub, f"{path}.{key}")
    return errors


def test_the_client_frames_are_the_documented_ones() -> None:
    assert schema_errors({"type": "ping", "id": 3}, CLIENT_FRAME_SCHEMA) == []
    assert schema_errors({"type": "auth", "token": "s2.x"}, CLIENT_FRAME_SCHEMA) == []
    assert schema_errors({"type": "auth"}, CLIENT_FRAME_SCHEMA)
    assert schema_errors({"type": "subscribe"}, CLIENT_FRAME_SCHEMA)


def test_the_schema_checker_rejects_what_the_protocol_forbids() -> None:
    good = {"v": 1, "type": "event", "seq": 1, "topic": "board", "payload": {}}
    assert schema_errors(good, SERVER_FRAME_SCHEMA) == []
    for bad in ({**good, "v": 2}, {**good, "extra": 1}, {k: good[k] for k in good if k != "seq"},
                {**good, "type": "snapshot"}, {"v": 1, "type": "error", "error": "nope",
                                                "detail": ""}):
        assert schema_errors(bad, SERVER_FRAME_SCHEMA), bad


@dataclass
class RunningApi:
    port: int
    hub: EventHub
    health: dict[str, Any] = field(default_factory=dict)
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events" + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def events(api: RunningApi, query: str = "", *, token: str | None = TOKEN,
                 **options: Any) -> AsyncIterator[ClientConnection]:
    """A client of /ws/events that authenticates as browsers do: a first ``auth`` frame."""
    async with connect(api.url(query), **options) as ws:
        if token is not None:
            frame = {"type": "auth", "token": token}
            assert schema_errors(frame, CLIENT_FRAME_SCHEMA) == []
            await ws.send(json.dumps(frame))
        yield ws


StartApi = Callable[..., Awaitable[RunningApi]]


@pytest.fixture
async def start_api() -> AsyncIterator[StartApi]:
    """Starts the real app under uvicorn in this test's loop (the hub is loop-bound)."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(*, client_buffer: int = 256, history: int = 1024,
                    send_buffer: int | None = None, auth: TokenAuth | None = None,
                    **server_options: Any) -> RunningApi:
        hub = EventHub(client_buffer=client_buffer, history=history)
        hub.snapshot_provider(lambda allowed: {"board": "current"} if allowed("board") else {})
        api = RunningApi(0, hub, health={"ami": {"ok": True}, "agi": {"ok": True},
                                              "store": {"ok": True}})

        async def health() -> dict[str, dict[str, Any]]:
            behaviour = api.health.get("__behaviour__")
            if behaviour == "raise":
                raise RuntimeError(f"boom with {TOKEN}")
            if behaviour == "hang":
                await asyncio.sleep(60)
            return {k: v for k, v in api.health.items() if k != "__behaviour__"}

        app = create_app(ApiDeps(hub=hub, health=health, api_token=TOKEN, auth=auth))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if send_buffer is not None:  # inherited by accepted sockets: backpressure comes fast
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(server_config(app, "127.0.0.1", port,
                                              timeout_graceful_shutdown=5, **server_options))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        running.append((server, task))
        deadline = time.monotonic() + 10
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.01)
        api.port, api.server, api.serving = port, server, task
        return api

    yield start
    for server, _ in running:
        server.should_exit = True
    for _, task in running:
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def api(start_api: StartApi) -> RunningApi:
    return await start_api()


async def recv_frame(ws: ClientConnection, timeout: float = 2.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert schema_errors(frame, SERVER_FRAME_SCHEMA) == [], frame
    return frame


async def expect_close(ws: ClientConnection, timeout: float = 2.0) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


# --- /healthz -----------------------------------------------------------------------------


async def test_healthz_is_200_when_every_component_is_ok(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"status": "ok", "down": [], "components": {
        "ami": {"ok": True}, "agi": {"ok": True}, "store": {"ok": True}}}


@pytest.mark.parametrize("ami", [{"ok": False, "detail": "link down"}, {"ok": "yes"}, "up", {}])
async def test_healthz_is_503_degraded_when_a_component_is_not_ok(api: RunningApi,
                                                                  ami: Any) -> None:
    api.health["ami"] = ami
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["down"] == ["ami"]  # names the part down
    assert body["components"]["ami"]["ok"] is False
    assert body["components"]["store"] == {"ok": True}


@pytest.mark.parametrize(("behaviour", "detail"), [
    ("raise", "health check failed: RuntimeError"),
    ("hang", "health check timed out after 0.2 s"),
])
async def test_healthz_is_503_when_the_check_itself_fails(
        api: RunningApi, monkeypatch: pytest.MonkeyPatch, behaviour: str, detail: str) -> None:
    monkeypatch.setattr(app_module, "HEALTH_TIMEOUT_SECONDS", 0.2)
    api.health["__behaviour__"] = behaviour
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "down": ["health"],
                               "components": {"health": {"ok": False, "detail": detail}}}
    assert TOKEN not in response.text


async def test_healthz_leaks_no_secret(api: RunningApi) -> None:
    api.health["store"] = {
        "ok": True,
        "detail": f"connected to postgresql://callflow:hunter2@db/cf (api token {TOKEN})",
        "url": "postgresql://callflow:hunter2@db/cf",
        "password": "hunter2",
        "ami_secret": "s3cret",
        "backend": "postgresql://callflow:hunter2@db/cf",
        "latency_ms": 3.5,
        "pool": {"nested": "hunter2"},
    }
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    for secret in ("hunter2", "s3cret", TOKEN):
        assert secret not in response.text
    store = response.json()["components"]["store"]
    assert store == {"ok": True, "detail": "connected to postgresql://***@db/cf (api token ***)",
                     "url": "postgresql://***@db/cf", "backend": "postgresql://***@db/cf",
                     "latency_ms": 3.5}


# --- security headers and the error body ---------------------------------------------------


async def test_every_response_carries_the_security_headers(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        responses = [await http.get(path) for path in (
            "/healthz", "/openapi.json", "/docs", "/docs/assets/swagger-ui.css", "/nowhere",
            f"/healthz?token={TOKEN}")]
        responses.append(await http.post("/healthz"))
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 400, 405]
    for response in responses:
        assert response.headers["x-frame-options"] == "DENY", response.url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "'unsafe-inline'" not in csp.split("style-src")[0]  # never for scripts
    assert responses[0].headers["content-security-policy"] == app_module.PAGE_CSP


async def test_the_docs_page_allows_its_one_inline_script_by_hash(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        page = await http.get("/docs")
    scripts = re.findall(r"<script>(.*?)</script>", page.text, flags=re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    script_src = page.headers["content-security-policy"].split("script-src ")[1].split(";")[0]
    assert script_src == f"'self' 'sha256-{digest}'"


async def test_errors_have_one_body_and_tokens_in_urls_are_refused(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        missing = await http.get("/nowhere")
        in_url = await http.get(f"/healthz?token={TOKEN}")
    assert missing.json() == {"detail": {"error": "not_found", "message": "Not Found"}}
    assert in_url.json()["detail"]["error"] == "token_in_url"
    assert TOKEN not in in_url.text


# --- OpenAPI docs, offline ------------------------------------------------------------------


async def test_docs_page_uses_only_local_assets_and_they_load(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert not re.search(r"https?://", page.text), "the docs page names an outside host"
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(assets) == 3  # script, stylesheet, favicon
        for asset in assets:
            response = await http.get(asset)
            assert response.status_code == 200, asset
            assert len(response.content) > 1000, asset
        assert "SwaggerUIBundle" in (await http.get(assets[[a.endswith(".js")
                                                           for a in assets].index(True)])).text
        spec = (await http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/healthz" in spec["paths"]
    assert "/ws/events" in spec["info"]["description"]


async def test_behind_a_proxy_prefix_the_docs_point_under_it(start_api: StartApi) -> None:
    api = await start_api(root_path="/callflow")
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        page = (await http.get("/docs")).text
        assert "'/callflow/openapi.json'" in page
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert assets and all(a.startswith("/callflow/docs/assets/") for a in assets)
        # The proxy strips the prefix before forwarding, as a real one would.
        for asset in assets:
            assert (await http.get(asset.removeprefix("/callflow"))).status_code == 200


# --- websocket: authentication and the handshake --------------------------------------------


@pytest.mark.parametrize("token", ["", "wrong-token-0123456789abcdef", TOKEN[:-1],
                                   TOKEN + "x", "x" * 513])
async def test_websocket_without_the_right_token_is_closed_1008(api: RunningApi,
                                                                token: str) -> None:
    async with events(api, token=token) as ws:
        assert await expect_close(ws) == (1008, "unauthorized")
    assert api.hub.stats()["subscribers"] == 0


@pytest.mark.parametrize("first", ['{"type": "ping"}', "not json", b"binary",
                                   '{"type": "auth", "token": 7}'])
async def test_a_first_frame_that_is_not_auth_is_closed_1008(api: RunningApi,
                                                             first: str | bytes) -> None:
    async with events(api, token=None) as ws:
        await ws.send(first)
        assert await expect_close(ws) == (1008, "unauthorized")


async def test_no_auth_frame_in_time_is_closed_1008(api: RunningApi,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsconnection, "AUTH_TIMEOUT_S", 0.2)
    async with events(api, token=None) as ws:
        assert await expect_close(ws) == (1008, "unauthorized")


@pytest.mark.parametrize("query", [f"token={TOKEN}", f"since=0&TOKEN={TOKEN}",
                                   "access_token=whatever"])
async def test_a_token_in_the_url_is_refused_even_a_right_one(api: RunningApi,
                                                              query: str) -> None:
    async with events(api, query, token=None) as ws:
        assert await expect_close(ws) == (1008, "token in URL refused: send an auth frame")
    assert api.hub.stats()["subscribers"] == 0


async def test_websocket_accepts_a_bearer_header(api: RunningApi) -> None:
    async with events(api, "since=0", token=None,
                      additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        api.hub.publish("board", {"n": 1})
        assert (await recv_frame(ws))["seq"] == 1


class Revocable(TokenAuth):
    """The deployment token, until the test revokes it; re-checked every 0.1 s."""

    recheck_s = 0.1

    def __init__(self) -> None:
        super().__init__({TOKEN: SUPERVISOR})
        self.revoked = False

    def authenticate(self, presented: str | None) -> Any:
        return None if self.revoked else super().authenticate(presented)


async def test_a_revoked_session_closes_its_open_stream(start_api: StartApi) -> None:
    auth = Revocable()
    api = await start_api(auth=auth)
    async with events(api, "since=0") as ws:
        api.hub.publish("board", {"n": 1})
        await recv_frame(ws)
        await asyncio.sleep(0.3)  # re-checked meanwhile, still valid: still streaming
        api.hub.publish("board", {"n": 2})
        assert (await recv_frame(ws))["seq"] == 2
        auth.revoked = True
        assert await expect_close(ws, timeout=1.0) == (1008, "session ended")
    assert api.hub.stats()["subscribers"] == 0


@pytest.mark.parametrize(("query", "reason"), [
    ("since=-1", "bad since: expected a non-negative integer"),
    ("since=abc", "bad since: expected a non-negative integer"),
    ("topics=board,", "bad topics: names are 1-128 of A-Z a-z 0-9 _ . : -"),
    ("topics=bo%20ard", "bad topics: names are 1-128 of A-Z a-z 0-9 _ . : -"),
    ("topics=" + ",".join(f"agent:{i}" for i in range(101)), "bad topics: more than 100"),
])
async def test_websocket_bad_parameters_are_closed_1008_with_the_reason(
        api: RunningApi, query: str, reason: str) -> None:
    async with events(api, query) as ws:
        assert await expect_close(ws) == (1008, reason)


async def test_the_token_never_reaches_the_logs(api: RunningApi,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        async with events(api, "since=0") as ws:
            api.hub.publish("board", {})
            await recv_frame(ws)
        async with events(api, token="wrong-token-0123456789abcdef") as ws:
            await expect_close(ws)
        async with events(api, "token=wrong-token-in-url", token=None) as ws:
            await expect_close(ws)  # refused; a client that still does it is not logged either
    assert "token=***" in caplog.text  # uvicorn did log the path, redacted
    assert TOKEN not in caplog.text
    assert "wrong-token" not in caplog.text
    assert "in-url" not in caplog.text


# --- websocket: streaming and resume --------------------------------------------------------


async def test_events_stream_in_seq_order_filtered_by_topics(api: RunningApi) -> None:
    async with events(api, "since=0&topics=board,agent:1001") as ws:
        topics = ["board", "agent:1001", "agent:1002", "queue"] * 25
        for i, topic in enumerate(topics):
            api.hub.publish(topic, {"i": i, "text": "對不起,讓您久等了"})
        wanted = [(i + 1, t) for i, t in enumerate(topics) if t in ("board", "agent:1001")]
        got = [await recv_frame(ws) for _ in wanted]
    assert [(f["seq"], f["topic"]) for f in got] == wanted
    assert got[0] == {"v": 1, "type": "event", "seq": 1, "topic": "board",
                      "payload": {"i": 0, "text": "對不起,讓您久等了"}}


async def test_without_since_the_stream_starts_with_a_snapshot(api: RunningApi) -> None:
    api.hub.publish("board", {"old": True})
    async with events(api, "topics=board") as ws:
        assert await recv_frame(ws) == {"v": 1, "type": "snapshot", "seq": 1,
                                        "reason": "initial", "state": {"board": "current"}}
        api.hub.publish("board", {"new": True})
        assert (await recv_frame(ws))["seq"] == 2


async def test_reconnect_with_since_resumes_without_gap_or_duplicate(api: RunningApi) -> None:
    async with events(api, "since=0") as ws:
        for i in range(5):
            api.hub.publish("board", {"i": i})
        last = [await recv_frame(ws) for _ in range(3)][-1]["seq"]
    assert last == 3
    for i in range(5, 8):
        api.hub.publish("board", {"i": i})
    async with events(api, f"since={last}") as ws:
        resumed = [await recv_frame(ws) for _ in range(5)]
        api.hub.publish("board", {"i": 8})
        resumed.append(await recv_frame(ws))
    assert [f["seq"] for f in resumed] == [4, 5, 6, 7, 8, 9]


async def test_since_older_than_history_gets_a_snapshot(start_api: StartApi) -> None:
    api = await start_api(history=4)
    for i in range(10):
        api.hub.publish("board", {"i": i})
    async with events(api, "since=2") as ws:
        assert await recv_frame(ws) == {"v": 1, "type": "snapshot", "seq": 10,
                                        "reason": "resume_too_old",
                                        "state": {"board": "current"}}
        api.hub.publish("board", {"i": 10})
        assert (await recv_frame(ws))["seq"] == 11


async def test_an_unencodable_event_becomes_an_error_frame_and_the_stream_goes_on(
        api: RunningApi) -> None:
    async with events(api, "since=0") as ws:
        api.hub.publish("board", {"bad": {1, 2}})
        api.hub.publish("board", {"nan": float("nan")})
        api.hub.publish("board", {"good": True})
        errors = [await recv_frame(ws) for _ in range(2)]
        assert [e["error"] for e in errors] == ["unencodable_event"] * 2
        assert "seq 1" in errors[0]["detail"]
        assert (await recv_frame(ws))["payload"] == {"good": True}


# --- websocket: what clients send -----------------------------------------------------------


async def test_ping_gets_a_pong_echoing_its_id(api: RunningApi) -> None:
    async with events(api, "since=0") as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_frame(ws) == {"v": 1, "type": "pong"}
        await ws.send(json.dumps({"type": "ping", "id": "abc"}))
        assert await recv_frame(ws) == {"v": 1, "type": "pong", "id": "abc"}
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        assert await recv_frame(ws) == {"v": 1, "type": "pong", "id": 7}


@pytest.mark.parametrize(("frame", "error"), [
    ("not json", "bad_json"),
    ("", "bad_json"),
    ('{"type": "ping"', "bad_json"),
    ("[1, 2]", "bad_frame"),
    ('"ping"', "bad_frame"),
    ('{"type": "subscribe"}', "unknown_type"),
    ('{"no_type": 1}', "unknown_type"),
    ('{"type": "ping", "id": {"x": 1}}', "bad_frame"),
    ('{"type": "ping", "id": true}', "bad_frame"),
    ('{"type": "ping", "id": "' + "x" * 65 + '"}', "bad_frame"),
    (b"\x00\x01binary", "binary_not_supported"),
])
async def test_garbage_gets_an_error_frame_and_the_connection_is_kept(
        api: RunningApi, frame: str | bytes, error: str) -> None:
    async with events(api, "since=0") as ws:
        await ws.send(frame)
        reply = await recv_frame(ws)
        assert (reply["type"], reply["error"]) == ("error", error)
        assert reply["detail"]
        # Still connected, still streaming, and the engine never noticed.
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        assert await recv_frame(ws) == {"v": 1, "type": "pong", "id": 1}
        seq = api.hub.publish("board", {"after": error})
        assert (await recv_frame(ws))["seq"] == seq


async def test_a_frame_over_64_kib_gets_an_error_then_close_1009(api: RunningApi) -> None:
    async with events(api, "since=0") as bystander:
        async with events(api, "since=0") as ws:
            await ws.send(json.dumps({"type": "ping", "id": "x" * (64 * 1024)}))
            reply = await recv_frame(ws)
            assert reply["error"] == "frame_too_large"
            assert await expect_close(ws) == (1009, "frame_too_large")
        async with events(api, "since=0") as ws:
            # Far past the server's own limit: the protocol layer cuts it off, still 1009.
            await ws.send("x" * (2 * 1024 * 1024))
            assert (await expect_close(ws))[0] == 1009
        seq = api.hub.publish("board", {"still": "fine"})
        assert (await recv_frame(bystander))["seq"] == seq


async def test_a_frame_of_exactly_64_kib_is_accepted(api: RunningApi) -> None:
    async with events(api, "since=0") as ws:
        frame = json.dumps({"type": "ping", "id": 1, "pad": ""})
        frame = frame[:-2] + "x" * (64 * 1024 - len(frame)) + '"}'
        assert len(frame.encode()) == 64 * 1024
        await ws.send(frame)
        assert await recv_frame(ws) == {"v": 1, "type": "pong", "id": 1}


# --- websocket: shutdown ---------------------------------------------------------------------


async def test_closing_the_hub_closes_clients_with_1001(api: RunningApi) -> None:
    async with events(api, "since=0") as ws:
        api.hub.publish("board", {})
        await recv_frame(ws)
        api.hub.close()
        assert await expect_close(ws) == (1001, "server shutting down")


async def test_server_shutdown_closes_clients_with_1012_and_frees_their_subscriptions(
        start_api: StartApi) -> None:
    api = await start_api()
    assert api.server is not None and api.serving is not None
    async with events(api, "since=0") as ws:
        api.hub.publish("board", {})
        await recv_frame(ws)
        assert api.hub.stats()["subscribers"] == 1
        api.server.should_exit = True
        assert (await expect_close(ws, timeout=5))[0] == 1012
    await asyncio.wait_for(api.serving, 10)
    assert api.hub.stats()["subscribers"] == 0


# --- websocket: a slow client ---------------------------------------------------------------


async def test_a_slow_client_drops_to_a_snapshot_and_costs_the_others_nothing(
        start_api: StartApi) -> None:
    api = await start_api(client_buffer=8, send_buffer=4096)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", api.port))
    raw.setblocking(False)
    count = 600
    payload = {"blob": secrets.token_hex(2048)}  # incompressible, should deflate be on
    async with events(api, "since=0", sock=raw, max_queue=1) as slow, \
            events(api, "since=0") as fast:

        fast_seqs: list[int] = []
        publish_seconds: list[float] = []
        for _ in range(count):
            start = time.perf_counter()
            api.hub.publish("board", payload)
            publish_seconds.append(time.perf_counter() - start)
            # A healthy client keeps pace: it reads each event as it comes.
            fast_seqs.append((await recv_frame(fast))["seq"])
        assert fast_seqs == list(range(1, count + 1))
        assert api.hub.stats()["dropped_to_snapshot"] >= 1
        # Typically ~10 us; the median ignores the odd preemption on a loaded machine.
        assert statistics.median(publish_seconds) < 0.001

        # The slow client sees consecutive events, then one snapshot, then live events.
        seqs: list[int] = []
        while True:
            frame = await recv_frame(slow, 5.0)
            if frame["type"] == "snapshot":
                break
            seqs.append(frame["seq"])
        assert seqs == list(range(1, len(seqs) + 1))
        assert frame["reason"] == "overflow"
        assert frame["state"] == {"board": "current"}
        assert frame["seq"] > len(seqs)
        with contextlib.suppress(TimeoutError):
            while True:  # drain what was sent after the snapshot
                assert (await recv_frame(slow, 0.3))["seq"] > frame["seq"]
        seq = api.hub.publish("board", {"live": True})
        assert (await recv_frame(slow))["seq"] == seq


async def test_a_batch_of_events_goes_out_in_one_write_in_seq_order(
        start_api: StartApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20: what piled up for a client is written at once (api/ws_batching.py)."""
    from callflow.api import ws_batching

    batches: list[int] = []
    plain_send = ws_batching.BatchingWebSockets.send

    async def counting_send(self: ws_batching.BatchingWebSockets, message: Any) -> None:
        if ws_batching.FRAMES in message:
            batches.append(len(message[ws_batching.FRAMES]))
        await plain_send(self, message)

    monkeypatch.setattr(ws_batching.BatchingWebSockets, "send", counting_send)
    api = await start_api()
    for n in range(1, 51):          # before the client comes: its first batch is all 50
        api.hub.publish("board", {"n": n})
    async with events(api, "since=0") as ws:
        got = [await recv_frame(ws) for _ in range(50)]
        api.hub.publish("board", {"n": 51})
        got.append(await recv_frame(ws))
    assert [f["seq"] for f in got] == list(range(1, 52))
    assert [f["payload"]["n"] for f in got] == list(range(1, 52))
    assert batches and batches[0] == 50


@pytest.mark.std("STD-145")
async def test_a_stalled_client_later_gets_a_snapshot_consistent_with_every_change(
        start_api: StartApi) -> None:
    """Issue 20: a client that stops reading holds no one up; when it reads again, what it
    got (deltas, then a snapshot, then deltas) adds up to exactly the hub's final state."""
    api = await start_api(client_buffer=8, send_buffer=4096)
    state = {"total": 0}
    api.hub.snapshot_provider(lambda allowed: dict(state) if allowed("board") else {})
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", api.port))
    raw.setblocking(False)
    blob = secrets.token_hex(1024)
    async with events(api, "since=0", sock=raw, max_queue=1) as stalled, \
            events(api, "since=0") as healthy:
        for n in range(1, 401):
            state["total"] += n
            api.hub.publish("board", {"add": n, "blob": blob})
            frame = await recv_frame(healthy)       # the healthy client keeps pace
            assert (frame["seq"], frame["payload"]["add"]) == (n, n)
        total, seq, snapshots = 0, 0, 0
        with contextlib.suppress(TimeoutError):
            while seq < api.hub.last_seq:
                frame = await recv_frame(stalled, 5.0)
                if frame["type"] == "snapshot":
                    snapshots += 1
                    total, seq = frame["state"]["total"], frame["seq"]
                else:
                    assert frame["seq"] == seq + 1
                    total, seq = total + frame["payload"]["add"], frame["seq"]
        assert snapshots >= 1
        assert (total, seq) == (sum(range(1, 401)), 400)


@pytest.mark.browser
async def test_swagger_ui_renders_the_openapi_document_offline(api: RunningApi) -> None:
    """Swagger UI must understand FastAPI's OpenAPI 3.1 (4.x shows an error) with no CDN."""
    playwright_api = pytest.importorskip("playwright.async_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    outside: list[str] = []

    async def local_only(route: Any) -> None:
        if route.request.url.startswith(api.base_url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium,
                                           args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            refused: list[str] = []  # what the Content-Security-Policy blocked, if anything
            page.on("console", lambda m: refused.append(m.text)
                    if "Content Security Policy" in m.text else None)
            await page.route("**/*", local_only)
            await page.goto(f"{api.base_url}/docs")
            await page.wait_for_selector("#operations-operations-healthz", timeout=10_000)
            assert "callflow" in await page.inner_text(".info .title")
            assert await page.locator(".errors-wrapper").count() == 0
            assert refused == []
        finally:
            await browser.close()
    assert outside == []
