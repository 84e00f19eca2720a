"""Counts read as English ("1 unique click"), and the SVG charts keep every label inside the picture
and a sensible scale whatever the amount of data."""

from __future__ import annotations

import re

import pytest

from mailapp.reports import charts
from mailapp.wording import plural

pytestmark = pytest.mark.backend_free


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 unique clicks"), (1, "1 unique click"), (2, "2 unique clicks"), (12345, "12,345 unique clicks")],
)
def test_plural_agrees_with_the_count(count, expected):
    assert plural(count, "unique click") == expected


def test_plural_takes_an_irregular_plural():
    assert plural(1, "failed delivery", "failed deliveries") == "1 failed delivery"
    assert plural(3, "failed delivery", "failed deliveries") == "3 failed deliveries"


def _text_extents(svg: str) -> list[tuple[float, str, str]]:
    """(x, anchor, text) of every <text> label, its <title> aside."""
    found = []
    for attributes, body in re.findall(r"<text ([^>]*)>(.*?)</text>", svg):
        x = float(re.search(r'\bx="([\d.]+)"', attributes).group(1))
        anchor = "end" if 'text-anchor="end"' in attributes else "start"
        found.append((x, anchor, re.sub(r"<title>.*?</title>", "", body)))
    return found


def test_top_link_labels_and_values_stay_inside_the_chart():
    long_url = "https://example.com/" + "a-very-long-path/" * 8
    svg = str(charts.horizontal_bars(
        [(long_url, 123_456, 100_000), ("https://example.com/b", 3, 1)], title="Top links"
    ))
    for x, anchor, text in _text_extents(svg):
        if anchor == "start":
            assert x + charts.CHAR_WIDTH * len(text) <= charts.WIDTH, text
        else:
            assert x - charts.CHAR_WIDTH * len(text) >= 0, text
    assert "123,456 (100,000 unique)" in svg


def test_time_axis_labels_stay_inside_the_chart():
    labels = [f"03 Dec {hour:02d}:00" for hour in range(24)] * 2
    svg = str(charts.grouped_bars(labels, [charts.Series("clicks", "#000", [1] * 48, "click")], title="t"))
    for x, anchor, text in _text_extents(svg):
        if anchor == "start":
            assert x + charts.CHAR_WIDTH * len(text) <= charts.WIDTH, text


def test_one_hour_of_data_draws_narrow_bars_and_a_whole_number_axis():
    svg = str(charts.grouped_bars(
        ["03 Dec 14:00"], [charts.Series("clicks", "#000", [1], "click")], title="One hour"
    ))
    bars = re.findall(r'<rect [^>]*width="([\d.]+)"[^>]*><title>', svg)
    plot_width = charts.WIDTH - charts.MARGIN_LEFT - charts.MARGIN_RIGHT
    assert len(bars) == 1
    assert float(bars[0]) <= plot_width / charts.MIN_SLOTS
    assert [text for _, anchor, text in _text_extents(svg) if anchor == "end"] == ["0", "1"]
    assert "<title>03 Dec 14:00: 1 click</title>" in svg
