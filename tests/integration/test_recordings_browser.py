"""The recordings page in headless Chromium (Playwright), on a real Asterisk with SIPp.

A SIPp caller rings agent 1001, whose SIPp softphone answers; the caller sends audio
without a gap (``uac_call_speaking.xml``: the opening plays, then they are bridged) and
hangs up; the product's RecordingsFeature records the bridged part (MixMonitor) and
stores it.
Then, on /recordings: a wrong password is refused; the supervisor logs in, sees the
call's row, opens it and plays it (the audio is fetched with the bearer token into a
blob: URL, and its duration is read back from the <audio> element), sees "play" in the
server's access log, scores it on the form built from the scoring sheet and sees the
total the server computed, samples this month; an agent's login is told it has no
access. No request the page makes carries the token in its URL. Screenshots go to
test-artifacts/recordings/.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from product import Product, running_product

from callflow.agents.state import LogIn
from callflow.api.passwords import hash_password
from callflow.engine.policy import Policy
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.settings import REPO_ROOT
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts" / "recordings"
AGENTS = ["1001"]
CALLER = "13977776666"
PASSWORD = "rec-" + secrets.token_urlsafe(8)


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    with running_product(asterisk, asterisk_root, tmp_path, Policy.defaults(), AGENTS,
                         ServiceOptions(features=[RecordingsFeature(purge=False)])) as running:
        password = hash_password(PASSWORD)
        for user, role, agent in (("sup", "supervisor", None), ("1001", "agent", "1001")):
            running.store.run(repo.set_user, user, role, password, agent_id=agent)
        yield running


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))  # the viewport: the header is sticky


def log_in(page: Page, user: str, password: str) -> None:
    page.fill("#login-form input[name=username]", user)
    page.fill("#login-form input[name=password]", password)
    page.click("#login-form button[type=submit]")


def recorded(base: str, token: str, timeout: float) -> dict[str, Any]:
    """The call's recording as the API lists it, once the feature has stored it."""
    headers = {"Authorization": "Bearer " + token}
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(base + "/api/v1/recordings", headers=headers,
                          params={"agent_id": "1001"})
        reply.raise_for_status()
        items = reply.json()["recordings"]
        if items:
            item: dict[str, Any] = items[0]
            return item
        if time.monotonic() > deadline:
            raise AssertionError(f"no recording listed {timeout}s after the call ended")
        time.sleep(0.2)


