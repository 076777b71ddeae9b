"""The board's ticket backlog in headless Chromium, against the real service (no Asterisk:
tickets need none). A simple complaint whose answer clock runs out shows as overdue on the
board, and a description holding HTML is shown as the text it is (nothing runs)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser
from portblock import port_base
from product import Product, make_roster

from callflow.api.passwords import hash_password
from callflow.board.feature import BoardFeature
from callflow.engine.policy import Policy
from callflow.service import ServiceOptions
from callflow.settings import Ports, Settings
from callflow.store import repo
from callflow.tickets.feature import TicketsFeature

pytestmark = pytest.mark.browser
PASSWORD = "tickets-board-pw"
HOSTILE = '<img src=x onerror="window.__pwned=1">late bill'


@pytest.fixture
def product(tmp_path: Path) -> Iterator[Product]:
    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                        asterisk_root=Path(os.environ.get("ASTERISK_ROOT", "/nonexistent")),
                        policy_file=None, ports=Ports.from_base(port_base()),
                        api_token=secrets.token_urlsafe(16))
    policy = Policy.model_validate({"greetings": {"agent_identity": "none"},
                                    "tickets": {"complaint_simple_answer_h": 0.0005,
                                                "check_interval_s": 0.5}})
    running = Product(settings, policy, make_roster(["1001"], lambda a: 5999),
                      ServiceOptions(features=[BoardFeature(), TicketsFeature()]))
    running.run(running.service.start(), 120)
    running.store.run(repo.set_user, "sup", "supervisor", hash_password(PASSWORD))
    try:
        yield running
    finally:
        running.stop(check_invariants=False)


@pytest.mark.std("STD-123")
def test_backlog_shows_overdue_complaint_and_html_as_text(product: Product,
                                                          browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    token = httpx.post(base + "/api/v1/session",
                       json={"username": "sup", "password": PASSWORD}).json()["token"]
    made = httpx.post(base + "/api/v1/tickets", headers={"Authorization": f"Bearer {token}"},
                      json={"type": "complaint_simple", "description": HOSTILE,
                            "owner_kind": "team", "owner_id": "red"})
    assert made.status_code == 201, made.text
    number = made.json()["ticket"]["number"]
    t0 = time.monotonic()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(base + "/board")
    page.fill("#login-form input[name=username]", "sup")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#tickets-panel", state="visible", timeout=20_000)
    # the 1.8 s answer clock runs out: the row turns overdue (the panel refreshes itself)
    page.wait_for_function("() => { window.callflowTickets.refresh(); "
                           "return !!document.querySelector('#tickets-list .row.overdue'); }",
                           polling=500, timeout=30_000)
    print(f"\noverdue on the board {time.monotonic() - t0:.1f} s after the ticket")
    row = page.locator("#tickets-list .row.overdue")
    assert number in row.inner_text()
    assert row.locator(".summary").inner_text() == HOSTILE[:80]
    assert page.locator("#tickets-list img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert "1" in page.inner_text("#tickets-overdue")
    page.close()
    # the board's KPI report carries the tickets' figures (issue 19)
    figures = httpx.get(base + "/api/v1/kpi", headers={"Authorization": f"Bearer {token}"})
    assert figures.status_code == 200, figures.text
    tickets = figures.json()["tickets"]
    assert (tickets["logged"], tickets["complaints"], tickets["reply_rate_pct"],
            tickets["timeliness_pct"]) == (1, 1, 0.0, 0.0)
