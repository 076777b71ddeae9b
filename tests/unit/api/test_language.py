"""The pages' language per login (issue 18): chosen with ``PUT /api/v1/session/language``,
returned with the login, the deployment's default until chosen; ``/i18n.js`` carries the
packs and the default. On a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from callflow.api.accounts import Logins, login_router
from callflow.api.credentials import authenticate_requests
from callflow.api.errors import install_error_handlers
from callflow.api.language import (
    PackError,
    default_language,
    language_router,
    load_packs,
    runtime_script,
)
from callflow.api.passwords import hash_password
from callflow.engine.clock import FakeClock
from callflow.engine.policy import Policy
from callflow.store import repo
from callflow.store.db import Store

TOKEN = "deployment-token-0123456789"
PASSWORD = "correct horse battery"


def _app(store: Store, default: str) -> FastAPI:
    logins = Logins(store, Policy.defaults().security, FakeClock(datetime(2026, 3, 20, tzinfo=UTC)),
                    TOKEN, default)
    app = FastAPI()
    install_error_handlers(app)
    authenticate_requests(app, logins.auth)
    app.include_router(login_router(logins))
    app.include_router(language_router(default))
    return app


def _call(app: FastAPI, method: str, url: str, token: str | None = None,
          **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, url, headers=headers, **kw)
    return asyncio.run(go())


def _login(app: FastAPI, username: str) -> dict[str, Any]:
    reply = _call(app, "POST", "/api/v1/session", json={"username": username,
                                                         "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.fixture
def app(store: Store) -> FastAPI:
    store.run(repo.upsert_agent, "1001", name="Li")
    store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    store.run(repo.set_user, "ana", "supervisor", hash_password(PASSWORD))
    return _app(store, "zh-CN")


def test_a_login_gets_the_default_until_it_chooses_then_its_choice(app: FastAPI) -> None:
    first = _login(app, "1001")
    assert (first["language"], first["language_set"]) == ("zh-CN", False)
    chosen = _call(app, "PUT", "/api/v1/session/language", first["token"],
                   json={"language": "en"})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json() == {"username": "1001", "language": "en", "language_set": True}
    again = _login(app, "1001")
    assert (again["language"], again["language_set"]) == ("en", True)
    got = _call(app, "GET", "/api/v1/session/language", again["token"]).json()
    assert got["language"] == "en"
    # another login is untouched: the choice is per user
    other = _login(app, "ana")
    assert (other["language"], other["language_set"]) == ("zh-CN", False)


@pytest.mark.parametrize("body", [{"language": "fr"}, {"language": ""}, {"language": 5},
                                  {"language": "en" * 40}, {}, {"lang": "en"}])
def test_a_bad_language_is_one_clear_error_and_changes_nothing(app: FastAPI,
                                                                body: dict[str, Any]) -> None:
    token = _login(app, "1001")["token"]
    refused = _call(app, "PUT", "/api/v1/session/language", token, json=body)
    assert refused.status_code == 422
    assert _call(app, "GET", "/api/v1/session/language", token).json()["language_set"] is False


def test_the_language_needs_a_person_s_session(app: FastAPI) -> None:
    assert _call(app, "PUT", "/api/v1/session/language",
                 json={"language": "en"}).status_code == 401
    # the deployment token is nobody's login: nothing to store
    refused = _call(app, "PUT", "/api/v1/session/language", TOKEN, json={"language": "en"})
    assert refused.status_code == 400
    assert refused.json()["detail"]["error"] == "not_a_session"


def test_the_runtime_script_carries_both_packs_and_the_default(app: FastAPI) -> None:
    served = _call(app, "GET", "/i18n.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    body = served.text
    assert "/*PACKS*/null" not in body and "/*DEFAULT*/null" not in body
    assert 'var DEFAULT = "zh-CN";' in body
    assert '"语言"' in body and '"language"' in body  # both packs, unescaped


def test_the_default_follows_the_deployment_else_the_policy() -> None:
    assert default_language(None, "zh") == "zh-CN"
    assert default_language(None, "en") == "en"
    assert default_language("en", "zh") == "en"
    with pytest.raises(PackError):
        runtime_script("fr")


def test_packs_escape_a_closing_script_tag() -> None:
    """A pack value is data: "</script>" in it cannot end the served script early."""
    packs = load_packs()
    assert all("</" not in v for pack in packs.values() for v in pack.values())
    assert "<\\/" in json.dumps({"x": "</b>"}).replace("</", "<\\/")
