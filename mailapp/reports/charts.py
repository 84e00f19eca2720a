"""Server-side SVG charts: no JavaScript library, no CDN, nothing the CSP has to allow. Each function
returns Markup to drop into a template; every label is escaped and every bar or point has a <title>
that browsers show on hover and screen readers read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 760
HEIGHT = 240
MARGIN_LEFT = 44
MARGIN_RIGHT = 12
MARGIN_TOP = 14
MARGIN_BOTTOM = 40


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[int]


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
        text = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
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
        slot = plot_width / count
        bar = max(slot * 0.8 / max(len(series), 1), 1.0)
        tick_every = tick_every or max(1, count // 12)
        for index, label in enumerate(labels):
            x0 = MARGIN_LEFT + index * slot + slot * 0.1
            for number, one in enumerate(series):
                value = one.values[index]
                height = plot_height * value / maximum
                x = x0 + number * bar
                y = MARGIN_TOP + plot_height - height
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                    f'fill="{one.color}"><title>{escape(label)}: {value:,} {escape(one.name)}</title></rect>'
                )
            if index % tick_every == 0:
                y = HEIGHT - MARGIN_BOTTOM + 14
                parts.append(f'<text x="{x0:.1f}" y="{y}" fill="#6c757d">{escape(label)}</text>')
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
    plot_width = WIDTH - label_width - 70
    maximum = max((value for _, value, _ in items), default=0) or 1
    parts = [_svg_open(title, height)]
    for index, (label, value, secondary) in enumerate(items):
        y = 5 + index * row_height
        shown = label if len(label) <= 48 else label[:45] + "…"
        width = plot_width * value / maximum
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end" fill="#212529">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_width}" y="{y + 4}" width="{max(width, 1):.1f}" height="16" fill="{color}">'
            f"<title>{escape(label)}: {value:,} clicks, {secondary:,} unique</title></rect>"
            f'<text x="{label_width + max(width, 1) + 6:.1f}" y="{y + 16}" fill="#6c757d">'
            f"{value:,} ({secondary:,} unique)</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated label is escaped above
