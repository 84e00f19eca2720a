"""Server-side SVG charts: no JavaScript library, no CDN, nothing the CSP has to allow. Each function
returns Markup to drop into a template; every label is escaped and every bar or point has a <title>
that browsers show on hover and screen readers read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from mailapp.wording import plural

WIDTH = 760
HEIGHT = 240
MARGIN_LEFT = 44
MARGIN_RIGHT = 12
MARGIN_TOP = 14
MARGIN_BOTTOM = 40
# An upper bound on the width of one character at font-size 11 in the usual sans-serif faces: text
# placed from an estimate must never run past the viewBox, where it is cut off.
CHAR_WIDTH = 7.0
# A chart with fewer points than this keeps the bar width it would have with this many, so one hour
# of data is a few bars at the start of the axis, not three bars as wide as the chart.
MIN_SLOTS = 12


@dataclass(frozen=True)
class Series:
    name: str  # the legend: "human opens"
    color: str
    values: Sequence[int]
    singular: str  # a bar's hover title: "1 human open"


def _nice_ceiling(value: int) -> int:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least the value."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _svg_open(label: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="mailapp-chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="11">'
    )


def _y_axis(top: int, plot_height: int, maximum: int) -> list[str]:
    parts = []
    for fraction in (0, 0.5, 1):
        y = MARGIN_TOP + plot_height - fraction * plot_height
        value = maximum * fraction
        if value != int(value):
            continue  # counts are whole: an axis up to 1 has no "0.5" line
        text = f"{value:,.0f}"
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#dee2e6" stroke-width="1"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#6c757d">{text}</text>'
        )
    return parts


def grouped_bars(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    tick_every: int | None = None,
    marker_index: int | None = None,
    marker_label: str = "",
) -> Markup:
    """Vertical bars, one group per label, one bar per series; a dashed marker line may split the
    chart (hourly, then daily). Empty data gives an empty plot with its axes."""
    count = len(labels)
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    maximum = _nice_ceiling(max((max(s.values, default=0) for s in series), default=0))
    parts = [_svg_open(title), *_y_axis(MARGIN_TOP, plot_height, maximum)]
    if count:
        slot = plot_width / max(count, MIN_SLOTS)
        bar = max(slot * 0.8 / max(len(series), 1), 1.0)
        tick_every = tick_every or max(1, count // 12)
        for index, label in enumerate(labels):
            x0 = MARGIN_LEFT + index * slot + slot * 0.1
            for number, one in enumerate(series):
                value = one.values[index]
                height = plot_height * value / maximum
                x = x0 + number * bar
                y = MARGIN_TOP + plot_height - height
                hover = f"{label}: {plural(value, one.singular, one.name)}"
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                    f'fill="{one.color}"><title>{escape(hover)}</title></rect>'
                )
            if index % tick_every == 0:
                y = HEIGHT - MARGIN_BOTTOM + 14
                x_text = min(x0, WIDTH - CHAR_WIDTH * len(label))  # the last label stays inside
                parts.append(f'<text x="{x_text:.1f}" y="{y}" fill="#6c757d">{escape(label)}</text>')
        if marker_index is not None and 0 < marker_index < count:
            x = MARGIN_LEFT + marker_index * slot
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" y2="{MARGIN_TOP + plot_height}" '
                f'stroke="#6c757d" stroke-dasharray="4 3"/>'
                f'<text x="{x + 4:.1f}" y="{MARGIN_TOP + 10}" fill="#6c757d">{escape(marker_label)}</text>'
            )
    legend_x = MARGIN_LEFT
    for one in series:
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" fill="{one.color}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" fill="#212529">{escape(one.name)}</text>'
        )
        legend_x += 24 + 7 * len(one.name)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated label is escaped above


def horizontal_bars(items: Sequence[tuple[str, int, int]], *, title: str, color: str = "#0d6efd") -> Markup:
    """One bar per (label, value, secondary value) row, largest first as given: for top links."""
    row_height = 26
    height = max(len(items), 1) * row_height + 10
    label_width = 300
    label_chars = int((label_width - 8) / CHAR_WIDTH)
    values_text = [f"{value:,} ({secondary:,} unique)" for _, value, secondary in items]
    # The value is written after its bar: the longest bar leaves room for the longest value.
    plot_width = WIDTH - label_width - 6 - CHAR_WIDTH * max(map(len, values_text), default=0) - MARGIN_RIGHT
    maximum = max((value for _, value, _ in items), default=0) or 1
    parts = [_svg_open(title, height)]
    for index, (label, value, secondary) in enumerate(items):
        y = 5 + index * row_height
        shown = label if len(label) <= label_chars else label[: label_chars - 1] + "…"
        width = plot_width * value / maximum
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" fill="#212529">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_width}" y="{y + 4}" width="{max(width, 1):.1f}" height="16" fill="{color}">'
            f"<title>{escape(label)}: {plural(value, 'click')}, {secondary:,} unique</title></rect>"
            f'<text x="{label_width + max(width, 1) + 6:.1f}" y="{y + 16}" fill="#6c757d">'
            f"{values_text[index]}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated label is escaped above
