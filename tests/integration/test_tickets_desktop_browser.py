"""Tickets on the agent desktop page (issue 19, STD-026, STD-073), in headless Chromium on
a real Asterisk with SIPp.

A SIPp caller reaches agent 1001's SIPp softphone. On the agent's page, during the call,
the agent opens a complaint from the call (the form of desktop/static/tickets.js); the
store links the call, the caller and the agent, and once the call has ended the
recording too. A second call from the same number rings on the same desktop: while it
rings, the repeat-caller panel shows the open ticket and the first call. The agent's
list of open tickets shows the description as text, and a save over a stale version is
a conflict that keeps what the agent typed. The call record's invariants are checked
when the product stops (tests/integration/product.py). Screenshots go to
test-artifacts/desktop/.
"""

from __future__ import annotations

import secrets
import time
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
from callflow.engine.calls import Phase
from callflow.engine.policy import parse_policy
from callflow.recordings.feature import RecordingsFeature
from callflow.service import ServiceOptions
from callflow.store import repo
from callflow.store import tickets as store_tickets
from callflow.tickets.feature import TicketsFeature

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser
CALLER = "13900000073"
#: a short ACW, so the agent is ready again for the caller's second call
POLICY = parse_policy({"agents": {"acw_limit_s": 2}})
PASSWORD = "desk-" + secrets.token_urlsafe(8)
DESCRIPTION = "<b>bill</b> charged twice"


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), POLICY,
                      make_roster(["1001"], asterisk.agent_port),
                      ServiceOptions(features=[AgentDesktop(), TicketsFeature(),
                                               RecordingsFeature(purge=False)]))
    running.start()
    running.store.run(repo.set_user, "1001", "agent", hash_password(PASSWORD), agent_id="1001")
    try:
        yield running
    finally:
        running.stop()


def _recordings(product: Product) -> RecordingsFeature:
    return next(f for f in product.service.options.features
                if isinstance(f, RecordingsFeature))


@pytest.mark.std("STD-073")
def test_agent_opens_a_ticket_from_the_call_and_the_repeat_caller_sees_it(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    t_start = time.monotonic()
    sipp.softphone("1001", "uas_answer.xml", ring_ms=3000)
    page = ready_desk(browser, product, PASSWORD, height=1800)
    state = page.locator("#state")
    expect(page.locator("#tickets-panel")).to_be_visible()
    expect(page.locator("#ticket-form")).to_be_hidden()  # no call, no form

    # --- the first call: the agent opens a complaint from it ------------------------------
    first = sipp.caller("100", "uac_call.xml", caller_id=CALLER, talk_ms=10_000)
    expect(state).to_have_attribute("data-state", "on_call", timeout=20_000)
    form = page.locator("#ticket-form")
    expect(form).to_be_visible(timeout=5_000)
    page.select_option("#ticket-type", "complaint_simple")
    page.select_option("#ticket-priority", "high")
    page.select_option("#ticket-owner", "agent")
    page.fill("#ticket-description", DESCRIPTION)
    page.click("#btn-ticket-create")
    created = page.locator("#ticket-created")
    expect(created).to_contain_text("-1001-", timeout=10_000)
    ticket_id = int(created.get_attribute("data-ticket-id") or "0")
    shot(page, "tickets-1-created")
    row = product.store.read(store_tickets.get, ticket_id)
    assert row is not None
    call_id = row.call_uniqueid
    assert call_id is not None
    live = product.call(lambda: product.runtime.calls[call_id])
    assert live.ended_at is None and live.agent_id == "1001"  # opened during the call
    assert (row.caller_number, row.agent_id, row.owner_id, row.type, row.priority) == \
        (CALLER, "1001", "1001", "complaint_simple", "high")
    assert row.description == DESCRIPTION
    # the deadline the page shows is the server's (the next clock of the ticket)
    assert row.number in (created.text_content() or "")

    assert first.wait(60) == 0, first.diagnostics()
    product.wait_for(lambda: product.runtime.calls[call_id].phase is Phase.ENDED, 10,
                     "the first call to end")
    product.wait_for(lambda: bool(_recordings(product).finished), 20, "the recording")
    product.flush()
    rec = product.store.read(repo.recording_for_call, call_id)
    assert rec is not None
    product.wait_for(lambda: product.store.read(store_tickets.get, ticket_id).recording_id
                     == rec.id, 10, "the ticket to link the recording")

    # --- the second call from the same number: the repeat-caller panel while it rings ---
    expect(state).to_have_attribute("data-state", "ready", timeout=15_000)
    second = sipp.caller("100", "uac_call.xml", caller_id=CALLER, talk_ms=1_000)
    expect(state).to_have_attribute("data-state", "ringing", timeout=20_000)
    repeat = page.locator("#repeat-view")
    expect(repeat).to_be_visible(timeout=2_500)
    expect(page.locator(f"#repeat-tickets li[data-ticket-id='{ticket_id}']")) \
        .to_contain_text(row.number)
    expect(page.locator(f"#repeat-calls li[data-call-id='{call_id}']")).to_contain_text("1001")
    assert page.locator("#state").get_attribute("data-state") == "ringing"  # still ringing
    # an agent gets no recording link (STD-078: recordings need a supervisor-level role)
    expect(page.locator("#repeat-view a.recording-link")).to_have_count(0)
    shot(page, "tickets-2-repeat-caller")
    assert second.wait(60) == 0, second.diagnostics()

    # --- my open tickets: the description is text; a stale save is a conflict ----------
    mine = page.locator(f"#tickets-mine li[data-ticket-id='{ticket_id}']")
    expect(mine).to_be_visible()
    expect(mine.locator(".ticket-description")).to_have_text(DESCRIPTION)
    expect(mine.locator(".ticket-description b")).to_have_count(0)
    boss = product.session("boss", "supervisor")
    status, got = product.rest("PATCH", f"/api/v1/tickets/{ticket_id}", boss,
                               {"version": row.version, "note": "supervisor was here"})
    assert status == 200, got
    mine.locator(".ticket-note").fill("called the customer back")
    mine.locator(".ticket-save").click()
    result = mine.locator(".ticket-result")
    expect(result).to_have_attribute("data-conflict", "1", timeout=5_000)
    expect(mine.locator(".ticket-note")).to_have_value("called the customer back")
    mine.locator(".ticket-save").click()  # the version read after the conflict: saved
    expect(result).to_have_text("saved", timeout=5_000)
    notes = [h.note for h in product.store.read(store_tickets.history, ticket_id)]
    assert notes[-2:] == ["supervisor was here", "called the customer back"]
    shot(page, "tickets-3-mine")
    page.close()
    print(f"\nwhole test {time.monotonic() - t_start:.1f} s")
