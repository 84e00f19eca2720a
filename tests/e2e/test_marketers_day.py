"""A marketer's day in the browser, against the running app: upload a layout and preview it, import
subscribers, create a campaign, test-send and schedule it, watch it go out, read the report as
subscribers open, click and unsubscribe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

LAYOUT_NAME = "Spring newsletter"


def layout_file(tmp_path: Path, shop_url: str) -> Path:
    """The marketer's HTML file, as their designer sent it."""
    path = tmp_path / "spring-newsletter.html"
    path.write_text(
        f"""<!doctype html>
<html>
<head><meta charset="utf-8"><style>.cta {{ color: #0a7; font-weight: bold; }}</style></head>
<body>
  <h1>{{{{ campaign.subject }}}}</h1>
  <p>Hello {{{{ subscriber.name or "friend" }}}} from {{{{ subscriber.attributes.city or "afar" }}}},</p>
  {{{{ message }}}}
  <p><a class="cta" href="{shop_url}/spring?ref=newsletter">See the spring catalogue</a></p>
  <p><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>
</body>
</html>
""",
        encoding="utf-8",
    )
    return path


def upload_layout(page: Page, screenshot, html_file: Path) -> None:  # noqa: ANN001
    page.goto("/")
    page.get_by_role("navigation").get_by_role("link", name="Layouts").click()
    expect(page.get_by_role("heading", name="Layouts", exact=True)).to_be_visible()
    screenshot(page, "10-layouts-empty")
    page.get_by_role("link", name="New layout", exact=True).click()
    page.get_by_label("Name").fill(LAYOUT_NAME)
    page.get_by_label(re.compile(r"upload an \.html file")).set_input_files(html_file)
    page.get_by_role("button", name="Create layout").click()

    expect(page.get_by_text(f"Layout '{LAYOUT_NAME}' created.")).to_be_visible()
    preview = page.locator("iframe[title='Layout preview']")
    # Uploaded HTML must not run script in the dashboard's origin.
    expect(preview).to_have_attribute("sandbox", "")
    frame = page.frame_locator("iframe[title='Layout preview']")
    expect(frame.get_by_text("Hello Jane Doe from Lisbon,")).to_be_visible()
    expect(frame.get_by_role("link", name="See the spring catalogue")).to_be_visible()
    for variable in ("subscriber.name", "unsubscribe_url", "message"):
        expect(page.get_by_test_id("used-variable").filter(has_text=variable).first).to_be_visible()
    screenshot(page, "11-layout-preview")


def test_a_marketers_day(page: Page, mailapp_server, landing_site: str, screenshot, tmp_path: Path) -> None:  # noqa: ANN001
    upload_layout(page, screenshot, layout_file(tmp_path, landing_site))