def test_supervisor_finds_plays_and_reviews_a_recorded_call(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    started = time.monotonic()
    base = f"http://127.0.0.1:{product.settings.ports.api}"

    # a real call: the caller speaks to agent 1001's softphone, then hangs up
    sipp.softphone("1001", "uas_answer.xml", ring_ms=500)
    product.call(lambda: product.runtime.agent_event("1001", LogIn()))
    caller = sipp.caller("100", "uac_call_speaking.xml", caller_id=CALLER)
    assert caller.wait(60) == 0, caller.diagnostics()
    token = httpx.post(base + "/api/v1/session",
                       json={"username": "sup", "password": PASSWORD}).json()["token"]
    item = recorded(base, token, 20)
    rec_id = str(item["id"])
    assert item["duration_s"] > 0
    call_done = time.monotonic()

    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(base + "/recordings")
    expect(page.locator("#login-form")).to_be_visible()
    log_in(page, "sup", "wrong-password")
    expect(page.locator("#login-error")).to_have_text("wrong username or password")
    log_in(page, "sup", PASSWORD)
    expect(page.locator("#recordings-view")).to_be_visible()
    expect(page.locator("#who")).to_contain_text("sup (supervisor)")
    row = page.locator(f"#recordings tbody tr[data-id='{rec_id}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("1001")
    expect(row).to_contain_text("inbound")
    expect(page.locator("#error")).to_have_text("")
    shot(page, "1-list")

    # filters: another agent matches nothing, then back to this one
    page.fill("#filters input[name=agent_id]", "1002")
    page.click("#btn-search")
    expect(page.locator("#recordings tbody tr")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    page.fill("#filters input[name=agent_id]", "1001")
    page.click("#btn-search")
    expect(row).to_be_visible()

    # play: the audio comes as a blob: URL (fetched with the bearer token) and has a length
    row.click()
    expect(page.locator("#detail")).to_be_visible()
    page.wait_for_function(
        "() => { const p = document.getElementById('player');"
        " return p.src.startsWith('blob:') && isFinite(p.duration) && p.duration > 0; }",
        timeout=10_000)
    duration = page.evaluate("document.getElementById('player').duration")
    assert duration == pytest.approx(item["duration_s"], abs=1.0), (duration, item)
    page.evaluate("document.getElementById('player').play().catch(() => null)")
    expect(page.locator("#access li").first).to_be_visible()
    play = page.locator("#access li[data-action='recording.play']")
    expect(play).to_have_count(1)
    expect(play).to_contain_text("play")
    expect(page.locator("#access")).to_contain_text("sup")
    expect(page.locator("#audio-status")).to_have_text("")

    # review: one number per criterion, one count per penalty, from the scoring sheet
    sheet = httpx.get(base + "/api/v1/recordings/scoring-sheet",
                      headers={"Authorization": "Bearer " + token}).json()
    assert sheet["criteria"]
    form = page.locator("#review-form")
    for criterion in sheet["criteria"]:
        expect(form.locator(f"input[name='{criterion['code']}']")).to_have_attribute(
            "max", str(criterion["max"]))
    expect(form.locator("input[data-penalty]")).to_have_count(len(sheet["penalties"]))
    first = sheet["criteria"][0]
    form.locator(f"input[name='{first['code']}']").fill(str(max(first["max"] - 1, 0)))
    form.locator("textarea[name=notes]").fill("clear opening, good summary")
    form.locator("button[type=submit]").click()
    total = page.locator("#review-total")
    expect(total).to_contain_text(re.compile(r"total -?\d+"))
    expect(page.locator("#reviews li")).to_have_count(1)
    detail = httpx.get(base + f"/api/v1/recordings/{rec_id}",
                       headers={"Authorization": "Bearer " + token}).json()
    assert len(detail["reviews"]) == 1, detail
    stored = detail["reviews"][0]
    expect(total).to_contain_text(f"total {stored['total']}")
    if stored["unqualified"]:
        expect(total).to_contain_text("unqualified")
    else:
        expect(total).not_to_contain_text("unqualified")
    assert "recording.play" in [a["action"] for a in detail["access"]], detail["access"]
    expect(page.locator("#error")).to_have_text("")
    expect(row.locator("td").nth(6)).to_have_text("yes")
    expect(page.locator("#detail-meta")).to_contain_text("reviewedyes")
    shot(page, "2-played-and-reviewed")

    # this month's QA sample: the count the server selected
    page.click("#btn-sample")
    expect(page.locator("#sample-result")).to_contain_text(re.compile(r"\d+ selected"))
    # one call of an agent owed five a month (STD-115): it is in the sample
    expect(page.locator("#sample-result")).to_contain_text("1 selected")
    expect(row.locator("td").nth(5)).to_contain_text("selected")
    page.select_option("#filters select[name=qa]", "selected")
    expect(row).to_be_visible()
    expect(page.locator("#error")).to_have_text("")
    assert all(token not in url and "token=" not in url for url in urls), urls
    page.close()

    # an agent's login: no access
    agent_page = browser.new_page(viewport={"width": 1000, "height": 700})
    agent_page.goto(base + "/recordings")
    log_in(agent_page, "1001", PASSWORD)
    expect(agent_page.locator("#forbidden-view")).to_be_visible()
    expect(agent_page.locator("#forbidden-text")).to_contain_text("no access")
    expect(agent_page.locator("#recordings-view")).to_be_hidden()
    shot(agent_page, "3-agent-no-access")
    agent_page.close()
    print(f"\ncall + recording stored {call_done - started:.1f} s, "
          f"page steps {time.monotonic() - call_done:.1f} s")
