"""The visual editor in a real browser: a layout built from a starter in GrapesJS (blocks dragged in, an
image uploaded), saved, sent as a test, and the received message read on a phone; and every starter
read at desktop and phone widths."""

from __future__ import annotations

import base64
import re
import urllib.request

import pytest
from playwright.sync_api import Browser, Page, expect

from mailapp.layouts.mjml import compile_and_validate
from mailapp.layouts.starters import STARTERS, Starter
from mailapp.sending import limits, templating
from tests.e2e.conftest import ADMIN_EMAIL, RunningApp
from tests.e2e.test_responsive_mail import _api, _wait_for_mail

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1024, "height": 740}
READER = "visual.reader@example.net"
TESTER = "visual.tester@example.net"
LAYOUT_NAME = "Visual spring letter"
# A 2 x 2 PNG, uploaded through the editor's image manager.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)
NO_SIDEWAYS_SCROLL = "() => document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth"


def _add_block(page: Page, block_id: str) -> None:
    """One of the editor's blocks added to the first column through the GrapesJS API (dragging into the
    canvas iframe is not something Playwright's drag can do reliably)."""
    page.evaluate(
        """id => { const editor = window.mailappEditor;
                  const column = editor.getWrapper().findType('mj-column')[0];
                  column.append(editor.Blocks.get(id).get('content')); }""",
        block_id,
    )


def test_a_layout_built_in_the_visual_editor_from_a_starter_arrives_responsive_with_every_variable_filled(
    page: Page, mailapp_server: RunningApp, chromium_browser: Browser, screenshot
) -> None:
    token = mailapp_server.flask("tokens", "create", ADMIN_EMAIL, "--name", "visual").strip().splitlines()[-1]
    readers = _api(mailapp_server, token, "POST", "/lists", {"name": "Visual readers"})
    _api(mailapp_server, token, "POST", "/subscribers",
         {"email": READER, "name": "Robin Reader", "list_ids": [readers["id"]]})

    page.goto(mailapp_server.url("/layouts/"))
    page.get_by_test_id("starter-letter").click()
    canvas = page.frame_locator(".gjs-frame")
    expect(canvas.locator("body")).to_contain_text("{{ message }}", timeout=30_000)
    screenshot(page, "90-visual-editor-starter")

    # Variable blocks added (the starter already has the message and the unsubscribe link).
    page.get_by_label("Name", exact=True).fill(LAYOUT_NAME)
    page.locator(".gjs-pn-btn.fa-th-large").first.click()
    expect(page.locator(".gjs-block[data-testid=var-unsubscribe]")).to_be_visible()
    _add_block(page, "var-subject")
    _add_block(page, "var-email")
    expect(canvas.locator("body")).to_contain_text("{{ campaign.subject }}")

    # An image, uploaded through the editor's image manager to mailapp, placed with the editor's API.
    page.evaluate("() => { window.mailappEditor.AssetManager.open(); }")
    page.locator(".gjs-am-file-uploader input[type=file]").set_input_files(
        files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}]
    )
    image_url = page.locator(".gjs-am-assets .gjs-am-asset-image").first
    expect(image_url).to_be_visible()
    src = page.evaluate("() => window.mailappEditor.AssetManager.getAll().at(-1).get('src')")
    assert re.fullmatch(re.escape(mailapp_server.base_url) + r"/media/\d+-[0-9a-f]{64}\.png", src), src
    page.evaluate("() => { window.mailappEditor.Modal.close(); }")
    page.evaluate(
        """src => { window.mailappEditor.getWrapper().findType('mj-column')[0]
                    .append(`<mj-image src="${src}" alt="A dot" width="120px"></mj-image>`); }""",
        src,
    )
    screenshot(page, "91-visual-editor-built")

    page.get_by_test_id("save-layout").click()
    expect(page.get_by_text(f"Layout '{LAYOUT_NAME}' created.")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("layout-warning")).to_have_count(0)
    layout_id = int(re.search(r"/layouts/(\d+)/visual", page.url).group(1))

    campaign = _api(mailapp_server, token, "POST", "/campaigns", {
        "name": "Visual news", "subject": "Hello {{ subscriber.name }}",
        "from_name": "Acme", "from_email": "news@acme.example", "layout_id": layout_id,
        "list_ids": [readers["id"]], "message": "A line long enough to wrap on a narrow phone.",
        "track_opens": False, "track_clicks": False,
    })
    page.goto(mailapp_server.url(f"/campaigns/{campaign['id']}"))
    page.get_by_label("Send a test to").fill(TESTER)
    page.get_by_label("Render as subscriber (email, optional)").fill(READER)
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_text(f"Test sent to {TESTER}.")).to_be_visible()
    html = _wait_for_mail(mailapp_server, TESTER).html()

    assert "{{" not in html, "a variable was left unfilled"
    assert "{%" not in html, "a template tag was left in"
    assert TESTER in html, "the recipient's email is missing"
    assert "Robin Reader" in html
    assert "A line long enough to wrap" in html
    unsubscribe = re.search(r'href="([^"]*)"[^>]*>\s*Unsubscribe', html)
    assert unsubscribe, "no unsubscribe link"
    assert unsubscribe.group(1).startswith(mailapp_server.base_url + "/u/"), unsubscribe.group(1)
    assert src in html, "the uploaded image is not in the message"
    with urllib.request.urlopen(src, timeout=10) as response:  # noqa: S310 - the app under test, on loopback
        assert response.read() == PNG
        assert response.headers["Content-Type"] == "image/png"
        assert "max-age=31536000" in response.headers["Cache-Control"]

    context = chromium_browser.new_context(viewport=PHONE)
    try:
        reader = context.new_page()
        reader.set_content(html)
        assert reader.evaluate(NO_SIDEWAYS_SCROLL), "the message scrolls sideways on a phone"
        screenshot(reader, "92-visual-editor-message-phone")
    finally:
        context.close()


