"""The desktop's call actions in headless Chromium, on a real Asterisk with SIPp (issue 6).

While the agent is on a call, the page shows a "call actions" panel that calls the REST
endpoints of special_calls/routes.py on the current call with the page's session token:

* "I said goodbye" (``closing``, STD-111): confirmed on the page, recorded by the
  special-calls machine;
* a script (``special``, here wrong_number, STD-067): the system plays it and releases;
  the call is stored with outcome "wrong_number", released by the system, compliant;
* a refusal (one more nuisance warning while the wrong-number script runs) shows the
  server's reason in ``#error``;
* hold / retrieve (the system holds the caller with music) and "call back instead"
  (a callback task with the agent's note, STD-042).

The panel is hidden outside on_call / on_hold. Screenshots go to test-artifacts/desktop/.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Page, expect
from product import Product, make_roster, make_settings

from callflow.api.passwords import hash_password
from callflow.desktop.feature import AgentDesktop
from callflow.engine.calls import Phase
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
# a short release delay after the wrong-number script keeps the test short
POLICY = parse_policy({"special_calls": {"wrong_number_release_delay_s": 1}})
PASSWORD = "desk-" + secrets.token_urlsafe(8)


@pytest.fixture
def running(asterisk: PbxHandle, asterisk_root: Path,
            tmp_path: Path) -> Iterator[tuple[Product, SpecialCallsFeature]]:
    feature = SpecialCallsFeature()
    product = Product(make_settings(tmp_path, asterisk, asterisk_root), POLICY,
                      make_roster(["1001"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop(hold_reminders=False), feature]))
    product.start()
    product.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    try:
        yield product, feature
    finally:
        product.stop()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def logged_in_page(browser: Browser, product: Product) -> Page:
    page = browser.new_page(viewport={"width": 1000, "height": 1000})
    page.goto(f"http://127.0.0.1:{product.settings.ports.api}/desktop")
    page.fill("#login-form input[name=username]", "1001")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.fill("#login-form input[name=extension]", "1001")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#state")).to_have_attribute("data-state", "ready", timeout=10_000)
    expect(page.locator("#call-actions")).to_be_hidden()
    return page


def answered_call(page: Page, product: Product) -> str:
    """The agent's current call, once the page shows it answered (its uniqueid)."""
    expect(page.locator("#state")).to_have_attribute("data-state", "on_call", timeout=15_000)
    call_id: str = product.call(lambda: product.runtime.agents["1001"].call_id)
    assert call_id
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.CONNECTED, 5,
                     "the call to be connected")
    panel = page.locator("#call-actions")
    expect(panel).to_be_visible()
    expect(page.locator("#btn-hold")).to_be_visible()
    expect(page.locator("#btn-retrieve")).to_be_hidden()
    return call_id


def test_closing_script_and_a_refusal_from_the_call_actions_panel(
        asterisk: PbxHandle, sipp: SippControl,
        running: tuple[Product, SpecialCallsFeature], browser: Browser) -> None:
    product, feature = running
    caller_number = "13900000061"
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    page = logged_in_page(browser, product)
    caller = sipp.caller("100", "uac_wait_bye.xml", caller_id=caller_number, timeout_s=60)
    call_id = answered_call(page, product)
    result, error = page.locator("#call-action-result"), page.locator("#error")

    # "I said goodbye": 200, shown on the page, recorded by the call's machine (STD-111)
    page.click("#btn-closing")
    expect(result).to_contain_text("closing recorded")
    expect(error).to_have_text("")
    assert product.call(lambda: feature.specials[call_id].closing_at) is not None
    expect(page.locator("#reminders")).to_contain_text("Closing recorded")
    shot(page, "actions-1-closing")

    # the wrong-number script: the system plays it, then releases the caller (STD-067)
    page.select_option("#script", "wrong_number")
    page.click("#btn-script")
    expect(result).to_contain_text("wrong number script started")
    assert product.call(lambda: feature.specials[call_id].procedure) == "wrong_number"

    # refused while the script runs: the server's reason in #error, nothing changed
    page.click("#btn-nuisance-again")
    expect(error).to_have_text(re.compile(r"^(procedure_running|call_ending)\b"))
    assert product.call(lambda: feature.specials[call_id].warnings) == 0
    expect(page.locator("#btn-nuisance-again")).to_be_enabled()
    shot(page, "actions-2-refused")

    assert caller.wait(60) == 0, caller.diagnostics()  # Asterisk hung up on the caller
    expect(page.locator("#state")).to_have_attribute("data-state", "acw", timeout=10_000)
    expect(page.locator("#call-actions")).to_be_hidden()
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the call to end")
    product.flush()
    call = product.store.read(repo.get_call, call_id)
    assert call is not None
    assert (call.outcome, call.released_by, call.release_compliant, call.release_procedure) == (
        "wrong_number", "system", True, "wrong_number")
    assert call.closing_at is not None
    page.close()


def test_hold_retrieve_and_callback_from_the_call_actions_panel(
        asterisk: PbxHandle, sipp: SippControl,
        running: tuple[Product, SpecialCallsFeature], browser: Browser) -> None:
    product, _ = running
    caller_number = "13900000062"
    note = "call back after 5 pm, about the card"
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    page = logged_in_page(browser, product)
    caller = sipp.caller("100", "uac_wait_bye.xml", caller_id=caller_number, timeout_s=60)
    call_id = answered_call(page, product)
    state, result = page.locator("#state"), page.locator("#call-action-result")

    # hold: the system holds the caller (music); the page follows the agent's state
    page.click("#btn-hold")
    expect(state).to_have_attribute("data-state", "on_hold", timeout=10_000)
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#btn-retrieve")).to_be_visible()
    expect(page.locator("#btn-hold")).to_be_hidden()
    expect(page.locator("#call-actions")).to_be_visible()
    shot(page, "actions-3-on-hold")

    page.click("#btn-retrieve")
    expect(state).to_have_attribute("data-state", "on_call", timeout=10_000)
    expect(page.locator("#btn-hold")).to_be_visible()
    expect(page.locator("#btn-retrieve")).to_be_hidden()

    # call back instead (STD-042): a task for this caller, with the agent's note
    page.fill("#callback-note", note)
    page.click("#btn-callback")
    expect(result).to_contain_text("callback task created")
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#callback-note")).to_have_value("")
    tasks = product.store.read(repo.list_open_tasks, number=caller_number)
    assert [t.note for t in tasks] == [note], [(t.kind, t.note) for t in tasks]
    shot(page, "actions-4-callback")

    channel = product.call(lambda: product.runtime.calls[call_id].channel)
    asterisk.tap.action(Action="Hangup", Channel=channel)
    assert caller.wait(30) == 0, caller.diagnostics()
    expect(state).to_have_attribute("data-state", "acw", timeout=10_000)
    expect(page.locator("#call-actions")).to_be_hidden()
    page.close()
