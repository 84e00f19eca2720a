"""Signing in: the dashboard is closed to strangers, a wrong password is told plainly, and the right one
opens the dashboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_EMAIL, sign_in

pytestmark = pytest.mark.browser


def test_sign_in_opens_the_dashboard(anonymous_page, mailapp_server, screenshot) -> None:
    page = anonymous_page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    screenshot(page, "01-login")

    sign_in(page, password="not the password")
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login"))

    sign_in(page)
    expect(page).to_have_url(mailapp_server.url("/"))
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text(ADMIN_EMAIL)).to_be_visible()
    screenshot(page, "02-dashboard")


def test_changing_the_password_signs_out_the_other_browser(
    anonymous_page, chromium_browser, mailapp_server, screenshot
) -> None:
    """Its own user, so the shared admin sign-in of the other browser tests stays valid."""
    email, old_password, new_password = "changer@example.com", "first password 1", "second password 2"
    mailapp_server.flask("users", "create", email, "--password", old_password, "--no-admin")
    other_context = chromium_browser.new_context(base_url=mailapp_server.base_url)
    try:
        other = other_context.new_page()
        sign_in(other, email, old_password)
        expect(other).to_have_url(mailapp_server.url("/"))

        page = anonymous_page
        sign_in(page, email, old_password)
        expect(page).to_have_url(mailapp_server.url("/"))
        page.get_by_role("navigation").get_by_role("link", name="Account").click()
        page.get_by_role("link", name="Change password").click()
        expect(page.get_by_role("heading", name="Change password")).to_be_visible()
        page.get_by_label("Current password").fill("not it")
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("New password again").fill(new_password)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("The current password is wrong.")).to_be_visible()
        screenshot(page, "03-change-password-refused")

        page.get_by_label("Current password").fill(old_password)
        page.get_by_label("New password", exact=True).fill(new_password)
        page.get_by_label("New password again").fill(new_password)
        page.get_by_role("button", name="Change password").click()
        expect(page).to_have_url(mailapp_server.url("/"))
        expect(page.get_by_text("Your password is changed.")).to_be_visible()

        other.reload()
        expect(other).to_have_url(re.compile(r"/login"))
        sign_in(other, email, new_password)
        expect(other).to_have_url(mailapp_server.url("/"))
    finally:
        other_context.close()
