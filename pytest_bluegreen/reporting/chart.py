"""Charts of a deploy as inline SVG: self-contained in the HTML report, no plotting library.

Each mark carries its value in ``data-*`` attributes, so a test reads back what was drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

WIDTH: Final = 760
LEFT: Final = 56  # room for the y-axis labels
RIGHT: Final = 16
PANEL: Final = 120  # height of one panel
GAP: Final = 34
COLOURS: Final = {
    "requests": "#4c78a8",
    "failures": "#e45756",
    "p50": "#54a24b",
    "p99": "#b279a2",
    "switch": "#1f77b4",
    "rollback": "#f58518",
}
OUTCOME_COLOURS: Final = {
    "passed": "#54a24b",
    "failed": "#e45756",
    "error": "#e45756",
    "skipped": "#bab0ac",
}


def _nice_max(value: float) -> float:
    """The axis top: ``value`` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1.0
    power = 1.0
    while power * 10 < value:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-family="sans-serif">{escape(text)}</text>'
    )


def load_chart(
    series: Sequence[Mapping[str, float]],
    switch_at_s: float,
    rollback_at_s: float | None = None,
) -> str:
    """Requests and failures per second (bars) over p50 and p99 latency (lines).

    The switch, and a rollback if there was one, are vertical lines across both panels.
    """
    seconds = max(len(series), 1)
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / seconds
    top1, top2 = 24, 24 + PANEL + GAP
    height = top2 + PANEL + 34

    def x_of(t: float) -> float:
        return LEFT + t * slot

    requests_max = _nice_max(max((row["requests"] for row in series), default=0))
    latency_max = _nice_max(max((row["p99_ms"] for row in series), default=0))

    def y_of(ms: float) -> float:
        return top2 + PANEL - PANEL * ms / latency_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bluegreen-load-chart" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">',
        "<title>Requests, failures and latency per second across the switch</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    for top, label, top_value in (
        (top1, "requests/s", requests_max),
        (top2, "latency ms", latency_max),
    ):
        parts.append(
            f'<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" '
            'stroke="#ccc"/>'
        )
        parts.append(_text(LEFT - 4, top + 10, f"{top_value:g}", "end"))
        parts.append(_text(LEFT - 4, top + PANEL, "0", "end"))
        parts.append(_text(4, top - 8, label))
    for row in series:
        t = row["t"]
        for key, value in (("requests", row["requests"]), ("failures", row["failures"])):
            bar = PANEL * value / requests_max
            width = slot * (0.8 if key == "requests" else 0.4)
            parts.append(
                f'<rect class="{key}" data-t="{t:g}" data-value="{value:g}" '
                f'x="{x_of(t) + slot * 0.1:.1f}" y="{top1 + PANEL - bar:.1f}" '
                f'width="{width:.1f}" height="{bar:.1f}" fill="{COLOURS[key]}"/>'
            )
    for key in ("p50", "p99"):
        points = " ".join(
            f"{x_of(row['t'] + 0.5):.1f},{y_of(row[f'{key}_ms']):.1f}"
            for row in series
            if row["requests"]
        )
        values = " ".join(f"{row[f'{key}_ms']:g}" for row in series if row["requests"])
        parts.append(
            f'<polyline class="{key}" data-values="{values}" points="{points}" fill="none" '
            f'stroke="{COLOURS[key]}" stroke-width="2"/>'
        )
    for key, at in (("switch", switch_at_s), ("rollback", rollback_at_s)):
        if at is None:
            continue
        x = x_of(at)
        parts.append(
            f'<line class="{key}" data-t="{at:g}" x1="{x:.1f}" y1="{top1 - 4}" x2="{x:.1f}" '
            f'y2="{top2 + PANEL}" stroke="{COLOURS[key]}" stroke-width="2" '
            'stroke-dasharray="5,3"/>'
        )
        parts.append(_text(x + 3, top1 + 8, f"{key} {at:.1f}s"))
    for t in range(0, seconds + 1, max(1, seconds // 10)):
        parts.append(_text(x_of(t), top2 + PANEL + 14, f"{t}s", "middle"))
    legend_y = height - 6
    for index, key in enumerate(("requests", "failures", "p50", "p99")):
        x = LEFT + index * 110
        parts.append(
            f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{COLOURS[key]}"/>'
        )
        parts.append(_text(x + 14, legend_y, key))
    parts.append("</svg>")
    return "\n".join(parts)


def stage_timeline(stages: Sequence[tuple[str, str, float]]) -> str:
    """One bar per stage ``(name, outcome, seconds)``, placed one after the other in time."""
    total = sum(seconds for _, _, seconds in stages) or 1.0
    row = 20
    label_width = 110
    plot_width = WIDTH - label_width - RIGHT - 60
    height = row * len(stages) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bluegreen-timeline" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">',
        "<title>Stages of the deploy, in order, by time</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    start = 0.0
    for index, (name, outcome, seconds) in enumerate(stages):
        y = 4 + index * row
        x = label_width + plot_width * start / total
        width = max(plot_width * seconds / total, 1.5)
        parts.append(_text(label_width - 6, y + 13, name, "end"))
        parts.append(
            f'<rect class="stage" data-stage="{escape(name)}" data-outcome="{escape(outcome)}" '
            f'data-start="{start:.3f}" data-seconds="{seconds:.3f}" x="{x:.1f}" y="{y + 2}" '
            f'width="{width:.1f}" height="{row - 6}" '
            f'fill="{OUTCOME_COLOURS.get(outcome, "#bab0ac")}"/>'
        )
        parts.append(_text(x + width + 4, y + 13, f"{seconds:.1f}s"))
        start += seconds
    parts.append(_text(label_width, height - 4, f"0 - {total:.1f}s", "start"))
    parts.append("</svg>")
    return "\n".join(parts)
