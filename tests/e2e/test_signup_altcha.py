"""The ALTCHA widget of a signup form, in the browser against the running app: served by mailapp, it
fetches a challenge, solves it in its Web Workers (which the hosted page's CSP lets run), and the
signup it carries is taken."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import RunningApp

pytestmark = pytest.mark.browser

LIST_NAME = "Bird watchers"
VISITOR = "birder@example.org"


def test_the_widget_solves_the_challenge_and_the_signup_is_taken(
    page: Page, anonymous_page: Page, mailapp_server: RunningApp, screenshot
):
    page.goto("/lists")
    page.get_by_label("Name").fill(LIST_NAME)
    page.get_by_role("button", name="Create list").click()
    assert re.search(r"/lists/(\d+)", page.url)
    page.goto("/signup-forms/new")
    page.get_by_label("Name", exact=True).fill("Birds")
    page.get_by_label("Address").fill("birds")
    page.get_by_label("Lists", exact=True).select_option(label=LIST_NAME)
    page.get_by_label("Anti-spam proof of work").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Signup form Birds saved.")).to_be_visible()

    errors: list[str] = []
    anonymous_page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    anonymous_page.goto("/s/birds")
    anonymous_page.get_by_label("Email").fill(VISITOR)
    anonymous_page.get_by_text("I'm not a robot").click()
    expect(anonymous_page.locator("altcha-widget [data-state]")).to_have_attribute(
        "data-state", "verified", timeout=30_000
    )
    screenshot(anonymous_page, "signup-60-altcha-verified")
    anonymous_page.get_by_role("button", name="Subscribe").click()
    expect(anonymous_page.get_by_test_id("message")).to_be_visible()
    assert errors == []

    page.goto(f"/subscribers?q={VISITOR}")
    row = page.get_by_test_id("subscribers-table").locator("tbody tr")
    expect(row).to_have_count(1)
    assert row.locator(".badge").first.inner_text() == "active"
