"""The board's per-team view in headless Chromium, against the real service (issue 19,
STD-145): two teams in the roster, a shift lead whose board opens on their own team
(agents, queues, ticket backlog and the team's figures), and the selector that switches
to the other team and to every team. Agent 1001 is logged in (the real agent machine),
so the figures differ between the teams."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page
from portblock import port_base
from product import Product

from callflow.agents.roster import Roster, RosterAgent
from callflow.agents.state import LogIn
from callflow.api.passwords import hash_password
from callflow.board.feature import BoardFeature
from callflow.engine.policy import Policy
from callflow.service import ServiceOptions
from callflow.settings import Ports, Settings
from callflow.store import repo
from callflow.tickets.feature import TicketsFeature

pytestmark = pytest.mark.browser
PASSWORD = "teams-board-pw"
TEAMS = {"1001": ("red", "sales"), "1002": ("red", "sales"), "1003": ("blue", "service")}


def roster() -> Roster:
    return Roster(tuple(
        RosterAgent(agent_id=a, name=f"Agent {a}", endpoint=f"agent{a}",
                    static_contact=f"sip:agent{a}@127.0.0.1:5999", queues=(queue,), team=team)
        for a, (team, queue) in TEAMS.items()))


@pytest.fixture
def product(tmp_path: Path) -> Iterator[Product]:
    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                        asterisk_root=Path(os.environ.get("ASTERISK_ROOT", "/nonexistent")),
                        policy_file=None, ports=Ports.from_base(port_base()),
                        api_token=secrets.token_urlsafe(16), ui_language="en")
    policy = Policy.model_validate({"greetings": {"agent_identity": "none"},
                                    "tickets": {"check_interval_s": 0.5}})
    running = Product(settings, policy, roster(),
                      ServiceOptions(features=[BoardFeature(), TicketsFeature()]))
    running.run(running.service.start(), 120)
    running.store.run(repo.set_user, "sup", "supervisor", hash_password(PASSWORD))
    running.store.run(repo.set_user, "lead_blue", "shift_lead", hash_password(PASSWORD),
                      team="blue")
    try:
        yield running
    finally:
        running.stop(check_invariants=False)


def visible_agents(page: Page) -> list[str]:
    return sorted(page.eval_on_selector_all(
        "#agents .row[data-agent]", "rows => rows.filter(r => !r.hidden)"
        ".map(r => r.dataset.agent)"))


def visible_tickets(page: Page) -> list[str]:
    return sorted(page.eval_on_selector_all(
        "#tickets-list .row[data-ticket]", "rows => rows.map(r => r.dataset.ticket)"))


def visible_queues(page: Page) -> list[str]:
    return sorted(page.eval_on_selector_all(
        "#queues .row[data-queue]", "rows => rows.filter(r => !r.hidden)"
        ".map(r => r.dataset.queue)"))


def wait_queues(page: Page, expected: list[str]) -> None:
    """The queue rows the team filter leaves visible, once the page has them all (a
    queue's row may come with a later board frame than the filter's first pass)."""
    page.wait_for_function(
        "(want) => JSON.stringify([...document.querySelectorAll('#queues .row[data-queue]')]"
        ".filter(r => !r.hidden).map(r => r.dataset.queue).sort()) === JSON.stringify(want)",
        arg=expected, timeout=10_000)
    assert visible_queues(page) == expected


def kpi(page: Page, key: str) -> str:
    return page.inner_text(f'#team-kpis [data-kpi="{key}"]')


@pytest.mark.std("STD-145")
def test_a_shift_lead_opens_on_their_team_and_switches_teams(product: Product,
                                                             browser: Browser) -> None:
    base = f"http://127.0.0.1:{product.settings.ports.api}"
    token = httpx.post(base + "/api/v1/session",
                       json={"username": "sup", "password": PASSWORD}).json()["token"]
    made = {}
    for team in ("red", "blue"):
        r = httpx.post(base + "/api/v1/tickets", headers={"Authorization": f"Bearer {token}"},
                       json={"type": "enquiry", "description": f"{team} question",
                             "owner_kind": "team", "owner_id": team})
        assert r.status_code == 201, r.text
        made[team] = str(r.json()["ticket"]["id"])
    product.call(lambda: product.runtime.agent_event("1001", LogIn()))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(base + "/board")
    page.fill("#login-form input[name=username]", "lead_blue")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#teams-panel", state="visible", timeout=20_000)
    page.wait_for_function("() => document.querySelectorAll('#tickets-list .row[data-ticket]')"
                           ".length > 0", timeout=20_000)
    # the shift lead's own team first: its agent, its queue, its ticket, its figures
    assert page.input_value("#team-filter") == "blue"
    assert visible_agents(page) == ["1003"]
    wait_queues(page, ["service"])
    assert visible_tickets(page) == [made["blue"]]
    assert kpi(page, "logged_in") == "logged in 0 / 1"
    assert kpi(page, "tickets_open") == "open tickets 1"
    # the other team
    page.select_option("#team-filter", "red")
    assert visible_agents(page) == ["1001", "1002"]
    wait_queues(page, ["sales"])
    assert visible_tickets(page) == [made["red"]]
    page.wait_for_function("() => document.querySelector('#team-kpis [data-kpi=logged_in]')"
                           ".textContent === 'logged in 1 / 2'", timeout=5_000)
    assert kpi(page, "ready") in ("ready 0", "ready 1")
    # every team
    page.select_option("#team-filter", "")
    assert visible_agents(page) == ["1001", "1002", "1003"]
    assert visible_tickets(page) == sorted(made.values())
    assert sorted(page.eval_on_selector_all("#team-filter option", "os => os.map(o => o.value)"
                                            )) == ["", "blue", "red"]
    page.close()
    # the shift lead's REST view is their team's tickets only
    lead = httpx.post(base + "/api/v1/session",
                      json={"username": "lead_blue", "password": PASSWORD}).json()["token"]
    mine = httpx.get(base + "/api/v1/tickets", headers={"Authorization": f"Bearer {lead}"})
    assert [str(t["id"]) for t in mine.json()["tickets"]] == [made["blue"]]
