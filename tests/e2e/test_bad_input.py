"""Bad input in the browser: each mistake is shown on the page, where it was made, with what is wrong
and where (a line number for a template), and nothing is saved."""

from __future__ import annotations

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


def test_a_broken_template_is_shown_with_its_line_number(page: Page, screenshot) -> None:  # noqa: ANN001
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
