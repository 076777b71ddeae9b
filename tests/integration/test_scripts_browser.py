"""The desktop's script panel in headless Chromium, on a real Asterisk with SIPp (issue 18).

One real call to agent 1001, whose SIPp softphone rings 4 s before answering:

* while the phone rings the panel opens the greeting phrases, among them the reply when
  the caller greets first (STD-019), verbatim from the seed (004:268-269);
* on the call it opens "who is calling" with the surname question (STD-020); the agent
  types the surname 王 and picks 先生: the server fills 「王先生」 into the scripts, the
  default closing reads 「谢谢您的来电,王先生,再见!」 (STD-034, 003:65) and the surname
  question is no longer offered; a bad surname is refused with one error and the
  address stays;
* the agent puts the caller on hold from the desktop: the panel opens the hold phrases
  (「请稍等」, STD-030); back on the call and after it (ACW) the closing phrases.

Screenshots go to test-artifacts/desktop/.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
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
from callflow.special_calls.feature import SpecialCallsFeature
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts" / "desktop"
PASSWORD = "desk-" + secrets.token_urlsafe(8)
RING_MS = 4000  # long enough to see the ringing panel, under the 3-ring limit (15 s)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root),
                      parse_policy({"greetings": {"language": "zh"}}),
                      make_roster(["1001"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop(hold_reminders=False),
                                               SpecialCallsFeature()]))
    running.start()
    running.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    try:
        yield running
    finally:
        running.stop()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.std("STD-019", "STD-020", "STD-030", "STD-034")
def test_the_panel_follows_the_call_and_fills_the_surname(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    sipp.softphone("1001", "uas_answer.xml", ring_ms=RING_MS)
    page = browser.new_page(viewport={"width": 1000, "height": 1400})
    page.goto(f"http://127.0.0.1:{product.settings.ports.api}/desktop")
    page.fill("#login-form input[name=username]", "1001")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.fill("#login-form input[name=extension]", "1001")
    page.click("#login-form button[type=submit]")
    state, scripts = page.locator("#state"), page.locator("#scripts-list")
    expect(state).to_have_attribute("data-state", "ready", timeout=10_000)
    expect(page.locator("#scripts-panel")).to_be_visible()

    caller = sipp.caller("100", "uac_wait_bye.xml", caller_id="13900000081", timeout_s=60)

    # ringing: the greeting phrases, the reply to a caller who greets first (STD-019)
    expect(state).to_have_attribute("data-state", "ringing", timeout=15_000)
    expect(scripts).to_have_attribute("data-phase", "greeting")
    expect(scripts.locator("li[data-id=reply_caller_greeting] .script-text")).to_have_text(
        "您好,請問有什么可以幫助您?")
    shot(page, "scripts-1-ringing")

    # on the call: who is calling, with the surname question while it is unknown
    expect(state).to_have_attribute("data-state", "on_call", timeout=15_000)
    expect(scripts).to_have_attribute("data-phase", "verification")
    expect(scripts.locator("li[data-id=ask_surname]")).to_have_count(1)

    # the surname field drives the address form in every script (STD-020, STD-034)
    page.fill("#scripts-surname", "王")
    page.select_option("#scripts-salutation", "mr")
    expect(page.locator("#scripts-address")).to_contain_text("王先生")
    expect(scripts.locator("li[data-id=ask_surname]")).to_have_count(0)
    page.click("#scripts-phases button[data-phase=closing]")
    closing = scripts.locator("li[data-id=closing_default]")
    expect(closing.locator(".script-text")).to_have_text("谢谢您的来电,王先生,再见!")
    closing.click()  # copy + mark used
    expect(closing).to_have_class("script-item used")
    expect(page.locator("#scripts-copied")).to_contain_text("王先生")
    shot(page, "scripts-2-closing-with-surname")

    # a bad surname: one clear error, the address the panel had stays
    page.fill("#scripts-surname", "王<b>")
    expect(page.locator("#error")).to_contain_text("bad_frame", timeout=5_000)
    expect(page.locator("#scripts-address")).to_contain_text("王先生")
    page.fill("#scripts-surname", "王")

    # on hold (from the desktop): the hold phrases open by themselves
    page.click("#btn-hold")
    expect(state).to_have_attribute("data-state", "on_hold", timeout=10_000)
    expect(scripts).to_have_attribute("data-phase", "hold")
    expect(scripts.locator("li[data-id=wait_short] .script-text")).to_have_text("请稍等")
    expect(scripts.locator("li[data-id=back_named] .script-text")).to_have_text(
        "对不起,王先生,让您久等了。")
    shot(page, "scripts-3-on-hold")
    page.click("#btn-retrieve")
    expect(state).to_have_attribute("data-state", "on_call", timeout=10_000)
    expect(scripts).to_have_attribute("data-phase", "verification")

    # the call ends: after-call work offers the closing phrases, still with the address
    call_id = product.call(lambda: product.runtime.agents["1001"].call_id)
    channel = product.call(lambda: product.runtime.calls[call_id].channel)
    asterisk.tap.action(Action="Hangup", Channel=channel)
    assert caller.wait(30) == 0, caller.diagnostics()
    expect(state).to_have_attribute("data-state", "acw", timeout=10_000)
    expect(scripts).to_have_attribute("data-phase", "closing")
    expect(scripts.locator("li[data-id=closing_default] .script-text")).to_have_text(
        "谢谢您的来电,王先生,再见!")

    # another panel (a customer record) may fill the caller in the same way
    page.evaluate("window.callflowScripts.setCaller({surname: '李', title: 'ms'})")
    expect(scripts.locator("li[data-id=closing_default] .script-text")).to_have_text(
        "谢谢您的来电,李女士,再见!")
    page.close()
