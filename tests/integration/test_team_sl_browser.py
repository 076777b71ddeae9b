"""Service level per team on the board, after real calls through a real Asterisk, in
headless Chromium (STD-145, issue 19; the rule: docs/kpi.md "Teams").

Agent 1001 is on team red, 1002 on team blue; both serve the queue ``main``. A SIPp caller
is answered by red's 1001 after one second of ringing (inside the service level, shortened
to one ring = 5 s); then 1001 logs out, blue's 1002 logs in and its softphone rings 8 s
before answering the second caller (outside it). The board page, open before the calls,
gets each team's figures pushed (``team_kpis``): red 100 %, blue 0 %; the chips of the
chosen team agree, and so does the KPI API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import Browser, Page
from product import Product, make_settings

from callflow.agents.events import AgentState, LogIn, LogOut
from callflow.agents.roster import Roster, RosterAgent
from callflow.api.passwords import hash_password
from callflow.board.feature import BoardFeature, BoardOptions
from callflow.engine.policy import parse_policy
from callflow.service import ServiceOptions
from callflow.store import repo

if TYPE_CHECKING:
    from conftest import PbxHandle
    from sippctl import SippControl

pytestmark = pytest.mark.browser
PASSWORD = "team-sl-pw"
#: the service level within 1 ring (5 s at the cn cadence); a short ACW
POLICY = parse_policy({"kpi": {"service_level_threshold_rings": 1},
                       "agents": {"acw_limit_s": 2}})
TEAMS = {"1001": "red", "1002": "blue"}


@pytest.fixture
def product(asterisk: PbxHandle, asterisk_root: Path, tmp_path: Path) -> Iterator[Product]:
    roster = Roster(tuple(
        RosterAgent(agent_id=a, name=f"Agent {a}", endpoint=f"agent{a}",
                    static_contact=f"sip:agent{a}@127.0.0.1:{asterisk.agent_port(a)}",
                    team=team)
        for a, team in TEAMS.items()))
    board = BoardFeature(BoardOptions(flush_delay_s=0.1, tick_s=0.5, schedule_reports=False))
    running = Product(make_settings(tmp_path, asterisk, asterisk_root), POLICY, roster,
                      ServiceOptions(features=[board]))
    running.start()
    try:
        running.store.run(repo.set_user, "sup", "supervisor", hash_password(PASSWORD))
        yield running
    finally:
        running.stop()


def team_cell(team: str, kpi: str) -> str:
    return f"#team-sl tr[data-team='{team}'] td[data-kpi='{kpi}']"


def wait_text(page: Page, selector: str, text: str, timeout_s: float = 10) -> None:
    try:
        page.wait_for_function("([sel, want]) => { const el = document.querySelector(sel);"
                               " return el !== null && el.textContent === want; }",
                               arg=[selector, text], timeout=timeout_s * 1000)
    except Exception as exc:
        shown = page.evaluate("document.getElementById('teams-panel').outerHTML")
        raise AssertionError(f"{selector} never read {text!r}; the panel: {shown}") from exc


def call_answered_by(product: Product, sipp: SippControl, agent: str, ring_ms: int,
                     caller_id: str) -> None:
    """``agent`` alone logged in, their softphone ringing ``ring_ms``; one caller, to the
    end of the call and of the agent's ACW; then the agent logs out. SIPp's caller counts
    its talk from Asterisk's answer (our flow takes the call at once), so it stays the
    ringing plus 3 s of talk."""
    sipp.softphone(agent, "uas_answer.xml", ring_ms=ring_ms)
    product.call(lambda: product.runtime.agent_event(agent, LogIn()))
    caller = sipp.caller("100", "uac_call.xml", talk_ms=ring_ms + 3000,
                         caller_id=caller_id)
    assert caller.wait(60) == 0, caller.diagnostics()
    product.wait_for(lambda: product.runtime.agents[agent].state is AgentState.READY, 15,
                     f"{agent} back to ready after the ACW")
    product.call(lambda: product.runtime.agent_event(agent, LogOut()))


@pytest.mark.std("STD-145")
def test_two_teams_service_levels_differ_after_real_calls(
        asterisk: PbxHandle, sipp: SippControl, product: Product, browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/board")
    page.fill("#login-form input[name=username]", "sup")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#teams-panel", state="visible", timeout=20_000)
    page.wait_for_selector("#link.up", timeout=10_000)

    call_answered_by(product, sipp, "1001", 1000, "13900000011")   # red: inside 5 s
    call_answered_by(product, sipp, "1002", 8000, "13900000012")   # blue: outside

    # pushed to the open page: a row per team
    wait_text(page, team_cell("red", "service_level"), "100.0%")
    wait_text(page, team_cell("blue", "service_level"), "0.0%")
    assert page.inner_text(team_cell("red", "answered")) == "1"
    assert page.inner_text(team_cell("blue", "answered")) == "1"
    assert "below" in (page.get_attribute("#team-sl tr[data-team='blue']", "class") or "")
    # the chosen team's chips; every team: the sum (one call in each)
    page.select_option("#team-filter", "blue")
    wait_text(page, "#team-kpis [data-kpi='service_level']", "service level 0.0%")
    page.select_option("#team-filter", "red")
    wait_text(page, "#team-kpis [data-kpi='service_level']", "service level 100.0%")
    page.select_option("#team-filter", "")
    wait_text(page, "#team-kpis [data-kpi='service_level']", "service level 50.0%")
    page.close()

    # the KPI API says the same, with the answer times the store took from Asterisk
    token = httpx.post(base + "/api/v1/session",
                       json={"username": "sup", "password": PASSWORD}).json()["token"]
    status, body = product.rest("GET", "/api/v1/kpi", token)
    assert status == 200, body
    teams = body["teams"]
    assert (teams["red"]["service_level"], teams["blue"]["service_level"]) == (1.0, 0.0)
    product.flush()
    now = datetime.now(UTC)
    calls = {c.agent_id: c for c in product.store.read(
        repo.calls_entered_between, now - timedelta(hours=1), now + timedelta(minutes=1))}
    blue = calls["1002"]
    assert blue.answered_at is not None and blue.routed_at is not None
    blue_wait = (blue.answered_at - blue.routed_at).total_seconds()
    assert teams["blue"]["asa_s"] == pytest.approx(blue_wait, abs=0.002)
    assert blue_wait > POLICY.rings_to_seconds(1)
    print(f"team figures: red ASA {teams['red']['asa_s']} s, blue ASA {teams['blue']['asa_s']}"
          f" s (Asterisk-timed wait {blue_wait:.3f} s)")

