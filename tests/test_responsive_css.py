"""CSS inlining keeps what cannot be inlined: at-rules (`@media`, `@font-face`, `@supports`) stay in a
<style> block in <head>, so responsive layouts still adapt on phones, while plain rules are inlined.
The browser check of the same layout at phone width is tests/e2e/test_responsive_mail.py."""

from __future__ import annotations

import re

import pytest

from mailapp.sending import templating

pytestmark = pytest.mark.backend_free

RESPONSIVE_LAYOUT = """<!doctype html>
<html><head><meta charset="utf-8">
<style>
  .wrapper { width: 600px; margin: 0 auto; }
  td { padding: 12px; }
  @media (max-width: 600px) { .wrapper { width: 100% !important; } }
  @font-face { font-family: Brand; src: url(https://fonts.example.com/brand.woff2); }
  @supports (display: grid) { .wrapper { display: block; } }
</style></head>
<body><table class="wrapper">{% for n in range(2) %}<tr><td>Row {{ n }}</td></tr>{% endfor %}</table>
<p>{{ subscriber.name }}</p></body></html>"""


def _style_blocks(html: str) -> list[str]:
    return re.findall(r"<style>(.*?)</style>", html, re.DOTALL)


def test_media_queries_survive_inlining_in_a_style_block_in_head() -> None:
    inlined = templating.inline_css(RESPONSIVE_LAYOUT)
    [kept] = _style_blocks(inlined)
    assert "@media (max-width: 600px)" in kept
    assert ".wrapper { width: 100% !important; }" in kept
    assert "@font-face" in kept
    assert "@supports (display: grid)" in kept
    head = inlined[inlined.index("<head>"):inlined.index("</head>")]
    assert "@media (max-width: 600px)" in head


def test_plain_rules_are_still_inlined_and_not_kept_in_the_style_block() -> None:
    inlined = templating.inline_css(RESPONSIVE_LAYOUT)
    [kept] = _style_blocks(inlined)
    assert 'class="wrapper" style="width: 600px;margin: 0 auto;"' in inlined.replace("; ", ";")
    assert '<td style="padding: 12px;">' in inlined
    assert "td { padding: 12px; }" not in kept
    assert "margin: 0 auto" not in kept


def test_a_layout_with_media_queries_renders_with_its_jinja_tags_in_place() -> None:
    html = templating.compile_template(templating.inline_css(RESPONSIVE_LAYOUT)).render(
        templating.sample_context()
    )
    assert html.count('<td style="padding: 12px;">Row ') == 2
    assert "<p>Jane Doe</p>" in html
    assert "@media (max-width: 600px)" in html


def test_an_expression_inside_a_media_query_is_kept_and_rendered() -> None:
    source = (
        "<html><head><style>p { margin: 0; }"
        " @media (max-width: 480px) { p { color: {{ subscriber.name }}; } }"
        "</style></head><body><p>Hi</p></body></html>"
    )
    inlined = templating.inline_css(source)
    assert "@media (max-width: 480px) { p { color: {{ subscriber.name }}; } }" in inlined
    html = templating.compile_template(inlined).render(templating.sample_context())
    assert "p { color: Jane Doe; }" in html
    assert '<p style="margin: 0;">Hi</p>' in html


def test_a_layout_without_at_rules_keeps_no_style_block() -> None:
    inlined = templating.inline_css(
        "<html><head><style>p { margin: 0; }</style></head><body><p>x</p></body></html>"
    )
    assert "<style" not in inlined
    assert '<p style="margin: 0;">x</p>' in inlined
