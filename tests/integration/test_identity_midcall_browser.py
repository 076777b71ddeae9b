"""The desktop's "ask for the PIN" button in headless Chromium, on a real Asterisk
(issue 18, STD-077).

A known customer with a PIN calls; the centre does not ask for it before routing. Once
the agent is talking, the identity panel offers "Ask the caller for their PIN"; the agent
clicks it, the panel says the caller is keying it (the agent hears hold music), the
caller keys the right PIN by RFC 4733 and the panel shows "verified (PIN)"; the button is
gone and "reveal" shows the fields. The caller is back with the same agent until their
BYE (one call, one answered offer).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deskpage import ready_desk
from playwright.sync_api import Browser, expect
from product import Product, make_roster, make_settings
from test_identity_live import pin_caller

from callflow.api.passwords import hash_password
from callflow.desktop.feature import AgentDesktop
from callflow.engine import identity
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.store import customers, repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

CALLER = "13811114444"
PIN = "640528"
PASSWORD = "desk-" + secrets.token_urlsafe(8)
POLICY = {"identity": {"pin_in_ivr": False, "pin_digit_timeout_ms": 3000},
          "greetings": {"opening_template": "您好"}}


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    policy = parse_policy(POLICY)
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), policy,
                      make_roster(["1001"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop()]))
    running.start()
    running.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    running.store.run(customers.save_customer, "admin", datetime.now(UTC), {
        "surname": "王", "title": "先生", "account": "6222-0002", "address": "杭州市 2 号",
        "id_tail": "8765"}, [CALLER], identity.hash_pin(PIN, policy))
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.std("STD-077")
def test_the_agent_clicks_ask_for_the_pin_and_the_panel_shows_verified(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser,
        tmp_path: Path) -> None:
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    page = ready_desk(browser, product, PASSWORD, height=1100)

    # the caller keys the PIN 9 s after the answer: the agent clicks well before
    script = pin_caller(tmp_path / "sipp-caller", [(9.0, PIN + "#")], bye_at=24)
    t0 = asterisk.tap.mark()
    caller = sipp.caller("100", str(script), caller_id=CALLER, timeout_s=60)
    expect(page.locator("#state")).to_have_attribute("data-state", "on_call", timeout=15_000)
    ask = page.locator("#identity-ask-pin")
    expect(ask).to_be_visible(timeout=5_000)
    # the ask is taken once caller and agent are bridged (after the opening; before,
    # it is refused: the feature code would be lost in the announcement)
    asterisk.tap.wait_event("BridgeEnter", 10, since=t0)
    time.sleep(0.3)
    expect(ask).to_have_text("Ask the caller for their PIN")
    expect(page.locator("#identity-reveal")).to_be_hidden()
    ask.click()
    expect(page.locator("#identity-asking")).to_be_visible(timeout=5_000)
    expect(page.locator("#identity-status")).to_have_text("verified (PIN)", timeout=20_000)
    expect(page.locator("#identity-asking")).to_be_hidden()
    expect(ask).to_be_hidden()
    expect(page.locator("#identity-error")).to_have_text("")
    page.click("#identity-reveal")
    expect(page.locator("#identity-fields")).to_contain_text("6222-0002")
    # the caller is back with the same agent: still on the call until their BYE
    expect(page.locator("#state")).to_have_attribute("data-state", "on_call")
    assert caller.wait(60) == 0, caller.diagnostics()
    expect(page.locator("#state")).not_to_have_attribute("data-state", "on_call",
                                                         timeout=10_000)
    product.flush()
    audit = product.store.read(repo.audit_entries, action="identity.pin_midcall")
    assert [(a.actor, a.detail["status"]) for a in audit] == [("1001", "verified:pin")]
    calls = product.call(lambda: [c for c in product.runtime.calls.values()
                                  if c.caller == CALLER])
    assert len(calls) == 1 and calls[0].agent_id == "1001"
    assert [o.agent_id for o in calls[0].offers] == ["1001"]
