"""Bad input in the browser: each mistake is shown on the page, where it was made, with what is wrong
and where (a line number for a template), and nothing is saved."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

BROKEN_TEMPLATE = """<html>
<body>
  <p>Hello {{ subscriber.name </p>
  {{ message }}
</body>
</html>
"""


def test_a_broken_template_is_shown_with_its_line_number(page: Page, screenshot) -> None:
    page.goto("/layouts/new")
    page.get_by_label("Name", exact=True).fill("Broken layout")
    page.get_by_label("HTML", exact=True).fill(BROKEN_TEMPLATE)
    page.get_by_role("button", name="Create layout").click()

    errors = page.get_by_test_id("form-errors")
    expect(errors).to_contain_text("Line 3:")
    # The marketer's text stays in the editor, to be fixed in place.
    expect(page.get_by_label("HTML", exact=True)).to_have_value(BROKEN_TEMPLATE)
    screenshot(page, "90-error-broken-template")

    page.goto("/layouts/")
    expect(page.get_by_role("link", name="Broken layout")).to_have_count(0)


def test_a_csv_without_an_email_column_is_refused_on_the_page(page: Page, screenshot, tmp_path) -> None:
    page.goto("/lists")
    page.get_by_label("Name", exact=True).fill("Trade fair leads")
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("heading", name="Trade fair leads")).to_be_visible()

    broken = tmp_path / "leads.csv"
    broken.write_text("name,city\nAlice Martin,Paris\nBob Stone,Berlin\n", encoding="utf-8")
    page.get_by_label("CSV file").set_input_files(broken)
    page.get_by_role("button", name="Import", exact=True).click()

    expect(page.get_by_text("The header row has no 'email' column")).to_be_visible()
    expect(page.get_by_text("line 1 reads")).to_be_visible()
    screenshot(page, "91-error-csv-without-email")
    # Refused before anything was queued: no import started, nobody added.
    expect(page.get_by_test_id("recent-imports")).to_have_count(0)
    expect(page.get_by_test_id("list-counts")).to_contain_text(re.compile(r"Subscribers\s*0\b"))


def test_an_invalid_email_is_refused_when_adding_a_subscriber(page: Page, screenshot) -> None:
    page.goto("/subscribers")
    page.get_by_role("link", name="Add subscriber").click()
    page.get_by_label("Email").fill("jane@@example.com")
    page.get_by_label("Name", exact=True).fill("Jane Doe")
    page.get_by_role("button", name="Add subscriber").click()

    expect(page.get_by_text("Invalid email address 'jane@@example.com'")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value("jane@@example.com")
    screenshot(page, "92-error-invalid-email")
    page.goto("/subscribers?q=jane")
    expect(page.get_by_text("jane@@example.com")).to_have_count(0)
