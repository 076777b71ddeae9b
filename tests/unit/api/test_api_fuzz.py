"""The whole API fuzzed by schemathesis, bounded: no 5xx, every answer as documented.

The product's own app (conftest ``product_api``: every feature's routes and the logins,
a real SQLite store, no Asterisk) is called for every operation of its OpenAPI document
as each role, supervisor, qa, agent, admin, and with no credentials, with requests
that fit the document (positive) and requests that break it (negative). Every answer
must be below 500 and match the status codes and bodies the document gives it
(``ErrorBody`` for every refusal, api/errors.py). ``GET /healthz`` alone may answer its
documented 503: no Asterisk is up here.

Each request gets a fresh session of its role, so an operation that ends sessions
(logout, an admin's revoke) cannot starve the ones after it. The run is derandomized:
the same cases every time, ``EXAMPLES`` per operation, role and mode, so it stays a
bounded part of ``make test``; each role's figures are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from product_api import ProductApi
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

ROLES = ("supervisor", "qa", "agent", "admin", "none")
#: Cases per operation, role and generation mode: the run's bound.
EXAMPLES = 8
BASE_URL = "http://testserver"


def _params(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """A query as a browser would send it: repeated keys for lists, JSON for the rest."""
    pairs: list[tuple[str, str]] = []
    for key, value in raw.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(key), item if isinstance(item, str) else json.dumps(item)))
    return pairs


async def _send(app: FastAPI, request: dict[str, Any]) -> httpx.Response:
    """Send one generated request (``Case.as_transport_kwargs``) into the app."""
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 50000))
    async with httpx.AsyncClient(transport=transport) as client:
        body: dict[str, Any] = {}
        if "json" in request:
            body["json"] = request["json"]
        elif isinstance(request.get("data"), str | bytes):
            body["content"] = request["data"]
        elif request.get("data") is not None:
            body["data"] = request["data"]
        return await client.request(request["method"], request["url"],
                                    headers=request.get("headers"),
                                    params=_params(request.get("params") or {}), **body)


@dataclass
class Run:
    """One role's run: what was sent and what failed."""

    api: ProductApi
    role: str
    requests: int = 0
    unsendable: int = 0
    failures: list[str] = field(default_factory=list)

    def fuzz(self, operation: Any, mode: GenerationMode) -> None:
        """``EXAMPLES`` cases of one operation in one mode, each checked as documented."""
        checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
        if operation.label == "GET /healthz":  # no Asterisk here: degraded is its answer
            checks.remove(not_a_server_error)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            token = self.api.token(self.role)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            request = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
            try:
                response = self.api.portal.call(_send, self.api.app, request)
            except (TypeError, ValueError, UnicodeError, httpx.InvalidURL):
                self.unsendable += 1  # no HTTP client could send it either
                return
            except Exception:
                self.requests += 1
                self.failures.append(f"{operation.label} as {self.role}: the app raised\n"
                                     f"{traceback.format_exc(limit=-3)}")
                return
            self.requests += 1
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except BaseException as failed:
                self.failures.append(f"{operation.label} as {self.role} ({mode.value}): "
                                     f"{response.status_code} {response.text[:300]}\n{failed}")

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to break


@pytest.mark.parametrize("role", ROLES)
def test_no_server_error_and_every_answer_as_documented(product_api: ProductApi,
                                                        role: str) -> None:
    schema = schemathesis.openapi.from_dict(product_api.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    run = Run(product_api, role)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run.fuzz(operation, mode)
    print(f"\nschemathesis as {role}: {len(operations)} routes, {run.requests} requests "
          f"({run.unsendable} unsendable skipped), failures: {len(run.failures)}")
    assert run.failures == [], "\n\n".join(run.failures[:20])
