"""The plain-text part reads like a person wrote it: three real-looking layouts (a newsletter laid out
in tables with images, an announcement with buttons, a digest of many links) rendered to text and
compared with golden files in tests/data/text_part/ (<name>.html and <name>.txt), on both the fast
(skeleton) path and the reference path (Jinja and html2text for the one message)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailapp.sending import tokens
from mailapp.sending.render import CampaignRenderer, CampaignSource, Recipient, html_to_text

pytestmark = pytest.mark.backend_free

GOLDEN = Path(__file__).parent / "data" / "text_part"
LAYOUTS = ("newsletter", "announcement", "digest")
READER = Recipient(delivery_id=42, email="ann@example.com", name="Ann", subscriber_id=3)
MESSAGE = "Frost came early this year.\n\nHere is what to do."


def rendered_text(app, name: str, *, fast: bool) -> str:
    """The layout's text part for READER, with the recipient's own links written as placeholders, so
    the golden file does not depend on the secret key."""
    source = CampaignSource(
        id=7, name="November", subject="News", from_name="News", from_email="news@example.com", reply_to="",
        layout_html=(GOLDEN / f"{name}.html").read_text(), message=MESSAGE, track_opens=True,
        track_clicks=True,
    )
    renderer = CampaignRenderer(source, public_url=app.config["PUBLIC_URL"])
    assert renderer.skeleton is not None
    text = renderer.render(READER, fast=fast, strings=True).text
    binding = {"campaign_id": 7, "subscriber_id": 3}
    return (
        text.replace(tokens.unsubscribe_url(42, **binding), "<unsubscribe URL>")
        .replace(tokens.view_url(42, **binding), "<view-in-browser URL>")
    )


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("fast", [True, False], ids=["skeleton", "reference"])
def test_the_text_part_of_a_real_layout_matches_its_golden_file(app, name, fast) -> None:
    assert rendered_text(app, name, fast=fast) == (GOLDEN / f"{name}.txt").read_text()


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_text_part_has_no_markdown_noise_and_shows_real_addresses(app, name) -> None:
    text = rendered_text(app, name, fast=True)
    assert "|" not in text.replace(" | ", "")  # a separator the layout wrote is fine, table pipes are not
    assert "![" not in text
    assert "](" not in text
    assert "**" not in text
    assert "`" not in text
    assert not re.search(r"^\s*#", text, re.MULTILINE)
    assert not re.search(r"^\s*\* ", text, re.MULTILINE)  # lists are "- item"
    assert "/c/" not in text  # tracked links show the address they lead to
    assert "<unsubscribe URL>" in text
    assert "\n\n\n" not in text


def test_links_read_as_text_and_address() -> None:
    text = html_to_text(
        '<p><a href="https://example.com/a_(b)">Read more</a>, <a href="https://example.com/x">'
        'https://example.com/x</a>, <a href="mailto:tips@example.com">write to us</a>,'
        ' <a href="https://example.com/i"><img src="https://example.com/i.png" alt=""></a>'
        ' and <a href="#top">back to top</a>.</p>'
        "<ol><li>1. first</li><li>- second</li></ol><p>1. Not a list</p>"
    )
    assert text == (
        "Read more (https://example.com/a_(b)), https://example.com/x, write to us (tips@example.com),"
        " https://example.com/i and back to top.\n\n1. 1. first\n2. - second\n\n1. Not a list\n"
    )
