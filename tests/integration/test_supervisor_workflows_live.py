"""Supervisor workflows in headless Chromium on a real Asterisk with SIPp (issue 18).

The agent's desktop page and the supervisor's board page run side by side against the
real engine (desktop + board features); SIPp plays the agents' softphones, the caller
and the supervisor's own phone. Proves, through the pages:

* STD-106: an agent goes busy with an approval-required reason (away); the board lists
  it; the supervisor approves in the page -> no ``unapproved_absence`` alarm past
  ``agents.absence_flag_min``; a second absence refused in the page sends the agent
  back to ready (``agents.absence_refused_state``), the desktop told;
* STD-100: an agent in ACW asks for more time on the desktop; the supervisor grants it
  in the board page -> the agent stays in ACW past the original limit and leaves at the
  new one (``agents.acw_extension_s`` later) within 0.5 s;
* STD-066: "escalate" during a live SIPp call raises the board alarm with the call
  (call id, agent, masked caller, the agent's channel); "listen" from the alarm rings
  the supervisor's phone into ChanSpy on that channel; the call's end clears the alarm.

Screenshots go to test-artifacts/supervise/. Timings are printed (run with -s).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Page, expect
from product import Product, running_product

from callflow.api.passwords import hash_password
from callflow.board.feature import BoardFeature, BoardOptions
from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.settings import REPO_ROOT
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts" / "supervise"
PASSWORD = "sv-" + secrets.token_urlsafe(8)
ACW_LIMIT_S, EXTENSION_S = 6.0, 4.0
#: an unapproved absence is flagged after 3 s here (0.05 min), so "no alarm" means something
POLICY = parse_policy({"agents": {"acw_limit_s": ACW_LIMIT_S, "acw_extension_s": EXTENSION_S,
                                  "absence_flag_min": 0.05}})
CALLER = "13900000066"


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    board = BoardFeature(BoardOptions(flush_delay_s=0.1, tick_s=0.5, schedule_reports=False))
    with running_product(asterisk, asterisk_root, tmp_path, POLICY, ["1001"],
                         ServiceOptions(features=[AgentDesktop(), board])) as running:
        password = hash_password(PASSWORD)
        running.store.run(repo.set_user, "sup", "supervisor", password)
        running.store.run(repo.set_user, "1001", "agent", password, agent_id="1001")
        yield running


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pages(browser: Browser, product: Product) -> tuple[Page, Page]:
    """The agent's desktop (logged in at desk 1001, ready) and the supervisor's board."""
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    desk = browser.new_page(viewport={"width": 1000, "height": 1100})
    desk.goto(base + "/desktop")
    desk.fill("#login-form input[name=username]", "1001")
    desk.fill("#login-form input[name=password]", PASSWORD)
    desk.fill("#login-form input[name=extension]", "1001")
    desk.click("#login-form button[type=submit]")
    expect(desk.locator("#state")).to_have_attribute("data-state", "ready", timeout=10_000)
    board = browser.new_page(viewport={"width": 1400, "height": 1100})
    board.goto(base + "/board")
    board.fill("#login-form input[name=username]", "sup")
    board.fill("#login-form input[name=password]", PASSWORD)
    board.click("#login-form button[type=submit]")
    board.wait_for_selector("#link.up", timeout=10_000)
    return desk, board


def agent(product: Product) -> tuple[str, str, float, bool, str]:
    def read() -> tuple[str, str, float, bool, str]:
        a = product.runtime.agents["1001"]
        return a.state.value, a.reason, a.acw_deadline, a.approval_pending, a.acw_ask
    return product.call(read)


@pytest.mark.std("STD-106", "STD-100")
def test_absence_approval_and_acw_extension_from_the_pages(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    desk, board = pages(browser, product)

    # STD-106: busy(away) awaits approval; the board lists it; approved in the page
    desk.select_option("#busy-reason", "away")
    desk.click("#btn-busy")
    expect(desk.locator("#sv-approval")).to_have_attribute("data-status", "pending")
    item = board.locator("#sv-approvals li[data-agent='1001']")
    expect(item).to_contain_text("away")
    shot(board, "1-approval-pending")
    item.locator("button[data-action=approve_absence]").click()
    expect(item).to_have_count(0)
    expect(desk.locator("#sv-approval")).to_have_attribute("data-status", "approved")
    assert agent(product)[:2] == ("busy", "away") and not agent(product)[3]
    time.sleep(POLICY.agents.absence_flag_min * 60 + 1.5)  # past the flag: no alarm
    product.flush()
    kinds = [a.kind for a in product.store.read(repo.recent_alarms, limit=50)]
    assert "unapproved_absence" not in kinds
    expect(board.locator("#alarms li[data-kind=unapproved_absence]")).to_have_count(0)
    audited = product.store.read(repo.audit_entries, target="agent:1001")
    assert ("sup", "approve_absence") in [(e.actor, e.action) for e in audited]

    # a second absence refused in the page: back to ready (the Policy's default), told
    desk.click("#btn-ready")
    expect(desk.locator("#state")).to_have_attribute("data-state", "ready")
    desk.click("#btn-busy")
    item.locator("button[data-action=refuse_absence]").click()
    expect(desk.locator("#state")).to_have_attribute("data-state", "ready")
    expect(desk.locator("#sv-approval")).to_contain_text(re.compile("refused|未批准"))
    shot(desk, "2-absence-refused")

    # STD-100: a call, then ACW; the agent asks; the supervisor grants in the page
    caller = sipp.caller("100", "uac_call.xml", talk_ms=2000, caller_id=CALLER)
    expect(desk.locator("#state")).to_have_attribute("data-state", "acw", timeout=20_000)
    state, _, original, _, _ = agent(product)
    assert state == "acw"
    asked_at = product.call(lambda: product.runtime.clock.now())
    desk.fill("#sv-acw-reason", "customer form still open")
    desk.click("#btn-acw-extend")
    expect(desk.locator("#sv-acw-status")).to_have_attribute("data-status", "open")
    request = board.locator("#sv-acw li[data-agent='1001']")
    expect(request).to_contain_text("customer form still open")
    shot(board, "3-acw-request")
    request.locator("button[data-action=grant_acw]").click()
    expect(desk.locator("#sv-acw-status")).to_have_attribute("data-status", "granted")
    _, _, extended, _, ask = agent(product)
    assert ask == "granted" and extended == pytest.approx(original + EXTENSION_S)
    granted_after = product.call(lambda: product.runtime.clock.now()) - asked_at
    shot(desk, "4-acw-granted")

    # past the original limit: still in ACW; it ends at the new limit, within 0.5 s
    left_at = None
    while True:
        now, state = product.call(lambda: (product.runtime.clock.now(),
                                           product.runtime.agents["1001"].state.value))
        if original + 0.5 <= now < extended - 0.5:
            assert state == "acw", f"left ACW {now - original:.2f} s after the original limit"
        if state != "acw":
            left_at = now
            break
        assert now < extended + 2, "ACW never ended"
        time.sleep(0.05)
    assert state == "ready"
    assert abs(left_at - extended) <= 0.5, left_at - extended
    assert caller.wait(30) == 0, caller.diagnostics()
    audited = product.store.read(repo.audit_entries, target="agent:1001")
    assert ("sup", "grant_acw_extension") in [(e.actor, e.action) for e in audited]
    print(f"\nACW: asked -> granted in the page {granted_after:.2f} s; left ACW "
          f"{left_at - extended:+.3f} s from the extended limit "
          f"({left_at - original:.2f} s after the original one)")
    desk.close()
    board.close()


@pytest.mark.std("STD-066", "STD-146")
def test_escalate_raises_a_board_alarm_with_the_call_and_listen_works(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    agent_phone = sipp.softphone("1001", "uas_answer.xml", ring_ms=500, wait=False)
    sup_phone = sipp.softphone("1003", "uas_answer.xml", ring_ms=200, wait=False)
    sipp.wait_ready(agent_phone, sup_phone)
    desk, board = pages(browser, product)
    caller = sipp.caller("100", "uac_call.xml", talk_ms=15000, caller_id=CALLER)
    expect(desk.locator("#state")).to_have_attribute("data-state", "on_call", timeout=20_000)
    call_id = product.call(lambda: product.runtime.agents["1001"].call_id)
    time.sleep(1.0)  # the call has lasted a while when the agent escalates
    desk.fill("#sv-escalate-reason", "caller abusive, wants a manager")
    t0 = time.monotonic()
    desk.click("#btn-escalate")
    alarm = board.locator("#alarms li[data-kind=escalation]")
    expect(alarm).to_have_count(1)
    shown_s = time.monotonic() - t0
    expect(alarm).to_contain_text(call_id)
    expect(alarm).to_contain_text("139****0066")
    assert (alarm.get_attribute("data-channel") or "").startswith("PJSIP/agent1001-")
    assert alarm.get_attribute("data-call-id") == call_id
    shot(board, "5-escalation")

    # listen from the alarm: the supervisor's phone is rung into ChanSpy on the agent's leg
    board.fill("#my-phone", "agent1003")
    t1 = asterisk.tap.mark()
    alarm.locator("button[data-mode=listen]").click()
    spy = asterisk.tap.wait_event("ChanSpyStart", 15, since=t1)
    assert spy["SpyerChannel"].startswith("PJSIP/agent1003-")
    assert spy["SpyeeChannel"].startswith("PJSIP/agent1001-")
    expect(alarm.locator("button[data-mode=whisper]")).to_have_count(1)
    expect(alarm.locator("button[data-mode=barge]")).to_have_count(1)

    # the call ends: the escalation is cleared on the board and in the store
    assert caller.wait(60) == 0, caller.diagnostics()
    expect(alarm).to_have_count(0, timeout=10_000)
    product.flush()
    [row] = [a for a in product.store.read(repo.recent_alarms, limit=50)
             if a.kind == "escalation"]
    assert row.acknowledged_by == "system:call_ended" and row.std == "STD-066"
    assert row.detail["call_id"] == call_id and row.detail["caller"] == "139****0066"
    assert 0.5 <= row.detail["duration_s"] <= 10, row.detail
    print(f"\nescalation on the board {shown_s * 1000:.0f} ms after the click")
    desk.close()
    board.close()
