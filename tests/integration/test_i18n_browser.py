"""One language per page, chosen per user (issue 18), in headless Chromium on a real engine
and Asterisk.

The deployment's default is English; the agent 1001 chose Chinese and the supervisor
too. The agent logs in on a fresh browser: the page reloads in Chinese (the login's
language) and sits at its extension; a SIPp caller rings it and the call card, the
call actions and the states are all Chinese. The agent switches to English with the
page's switch: the choice is stored on the server (the next login gets it) and every
visible label is English, no Chinese character left but the opening the caller hears
(a script, data). The supervisor's board is all Chinese with the clock's zone shown;
the recordings page follows the same user's language. Screenshots: test-artifacts/i18n/.
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
from callflow.board.feature import BoardFeature, BoardOptions
from callflow.desktop.feature import AgentDesktop
from callflow.engine.policy import parse_policy
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.settings import REPO_ROOT
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts" / "i18n"
POLICY = parse_policy({"calendar": {"timezone": "Asia/Shanghai"}})
PASSWORD = "i18n-" + secrets.token_urlsafe(8)
CALLER = "13911113333"
HAN = re.compile(r"[\u3400-\u9fff]")
#: English words that are data on a Chinese page: the roster's names, the queue, product and
#: zone names, rule numbers
DATA_WORDS = re.compile(r"Agent \d+|callflow|Asia/Shanghai|\bmain\b|sup\b|STD-\d+|C-\d+|DEMO.*")

# every visible text of the page, one entry per element that holds text itself
VISIBLE_TEXTS = """(skip) => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement, text = n.textContent.trim();
    if (!text || !el || el.closest(skip)) continue;
    if (el.closest("[hidden]") || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.display === "none") continue;
    out.push(text);
  }
  for (const sel of document.querySelectorAll("select")) {
    if (sel.closest(skip) || sel.closest("[hidden]") || !sel.getClientRects().length) continue;
    for (const o of sel.options) out.push(o.textContent.trim());
  }
  return out;
}"""


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    settings = make_settings(tmp_path, asterisk, asterisk_root)
    assert settings.ui_language == "en"  # the deployment's default: English
    board = BoardFeature(BoardOptions(flush_delay_s=0.1, tick_s=0.5, schedule_reports=False))
    running = Product(settings, POLICY, make_roster(["1001", "1002"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop(), board,
                                               RecordingsFeature(purge=False)]))
    running.start()
    hashed = hash_password(PASSWORD)
    running.store.run(repo.set_user, "1001", "agent", hashed, agent_id="1001")
    running.store.run(repo.set_user, "sup", "supervisor", hashed)
    for user in ("1001", "sup"):  # both chose Chinese earlier
        assert running.store.run(repo.set_language, user, "zh-CN")
    try:
        yield running
    finally:
        running.stop()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


#: data, not labels: the opening the caller hears, who is logged in, the caller's number and
#: contacts; the language switch names each language in itself ("English", "中文")
# data, and the words spoken to callers (the opening, the script panel's phrases and the
# caller's address form): the language of the centre's callers, not the page's
DATA = ("#call-greeting, #who, #call-caller, #call-history, #lang-switch, .script-text, "
        ".script-words, #scripts-forbidden")


def texts(page: Page, skip: str = DATA) -> list[str]:
    return [t for t in page.evaluate(VISIBLE_TEXTS, skip) if t]


def english_words(text: str) -> list[str]:
    """Latin words of two letters or more once the data is taken out."""
    return re.findall(r"[A-Za-z]{2,}", DATA_WORDS.sub(" ", text))


def log_in(page: Page, user: str, extension: str | None = None) -> None:
    page.fill("#login-form input[name=username]", user)
    page.fill("#login-form input[name=password]", PASSWORD)
    if extension is not None:
        page.fill("#login-form input[name=extension]", extension)
    page.click("#login-form button[type=submit]")


def test_an_agent_s_desktop_follows_the_agent_s_language_and_switches(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    sipp.softphone("1001", "uas_answer.xml", ring_ms=1500)
    page = browser.new_page(viewport={"width": 1000, "height": 1000})
    page.goto(base + "/desktop")
    # nobody logged in yet: the deployment's default, set before the page's scripts ran
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.locator("#login-form button[type=submit]")).to_have_text("log in")
    log_in(page, "1001", "1001")
    # the login says the agent chose Chinese: the page reloads in it and logs in at 1001
    state = page.locator("#state")
    expect(state).to_have_attribute("data-state", "ready", timeout=15_000)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    expect(state).to_have_text("就绪")
    expect(page.locator("#btn-busy")).to_have_text("示忙")
    expect(page.locator("#lang-switch")).to_have_value("zh-CN")

    # a call: the call card and the call actions, in Chinese
    caller = sipp.caller("100", "uac_call.xml", talk_ms=15000, caller_id=CALLER)
    expect(state).to_have_attribute("data-state", "on_call", timeout=15_000)
    expect(page.locator("#call-actions")).to_be_visible()
    expect(page.locator("#call-title")).to_have_text("当前通话")
    expect(state).to_have_text("通话中")
    chinese = texts(page)
    leftover = [t for t in chinese if english_words(t)]
    assert leftover == [], leftover
    shot(page, "1-desktop-zh-on-call")

    # the switch: stored for the user, the page reloads in English
    page.select_option("#lang-switch", "en")
    page.wait_for_function("() => document.documentElement.lang === 'en'", timeout=15_000)
    expect(state).to_have_attribute("data-state", "on_call", timeout=15_000)
    expect(state).to_have_text("On call")
    expect(page.locator("#call-title")).to_have_text("Current call")
    expect(page.locator("#btn-hold")).to_have_text("hold")
    shown = texts(page)
    assert len(shown) > 25, shown  # state, buttons, call card, actions, reminders
    han = [t for t in shown if HAN.search(t)]
    assert han == [], han
    # the opening the caller hears stays the caller's language (a script, not a label)
    expect(page.locator("#call-greeting")).to_contain_text("1001号为您服务")
    shot(page, "2-desktop-en-on-call")
    assert product.store.read(repo.get_user, "1001").language == "en"
    caller.wait(timeout=60)

    # another browser, a new login: English from the server's record of the choice
    fresh = browser.new_page()
    fresh.goto(base + "/desktop")
    log_in(fresh, "1001", "1001")
    fresh_state = fresh.locator("#state")
    expect(fresh_state).to_have_attribute("data-state", re.compile(r"ready|acw"), timeout=15_000)
    assert fresh.evaluate("document.documentElement.lang") == "en"
    assert [t for t in texts(fresh) if HAN.search(t)] == []
    fresh.close()
    page.close()


def test_a_chinese_supervisor_s_board_and_recordings(product: Product, browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/board")
    log_in(page, "sup")
    page.wait_for_function("() => document.documentElement.lang === 'zh-CN'",
                           timeout=15_000)
    page.wait_for_function("() => window.board && window.board.stats().agents === 2",
                           timeout=30_000)
    page.wait_for_selector("#link.up", timeout=10_000)
    # the clock, in the centre's zone, the zone named beside it
    expect(page.locator("#clock-zone")).to_have_text("时区 Asia/Shanghai")
    expect(page.locator("#clock-time")).to_have_text(re.compile(r"^\d{1,2}:\d\d:\d\d$"))
    expect(page.locator("#agents .row[data-agent='1001'] > span:nth-child(2)")).to_have_text(
        "未登录")
    shown = texts(page)
    leftover = [t for t in shown if english_words(t)]
    assert leftover == [], leftover
    assert any("排队数" in t for t in shown) and any("告警" in t for t in shown)
    shot(page, "3-board-zh")

    # the recordings page: the same user's language
    page.goto(base + "/recordings")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    expect(page.locator("#login-form button[type=submit]")).to_have_text("登录")
    log_in(page, "sup")
    expect(page.locator("#recordings-view")).to_be_visible(timeout=10_000)
    expect(page.locator("#btn-search")).to_have_text("查询")
    expect(page.locator("#who")).to_have_text("sup (班长)")
    leftover = [t for t in texts(page) if english_words(t)]
    assert leftover == [], leftover
    shot(page, "4-recordings-zh")
    page.close()
