"""The wrap-up form on the agent desktop page, in headless Chromium, on a real Asterisk
with SIPp (STD-092): after the call the form appears, ready and 'end after-call work'
are refused until it is submitted, the disposition comes from the Policy, and the form
is stored with the call. Screenshots go to test-artifacts/desktop/."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deskpage import ready_desk
from playwright.sync_api import Browser, expect
from product import Product, make_roster, make_settings
from test_desktop_browser import shot

from callflow.api.passwords import hash_password
from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.store import campaigns as campaign_store
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

#: Inbound calls owe the form here and hold the agent for it (the outbound rule), so one
#: SIPp caller shows the page's gate.
POLICY = parse_policy({"agents": {"acw_limit_s": 30},
                       "outbound": {"wrapup_inbound": True,
                                    "wrapup_missing_inbound": "hold"}})
PASSWORD = "desk-" + secrets.token_urlsafe(8)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), POLICY,
                      make_roster(["1001"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop()]))
    running.start()
    running.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.std("STD-092")
def test_the_wrap_up_form_gates_ready_on_the_page(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1000)
    page = ready_desk(browser, product, PASSWORD)
    state = page.locator("#state")
    expect(page.locator("#wrapup-card")).to_be_hidden()

    caller = sipp.caller("100", "uac_call.xml", talk_ms=3000)
    expect(state).to_have_attribute("data-state", "on_call", timeout=15_000)
    assert caller.wait(60) == 0, caller.diagnostics()
    expect(state).to_have_attribute("data-state", "acw", timeout=10_000)
    card = page.locator("#wrapup-card")
    expect(card).to_be_visible()
    expect(page.locator("#btn-ready")).to_be_disabled()
    options = page.locator("#wrapup-disposition option")
    expect(options).to_have_count(len(POLICY.outbound.dispositions))
    expect(options.first).to_have_text(POLICY.outbound.dispositions[0].label_en)
    call_id = product.call(lambda: product.runtime.agents["1001"].wrapup_call)
    expect(page.locator("#wrapup-call")).to_contain_text(call_id)
    page.click("#btn-end-acw")  # refused by the state machine, the reason shown
    expect(page.locator("#error")).to_contain_text("wrapup_required")
    assert product.call(lambda: product.runtime.agents["1001"].state.value) == "acw"
    shot(page, "5-wrapup-form")

    page.select_option("#wrapup-disposition", "follow_up")
    page.fill("#wrapup-notes", "line noisy since Monday; wants a technician visit")
    page.click("#btn-wrapup")
    expect(card).to_be_hidden()
    expect(state).to_have_attribute("data-state", "acw")  # before the limit: still ACW
    expect(page.locator("#btn-ready")).to_be_enabled()
    page.click("#btn-end-acw")
    expect(state).to_have_attribute("data-state", "ready")
    shot(page, "6-wrapup-done")
    product.flush()
    [form] = product.store.read(campaign_store.wrapups_for_call, call_id)
    assert (form.disposition, form.agent_id, form.task_id) == ("follow_up", "1001", None)
    assert form.notes.startswith("line noisy")
    page.close()
