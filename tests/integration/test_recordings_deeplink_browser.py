"""The recordings page's deep link (``/recordings#recording=<id>``) in headless Chromium,
against the real service and store (no Asterisk: the recording is a WAV file the store
points at, as the RecordingsFeature leaves it after a call).

The desktop's ticket and repeat-caller views link a recording this way. A supervisor who
follows the link logs in and lands on that recording: its row marked, its detail and
player open, the audio fetched through the audited API (the access log shows the play and
the view). A link to a recording that does not exist, or with no number, gives the page's
one error line and no detail pane; an agent's login (no recordings role) gets the page's
no-access view and the recording is never requested.
"""

from __future__ import annotations

import os
import secrets
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from portblock import port_base
from product import Product, make_roster

from callflow.api.passwords import hash_password
from callflow.engine.policy import Policy
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.settings import Ports, Settings
from callflow.store import repo

pytestmark = pytest.mark.browser
PASSWORD = "deeplink-" + secrets.token_urlsafe(8)
WAV_S = 2.0


def write_wav(path: Path, seconds: float) -> None:
    """A mono 8 kHz WAV of a quiet tone (what MixMonitor leaves, in miniature)."""
    frames = int(8000 * seconds)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"".join(((i * 37) % 200 - 100).to_bytes(2, "little", signed=True)
                                 for i in range(frames)))


@pytest.fixture
def product(tmp_path: Path) -> Iterator[Product]:
    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                        asterisk_root=Path(os.environ.get("ASTERISK_ROOT", "/nonexistent")),
                        policy_file=None, ports=Ports.from_base(port_base()),
                        api_token=secrets.token_urlsafe(16))
    running = Product(settings, Policy.defaults(), make_roster(["1001"], lambda a: 5999),
                      ServiceOptions(features=[RecordingsFeature(purge=False)]))
    running.run(running.service.start(), 120)
    password = hash_password(PASSWORD)
    for user, role, agent in (("sup", "supervisor", None), ("1001", "agent", "1001")):
        running.store.run(repo.set_user, user, role, password, agent_id=agent)
    try:
        yield running
    finally:
        running.stop(check_invariants=False)


def recording(product: Product, tmp_path: Path, uniqueid: str, number: str,
              minutes_ago: int) -> int:
    """A stored call and its recording; the recording's id."""
    wav = tmp_path / f"{uniqueid}.wav"
    write_wav(wav, WAV_S)
    started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    product.store.run(repo.upsert_call, uniqueid, direction="inbound", caller_number=number,
                      agent_id="1001", outcome="answered", entered_at=started,
                      answered_at=started, ended_at=started + timedelta(seconds=WAV_S))
    rec = product.store.run(
        lambda s: repo.add_recording(s, uniqueid, direction="inbound", agent_id="1001",
                                     number=number, path=str(wav), started_at=started,
                                     ended_at=started + timedelta(seconds=WAV_S),
                                     duration_s=WAV_S, bytes=wav.stat().st_size).id)
    return int(rec)


def log_in(page: Page, user: str) -> None:
    page.fill("#login-form input[name=username]", user)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")


def audited(product: Product, rid: int) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in reversed(product.store.read(
        repo.audit_entries, target=f"recording:{rid}"))]


def test_a_link_opens_that_recording_after_login_and_refuses_what_it_may_not(
        product: Product, browser: Browser, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    other = recording(product, tmp_path, "dl-1", "13900000001", 30)
    wanted = recording(product, tmp_path, "dl-2", "13900000002", 10)
    asked: list[str] = []
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"{base}/recordings#recording={wanted}")
    log_in(page, "sup")
    # the link's recording, not the other one: row marked, detail open, audio playable
    expect(page.locator("#detail")).to_be_visible(timeout=20_000)
    expect(page.locator("#detail-id")).to_have_text(f"#{wanted}")
    expect(page.locator(f"#recordings tr[data-id='{wanted}']")).to_have_class("chosen")
    expect(page.locator(f"#recordings tr[data-id='{other}']")).not_to_have_class("chosen")
    page.wait_for_function("() => document.getElementById('player').duration > 0",
                           timeout=20_000)
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert abs(duration - WAV_S) < 0.1, duration
    expect(page.locator("#access li[data-action='recording.play']")).to_have_count(1)
    assert ("sup", "recording.play") in audited(product, wanted)
    assert ("sup", "recording.detail") in audited(product, wanted)
    assert audited(product, other) == []  # nothing of the other recording was opened
    assert not any(PASSWORD in u or "token" in u for u in asked)
    assert page.inner_text("#error") == ""

    # a link to a recording that does not exist: one error, no pane
    missing = wanted + 1000
    page.evaluate(f"() => {{ location.hash = 'recording={missing}'; }}")
    expect(page.locator("#error")).to_contain_text(str(missing), timeout=10_000)
    expect(page.locator("#detail")).to_be_hidden()
    # with no number: the page says so and asks the server nothing
    before = len(asked)
    page.evaluate("() => { location.hash = 'recording=..%2F1%3Cb%3E'; }")
    expect(page.locator("#error")).to_contain_text("../1<b>", timeout=10_000)
    expect(page.locator("#detail")).to_be_hidden()
    assert not [u for u in asked[before:] if "/api/v1/recordings/" in u]
    assert page.locator("#error b").count() == 0  # shown as text
    # back to a good link in the same tab: it opens
    page.evaluate(f"() => {{ location.hash = 'recording={other}'; }}")
    expect(page.locator("#detail-id")).to_have_text(f"#{other}", timeout=10_000)
    expect(page.locator("#error")).to_have_text("")
    page.close()

    # an agent follows the same link: the page's no-access view, the recording untouched
    agent = browser.new_page(viewport={"width": 1300, "height": 900})
    agent_asked: list[str] = []
    agent.on("request", lambda r: agent_asked.append(r.url))
    agent.goto(f"{base}/recordings#recording={wanted}")
    log_in(agent, "1001")
    expect(agent.locator("#forbidden-view")).to_be_visible(timeout=20_000)
    expect(agent.locator("#detail")).to_be_hidden()
    assert not [u for u in agent_asked if f"/api/v1/recordings/{wanted}" in u]
    assert [a for a in audited(product, wanted) if a[0] == "1001"] == []
    agent.close()
