"""A customer's class changed on the board's form (STD-123), in headless Chromium against
the real service (no Asterisk: tickets need none).

A supervisor finds the customer by the number they call from, moves them from
``standard`` to ``vip`` and saves; the next ticket from that number runs the vip row of
the deadline table (a 1 h answer instead of 2 h) while the ticket logged before keeps its
class and its clock. The change is in the audit log (who, old, new). A shift lead's board
has no such form (the API refuses them). Names from the server are shown as text.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from portblock import port_base
from product import Product, make_roster

from callflow.api.passwords import hash_password
from callflow.board.feature import BoardFeature
from callflow.engine.policy import Policy
from callflow.service import ServiceOptions
from callflow.settings import REPO_ROOT, Ports, Settings
from callflow.store import customers, repo
from callflow.tickets.feature import TicketsFeature

pytestmark = pytest.mark.browser
PASSWORD = "class-" + secrets.token_urlsafe(8)
NUMBER = "13900000088"
SURNAME = "<b>Wu</b>"
STANDARD_H, VIP_H = 2, 1
ARTIFACTS = REPO_ROOT / "test-artifacts" / "customers"


@pytest.fixture
def product(tmp_path: Path) -> Iterator[Product]:
    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                        asterisk_root=Path(os.environ.get("ASTERISK_ROOT", "/nonexistent")),
                        policy_file=None, ports=Ports.from_base(port_base()),
                        api_token=secrets.token_urlsafe(16))
    policy = Policy.model_validate({"greetings": {"agent_identity": "none"}, "tickets": {
        "complaint_simple_answer_h": STANDARD_H,
        "deadlines_by_class": {"standard": {}, "vip": {"complaint_simple_answer_h": VIP_H}}}})
    running = Product(settings, policy, make_roster(["1001"], lambda a: 5999),
                      ServiceOptions(features=[BoardFeature(), TicketsFeature()]))
    running.run(running.service.start(), 120)
    password = hash_password(PASSWORD)
    running.store.run(repo.set_user, "sup", "supervisor", password)
    running.store.run(repo.set_user, "lead", "shift_lead", password, team="red")
    try:
        yield running
    finally:
        running.stop(check_invariants=False)


def token(base: str, user: str) -> str:
    reply = httpx.post(base + "/api/v1/session", json={"username": user, "password": PASSWORD})
    reply.raise_for_status()
    return str(reply.json()["token"])


def new_ticket(base: str, bearer: str) -> dict[str, Any]:
    made = httpx.post(base + "/api/v1/tickets", headers={"Authorization": f"Bearer {bearer}"},
                      json={"type": "complaint_simple", "description": "bill",
                            "caller_number": NUMBER})
    assert made.status_code == 201, made.text
    ticket: dict[str, Any] = made.json()["ticket"]
    return ticket


def answer_h(ticket: dict[str, Any]) -> float:
    [answer] = [c for c in ticket["clocks"] if c["name"] == "answer"]
    due = datetime.fromisoformat(answer["due_at"]) - datetime.fromisoformat(ticket["opened_at"])
    return due / timedelta(hours=1)


def log_in(page: Page, base: str, user: str) -> None:
    page.goto(base + "/board")
    page.fill("#login-form input[name=username]", user)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#board-view", state="visible", timeout=20_000)


@pytest.mark.std("STD-123")
def test_the_class_changed_on_the_board_sets_the_next_tickets_deadline(
        product: Product, browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    made = product.store.run(customers.save_customer, "setup", datetime.now().astimezone(),
                             {"surname": SURNAME, "title": "Ms"}, [NUMBER], None)
    sup = token(base, "sup")
    before = new_ticket(base, sup)
    assert (before["customer_class"], answer_h(before)) == ("standard", STANDARD_H)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in(page, base, "sup")
    expect(page.locator("#customers-panel")).to_be_visible(timeout=20_000)
    # an unknown number: the form says so
    page.fill("#customers-find input[name=number]", "555000")
    page.click("#customers-find button[type=submit]")
    expect(page.locator("#customers-status")).to_contain_text("555000")
    expect(page.locator("#customers-class")).to_be_hidden()
    # the customer: found by number, class shown, moved to vip and saved
    page.fill("#customers-find input[name=number]", NUMBER)
    page.click("#customers-find button[type=submit]")
    expect(page.locator("#customers-class")).to_be_visible(timeout=10_000)
    expect(page.locator("#customers-who")).to_contain_text(SURNAME)  # as text
    assert page.locator("#customers-panel b").count() == 0
    select = page.locator("#customers-class select[name=customer_class]")
    expect(select).to_have_value("standard")
    assert select.locator("option").all_inner_texts() == ["standard", "vip"]
    select.select_option("vip")
    page.click("#customers-class button[type=submit]")
    expect(page.locator("#customers-status")).to_contain_text("vip", timeout=10_000)
    expect(page.locator("#customers-status")).to_contain_text("standard")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#customers-panel").screenshot(path=str(ARTIFACTS / "class-saved.png"))

    # the next ticket follows the new class; the one logged before keeps its clock
    after = new_ticket(base, sup)
    assert (after["customer_class"], answer_h(after)) == ("vip", VIP_H)
    kept = httpx.get(f"{base}/api/v1/tickets/{before['id']}",
                     headers={"Authorization": f"Bearer {sup}"}).json()["ticket"]
    assert (kept["customer_class"], kept["clocks"]) == ("standard", before["clocks"])
    [entry] = product.store.read(repo.audit_entries, target=f"customer:{made['customer_id']}",
                                 action="customer.class")
    assert (entry.actor, entry.detail) == ("sup", {"old": "standard", "new": "vip"})
    page.close()

    # a shift lead's board: the tickets are there, the class form is not
    lead = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in(lead, base, "lead")
    expect(lead.locator("#tickets-panel")).to_be_visible(timeout=20_000)
    lead.wait_for_load_state("networkidle")
    expect(lead.locator("#customers-panel")).to_be_hidden()
    lead.close()
