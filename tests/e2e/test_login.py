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
