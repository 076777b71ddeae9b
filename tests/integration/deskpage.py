"""The agent desktop page opened in headless Chromium and logged in the way an agent does
it: the login form (user, password, extension), then the page shows the agent ready.
The browser tests of one panel each start from here."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect
from product import Product


def ready_desk(browser: Browser, product: Product, password: str, *, agent: str = "1001",
               height: int = 1000) -> Page:
    """A new page (1000 px wide, ``height`` high: tall panels fit the screenshots) on
    ``product``'s ``/desktop``, logged in as ``agent`` on extension ``agent``; returned
    once its state shows ``ready`` (10 s at most, or the test fails here)."""
    page = browser.new_page(viewport={"width": 1000, "height": height})
    page.goto(f"http://127.0.0.1:{product.settings.ports.api}/desktop")
    page.fill("#login-form input[name=username]", agent)
    page.fill("#login-form input[name=password]", password)
    page.fill("#login-form input[name=extension]", agent)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#state")).to_have_attribute("data-state", "ready", timeout=10_000)
    return page
