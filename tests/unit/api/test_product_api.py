"""The product's whole API (every feature's routes): security headers on every page and
answer, /metrics behind a login, no credentials in URLs, and what the fuzzer once found
(ids above int64, an over-long report file name) answered in words, not with a 500."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from product_api import TOKEN, ProductApi

from callflow.api.app import PAGE_CSP
from callflow.engine.verdicts import Outcome, Verdict
from callflow.store import records

PAGES = ("/board", "/board/board.js", "/board/board.css", "/desktop", "/desktop/desktop.js",
         "/recordings", "/recordings/recordings.js", "/docs", "/openapi.json", "/healthz")


def assert_secure(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp


@pytest.mark.parametrize("path", PAGES)
def test_every_page_and_asset_carries_the_security_headers(product_api: ProductApi,
                                                           path: str) -> None:
    response = product_api.request("GET", path)
    assert response.status_code in (200, 503), path  # /healthz: no Asterisk here
    assert_secure(response)
    if path in ("/board", "/desktop", "/recordings"):
        assert response.headers["content-security-policy"] == PAGE_CSP
        assert "<script>" not in response.text and " style=" not in response.text
        assert " on" not in response.text.split("<body")[1].split(">")[0]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/board/state"), ("GET", "/api/v1/tasks"), ("GET", "/api/v1/recordings"),
    ("POST", "/api/v1/calls/c1/hold"), ("GET", "/no/such/page"), ("DELETE", "/board"),
    ("POST", "/api/v1/session"),
])
def test_every_refusal_carries_them_and_the_error_body(product_api: ProductApi, method: str,
                                                       path: str) -> None:
    response = product_api.request(method, path)
    assert 400 <= response.status_code < 500
    assert_secure(response)
    assert set(response.json()["detail"]) >= {"error", "message"}


def test_metrics_need_a_supervisor_or_admin_or_the_deployment_token(
        product_api: ProductApi) -> None:
    codes = {role: product_api.request("GET", "/metrics", product_api.token(role)).status_code
             for role in ("none", "agent", "qa", "supervisor", "admin")}
    assert codes == {"none": 401, "agent": 403, "qa": 403, "supervisor": 200, "admin": 200}
    scraped = product_api.request("GET", "/metrics", TOKEN)  # Prometheus' bearer_token_file
    assert scraped.status_code == 200 and "callflow_ami_link_up 0.0" in scraped.text
    assert scraped.headers["content-type"].startswith("text/plain")
    assert_secure(scraped)


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/board/state", "/board",
                                  "/api/v1/recordings"])
def test_credentials_in_a_url_are_refused_even_right_ones(product_api: ProductApi,
                                                          path: str) -> None:
    for query in (f"token={TOKEN}", f"access_token={TOKEN}"):
        response = product_api.request("GET", f"{path}?{query}")
        assert response.status_code == 400
        assert response.json()["detail"]["error"] == "token_in_url"
        assert TOKEN not in response.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/tasks/9223372036854775808", 422),
    ("PATCH", "/api/v1/tasks/99999999999999999999999", 422),
    ("POST", "/api/v1/tasks/9223372036854775808/cancel", 422),
    ("POST", "/api/v1/alarms/19817666414059862106874067288064/ack", 422),
    ("GET", "/api/v1/tasks/9223372036854775807", 404),  # the largest id is looked up
    ("GET", "/api/v1/reports/files/" + "r" * 300 + ".csv", 422),
    ("GET", "/api/v1/reports/files/" + "r" * 124 + ".csv", 404),  # long, yet a name
    ("GET", "/api/v1/reports/files/a%00b.csv", 404),
    ("GET", "/api/v1/reports/files/..%2Fcallflow.db", 404),
    ("GET", "/board/" + "a" * 300 + ".js", 404),  # a page asset: not in the OpenAPI
])
def test_what_the_fuzzer_found_is_answered_in_words(product_api: ProductApi, method: str,
                                                    path: str, status: int) -> None:
    response = product_api.request(method, path, TOKEN, json={"note": "x"}
                                   if method == "PATCH" else None)
    assert response.status_code == status, response.text
    assert set(response.json()["detail"]) >= {"error", "message"}


def test_a_calls_verdicts_and_the_compliance_history_for_supervisors(
        product_api: ProductApi) -> None:
    """GET /api/v1/calls/{uniqueid}/verdicts and /api/v1/compliance (board/routes.py)."""
    store = product_api.service.store
    assert store is not None
    zone = ZoneInfo(product_api.service.policy.calendar.timezone)
    at = datetime(2026, 3, 2, 10, 30, tzinfo=zone).timestamp()
    for key, outcome in (("hold:1", "fail"), ("hold:2", "pass")):
        verdict = Verdict("c9", "STD-040", Outcome(outcome), 34.0, 30.0, "s", "1001", "main",
                          at, "hold 34 s of 30", key)
        records.write(store, "verdict", verdict.as_record())
    sup = product_api.token("supervisor")
    body = product_api.request("GET", "/api/v1/calls/c9/verdicts", sup).json()
    assert [(v["rule"], v["key"], v["outcome"], v["detail"]) for v in body["verdicts"]] == [
        ("STD-040", "hold:1", "fail", "hold 34 s of 30"),
        ("STD-040", "hold:2", "pass", "hold 34 s of 30")]
    history = product_api.request("GET", "/api/v1/compliance?date_from=2026-03-02&by=agent",
                                  sup).json()
    assert history["rows"] == [{"rule": "STD-040", "by": "agent", "group": "1001",
                                "passed": 1, "failed": 1, "pct": 50.0}]
    assert product_api.request("GET", "/api/v1/compliance",
                               product_api.token("agent")).status_code == 403
    assert product_api.request("GET", "/api/v1/compliance?by=colour", sup).status_code == 400
    assert product_api.request(
        "GET", "/api/v1/compliance?date_from=2026-03-02&date_to=2026-01-01",
        sup).status_code == 400
