"""The agent desktop page in headless Chromium (Playwright), on a real Asterisk with SIPp.

An agent logs in with work number, password and the extension they sit at; changes
state with the buttons and reasons of the Policy; a SIPp caller who called before
rings them: the page shows the caller, the earlier contact and the opening; the
softphone answers, holds (the hold timer ticks, the reminders come), takes the
caller back; the caller hangs up: the after-call-work countdown ticks and the agent
ends it with the button. A refused request shows the server's reason. Screenshots
go to test-artifacts/desktop/.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Page, expect
from product import Product, make_roster, make_settings

from callflow.api.passwords import hash_password
from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.settings import REPO_ROOT
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts" / "desktop"
POLICY = parse_policy({"agents": {"acw_limit_s": 20},
                       "hold": {"reminder_s": 0.5, "reminder_repeat_s": 0, "limit_s": 1.2}})
CALLER = "13811112222"
PASSWORD = "desk-" + secrets.token_urlsafe(8)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), POLICY,
                      make_roster(["1001", "1002"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop()]))
    running.start()
    running.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    # the caller called three days ago (STD-073: the desktop shows the earlier contact)
    earlier = datetime.now(UTC) - timedelta(days=3)
    running.store.run(repo.upsert_call, "1700000000.1", direction="inbound",
                      caller_number=CALLER, entered_at=earlier, outcome="answered",
                      agent_id="1002")
    try:
        yield running
    finally:
        running.stop()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def seconds(text: str) -> int:
    """"1:05" -> 65 (the page's m:ss)."""
    minutes, secs = re.search(r"(\d+):(\d\d)", text).groups()  # type: ignore[union-attr]
    return int(minutes) * 60 + int(secs)


@pytest.mark.std("STD-003", "STD-004", "STD-014", "STD-073", "STD-097")
def test_agent_desktop_page_through_a_whole_call(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    sipp.softphone("1001", "uas_answer_hold.xml", ring_ms=2000)
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(base + "/desktop")
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#login-form input[name=username]", "1001")
    page.fill("#login-form input[name=password]", "wrong-password")
    page.fill("#login-form input[name=extension]", "1001")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("wrong username or password")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    state = page.locator("#state")
    expect(state).to_have_attribute("data-state", "ready", timeout=10_000)
    expect(page.locator("#login-view")).to_be_hidden()
    expect(state).to_have_text("Ready")  # the Policy's label (C-3) in the page's language
    expect(page.locator("#softphone")).to_have_text("softphone ok")
    expect(page.locator("#link")).to_have_text("online")
    shot(page, "1-ready")

    # state buttons with the Policy's reasons
    page.select_option("#not-ready-reason", "training")
    page.click("#btn-not-ready")
    expect(state).to_have_attribute("data-state", "not_ready")
    expect(page.locator("#reason")).to_have_text("Training")
    page.select_option("#busy-reason", "meal")
    page.click("#btn-busy")
    expect(state).to_have_attribute("data-state", "busy")
    expect(page.locator("#reason")).to_have_text("Meal")
    assert product.call(lambda: product.runtime.agents["1001"].reason) == "meal"
    page.click("#btn-busy")  # again: refused by the state machine, the reason shown
    expect(page.locator("#error")).to_contain_text("no_change")
    page.click("#btn-ready")
    expect(state).to_have_attribute("data-state", "ready")
    expect(page.locator("#error")).to_have_text("")

    # the caller rings: who, the earlier contact, what the caller hears
    t0 = asterisk.tap.mark()
    caller = sipp.caller("100", "uac_call.xml", talk_ms=16000, caller_id=CALLER)
    expect(state).to_have_attribute("data-state", "ringing", timeout=10_000)
    expect(page.locator("#call-card")).to_be_visible()
    expect(page.locator("#call-caller")).to_have_text(CALLER)
    expect(page.locator("#call-history li")).to_have_count(1)
    expect(page.locator("#call-history")).to_contain_text("agent 1002")
    greeting = page.locator("#call-greeting")
    expect(greeting).to_have_attribute("data-kind", "normal")
    expect(greeting).to_contain_text("1001号为您服务")  # STD-014: the agent's number
    for button in ("#btn-ready", "#btn-busy", "#btn-not-ready", "#btn-logout"):
        expect(page.locator(button)).to_be_disabled()
    shot(page, "2-ringing")

    # answered, then held by the softphone: the hold timer ticks, reminders arrive
    expect(state).to_have_attribute("data-state", "on_call", timeout=10_000)
    expect(state).to_have_attribute("data-state", "on_hold", timeout=10_000)
    timer = page.locator("#timer")
    expect(timer).to_contain_text("on hold")
    expect(page.locator("#reminders li")).to_have_count(2, timeout=5_000)
    expect(page.locator("#reminders")).to_contain_text("update the caller")
    expect(page.locator("#reminders li.limit")).to_contain_text("STD-040")
    expect(timer).to_have_class(re.compile(r"\bdue\b"))
    shot(page, "3-on-hold")
    expect(state).to_have_attribute("data-state", "on_call", timeout=10_000)
    hold = asterisk.tap.wait_event("Hold", 5, t0)
    assert hold["Channel"].startswith("PJSIP/agent1001-")

    # the caller hangs up: after-call work counts down; the agent ends it
    assert caller.wait(60) == 0, caller.diagnostics()
    expect(state).to_have_attribute("data-state", "acw", timeout=10_000)
    expect(timer).to_contain_text("after-call work ends in")
    first = seconds(timer.inner_text())
    # ticking on the page, no server push: two seconds down within a generous window
    # (a loaded CI machine may run the page's 1 s interval late, never not at all)
    later = first
    deadline = time.monotonic() + 8
    while first - later < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        later = seconds(timer.inner_text())
    assert first - later >= 2, (first, later)
    assert later <= POLICY.agents.acw_limit_s
    expect(page.locator("#call-title")).to_contain_text("after-call work")
    shot(page, "4-acw")
    page.click("#btn-end-acw")
    expect(state).to_have_attribute("data-state", "ready")
    expect(page.locator("#call-card")).to_be_hidden()
    agent = product.call(lambda: product.runtime.agents["1001"])
    assert agent.state.value == "ready" and agent.calls_handled == 1

    # log out from the page
    page.click("#btn-logout")
    expect(page.locator("#login-form")).to_be_visible()
    product.wait_for(lambda: product.runtime.agents["1001"].state.value == "logged_out", 5,
                     "the agent to be logged out")
    page.close()
