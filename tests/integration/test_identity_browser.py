"""The identity panel of the agent desktop in headless Chromium, on a real Asterisk.

A known customer without a PIN calls: the panel shows how to address them (surname and
title) and the personal fields as hidden; "reveal" is not offered before verification
(the server refuses it too, test_identity_live.py). The agent asks the questions and
clicks "verified by questions": the status changes, "reveal" shows the fields, and the
store holds the audited reveal with the agent's login.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deskpage import ready_desk
from playwright.sync_api import Browser, expect
from product import Product, make_roster, make_settings

from callflow.api.passwords import hash_password
from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.store import customers, repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

CALLER = "13811113333"
PASSWORD = "desk-" + secrets.token_urlsafe(8)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), parse_policy({}),
                      make_roster(["1001"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop()]))
    running.start()
    running.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    running.store.run(customers.save_customer, "admin", datetime.now(UTC), {
        "surname": "王", "title": "先生", "account": "6222-0001", "address": "杭州市 1 号",
        "id_tail": "4321"}, [CALLER], None)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.std("STD-077", "STD-078")
def test_identity_panel_hides_then_reveals_after_questions(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1000)
    page = ready_desk(browser, product, PASSWORD, height=1100)
    panel = page.locator("#identity-panel")
    expect(panel).to_be_hidden()

    caller = sipp.caller("100", "uac_call.xml", talk_ms=25000, caller_id=CALLER)
    expect(panel).to_be_visible(timeout=15_000)
    expect(page.locator("#identity-customer")).to_have_text("王先生")
    expect(page.locator("#identity-status")).to_have_text("unverified")
    fields = page.locator("#identity-fields")
    expect(fields).to_contain_text("(shown once verified)")
    expect(fields).not_to_contain_text("6222-0001")
    expect(page.locator("#identity-reveal")).to_be_hidden()
    expect(page.locator("#state")).to_have_attribute("data-state", "on_call", timeout=15_000)

    page.click("#identity-verify")
    expect(page.locator("#identity-status")).to_have_text("verified (questions)")
    expect(page.locator("#identity-verify")).to_be_hidden()
    page.click("#identity-reveal")
    expect(fields).to_contain_text("6222-0001")
    expect(fields).to_contain_text("杭州市 1 号")
    expect(page.locator("#identity-error")).to_have_text("")

    entries = product.store.read(repo.audit_entries, action="identity.reveal")
    assert [(e.actor, e.detail["fields"]) for e in entries] == [
        ("1001", ["account", "address", "id_tail"])]
    assert caller.wait(60) == 0, caller.diagnostics()
