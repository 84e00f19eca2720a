"""The dashboard on a phone: the navigation folds into its menu button, and no page is wider than the
screen (wide tables scroll inside their card instead)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
PAGES = {"/": "dashboard", "/campaigns/": "campaigns", "/subscribers": "subscribers", "/lists": "lists",
         "/layouts/": "layouts", "/reports/": "reports"}


def test_every_main_page_fits_a_phone(page: Page, screenshot) -> None:
    page.set_viewport_size(PHONE)
    for path, name in PAGES.items():
        page.goto(path)
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(page.get_by_role("navigation").get_by_role("link", name="Campaigns")).to_be_hidden()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than a {PHONE['width']}px screen"
        screenshot(page, f"70-phone-{name}")

    menu.click()
    expect(page.get_by_role("navigation").get_by_role("link", name="Campaigns")).to_be_visible()
