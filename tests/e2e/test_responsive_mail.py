"""A responsive campaign read on a phone: a 600 px layout that a `@media (max-width: 600px)` rule turns
full-width is sent by the running app's worker, and the message the SMTP server received is opened in
Chromium. On a phone it must fit the screen; on a desktop it keeps its 600 px."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from playwright.sync_api import Browser

from tests.e2e.conftest import ADMIN_EMAIL, RunningApp
from tests.smtp import ReceivedMessage

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1024, "height": 740}
READER = "phone.reader@example.net"
LAYOUT = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { margin: 0; }
  .wrapper { width: 600px; margin: 0 auto; border-collapse: collapse; }
  td { padding: 12px; font-family: sans-serif; }
  @media (max-width: 600px) { .wrapper { width: 100% !important; } }
</style></head>
<body><table class="wrapper" data-testid="wrapper"><tr><td>
  <h1>Hello {{ subscriber.name }}</h1>{{ message }}
  <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</td></tr></table></body></html>"""


def _api(running: RunningApp, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the app under test, on loopback
        running.url(f"/api/v1{path}"), method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        return json.loads(response.read() or b"{}")


def _wait_for_mail(running: RunningApp, address: str, timeout: float = 60.0) -> ReceivedMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [message for message in running.smtp.messages if message.to == address]
        if found:
            return found[0]
        running.assert_alive()
        time.sleep(0.1)
    raise AssertionError(f"no message to {address} within {timeout}s")


def send_the_responsive_campaign(running: RunningApp) -> ReceivedMessage:
    token = running.flask("tokens", "create", ADMIN_EMAIL, "--name", "responsive").strip().splitlines()[-1]
    readers = _api(running, token, "POST", "/lists", {"name": "Phone readers"})
    _api(running, token, "POST", "/subscribers",
         {"email": READER, "name": "Pat Phone", "list_ids": [readers["id"]]})
    layout = _api(running, token, "POST", "/layouts", {"name": "Responsive", "html": LAYOUT})
    campaign = _api(running, token, "POST", "/campaigns", {
        "name": "Responsive news", "subject": "News for {{ subscriber.name }}",
        "from_name": "Acme", "from_email": "news@acme.example", "layout_id": layout["id"],
        "list_ids": [readers["id"]], "message": "A line long enough to wrap on a narrow phone screen.",
        # No open pixel or rewritten links: loading the message below must not count as a reader.
        "track_opens": False, "track_clicks": False,
    })
    _api(running, token, "POST", f"/campaigns/{campaign['id']}/send")
    return _wait_for_mail(running, READER)


def test_a_responsive_campaign_fits_a_phone_screen_without_horizontal_scrolling(
    chromium_browser: Browser, mailapp_server: RunningApp, screenshot
) -> None:
    received = send_the_responsive_campaign(mailapp_server)
    html = received.html()
    assert "@media (max-width: 600px)" in html, "the media query was dropped on the way out"
    assert "@media" not in received.text(), "the style block leaked into the text part"

    widths = {}
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        context = chromium_browser.new_context(viewport=viewport)
        try:
            page = context.new_page()
            page.set_content(html)
            widths[name] = page.evaluate(
                "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
                " wrapper: document.querySelector('[data-testid=wrapper]').getBoundingClientRect().width})"
            )
            screenshot(page, f"80-responsive-mail-{name}")
        finally:
            context.close()

    phone = widths["phone"]
    assert phone["scroll"] <= phone["inner"], f"the message scrolls sideways on a phone: {phone}"
    assert phone["wrapper"] <= PHONE["width"]
    assert widths["desktop"]["wrapper"] == 600, f"the desktop layout is not 600 px wide: {widths['desktop']}"