@pytest.mark.parametrize("starter", STARTERS, ids=lambda starter: starter.key)
def test_every_starter_renders_without_sideways_scrolling_on_desktop_and_phone(
    chromium_browser: Browser, starter: Starter, screenshot
) -> None:
    # Compiled and validated as on save, then rendered as sent (CSS inlined) for the sample subscriber.
    html, variables = compile_and_validate(starter.source())
    assert "unsubscribe_url" in variables
    with limits.render_limits(limits.RenderLimits()):
        rendered = templating.render_layout_preview(html, templating.SAMPLE_SUBSCRIBER)
    assert "{{" not in rendered
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = chromium_browser.new_context(viewport=viewport)
        try:
            page = context.new_page()
            page.set_content(rendered)
            width = viewport["width"]
            assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{starter.key} scrolls sideways at {width} px"
            screenshot(page, f"93-starter-{starter.key}-{name}")
        finally:
            context.close()


# The widest element past the window's right edge, for the failure message.
WIDEST_OVERFLOW = """() => { let widest = null;
  for (const element of document.querySelectorAll('body *')) {
    const right = element.getBoundingClientRect().right;
    if (right > window.innerWidth && (!widest || right > widest.right)) {
      widest = {right, tag: element.tagName, id: element.id, cls: String(element.className).slice(0, 80)};
    }
  }
  return widest; }"""


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, PHONE], ids=["desktop-1280", "phone"])
def test_the_visual_editor_page_fits_the_window_without_sideways_scrolling(
    page: Page, mailapp_server: RunningApp, viewport, screenshot
) -> None:
    page.set_viewport_size(viewport)
    page.goto(mailapp_server.url("/layouts/new/visual?starter=newsletter"))
    expect(page.frame_locator(".gjs-frame").locator("body")).to_contain_text("{{ message }}", timeout=30_000)
    fits = page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
    screenshot(page, f"94-visual-editor-{viewport['width']}")
    width = viewport["width"]
    assert fits, f"the editor page scrolls sideways at {width} px: {page.evaluate(WIDEST_OVERFLOW)}"
