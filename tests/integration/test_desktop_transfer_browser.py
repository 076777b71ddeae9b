"""The desktop's transfer panel and case view in headless Chromium, on real Asterisk +
SIPp (issue 18, STD-049).

Agent 1001 talks to a SIPp caller; the page shows the transfer panel (hidden when not
talking). A transfer to an agent who does not exist is refused on the page, the call
stays; then a blind transfer to 1002 with a note: 1001's page says where the caller
went, 1002's page (another browser page, logged in as 1002) shows the case with the
note when the call rings there, and 1002 ends up on the call. Screenshots go to
test-artifacts/desktop/.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deskpage import ready_desk
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
POLICY = parse_policy({"greetings": {"opening_template": "您好"}})
PASSWORD = "desk-" + secrets.token_urlsafe(8)
NOTE = "customer moved house; address checked"


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), POLICY,
                      make_roster(["1001", "1002"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop()]))
    running.start()
    for agent in ("1001", "1002"):
        running.store.run(repo.set_user, agent, "agent", hash_password(PASSWORD),
                          agent_id=agent)
    try:
        yield running
    finally:
        running.stop()


def desk_page(browser: Browser, product: Product, agent: str) -> Page:
    page = ready_desk(browser, product, PASSWORD, agent=agent, height=1400)
    expect(page.locator("#transfer-panel")).to_be_hidden()
    return page


@pytest.mark.std("STD-049")
def test_transfer_panel_refuses_then_sends_the_caller_with_the_case(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    phones = [sipp.softphone(agent, "uas_answer.xml", 500, wait=False)
              for agent in ("1001", "1002")]
    sipp.wait_ready(*phones)
    a = desk_page(browser, product, "1001")
    b = desk_page(browser, product, "1002")
    caller = sipp.caller("100", "uac_call.xml", talk_ms=19000)
    expect(a.locator("#state")).to_have_attribute("data-state", "on_call", timeout=15_000)
    expect(a.locator("#transfer-panel")).to_be_visible()
    # a target that does not exist: refused on the page, the call stays
    a.select_option("#transfer-kind", "agent")
    a.fill("#transfer-value", "1999")
    a.click("#btn-transfer-blind")
    expect(a.locator("#transfer-status")).to_contain_text("no such target")
    expect(a.locator("#state")).to_have_attribute("data-state", "on_call")
    # to 1002, with the note
    a.fill("#transfer-value", "1002")
    a.fill("#transfer-note", NOTE)
    a.click("#btn-transfer-blind")
    expect(a.locator("#transfer-status")).to_contain_text("1002")
    expect(a.locator("#state")).to_have_attribute("data-state", "acw", timeout=5_000)
    expect(b.locator("#case-panel")).to_be_visible(timeout=20_000)
    expect(b.locator("#case-note")).to_have_text(NOTE)
    expect(b.locator("#case-from")).to_have_text("1001")
    expect(b.locator("#case-identity")).to_have_text("unverified")
    expect(b.locator("#state")).to_have_attribute("data-state", "on_call", timeout=20_000)
    expect(b.locator("#transfer-panel")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    b.screenshot(path=str(ARTIFACTS / "transfer-case.png"), full_page=True)
    assert caller.wait(40) == 0, caller.diagnostics()
    a.close()
    b.close()
