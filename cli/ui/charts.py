"""Line charts as geometry for inline SVG, drawn on the server: the pages need no JavaScript to show them.

A chart is a few series of points over an ordered x axis (versions, or drift runs). Each point may link somewhere
(its version page, its drift report), so the chart is navigable without a script. The templates turn the geometry
into `<svg>` markup, escaped like every other value; nothing here builds markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WIDTH = 640
HEIGHT = 200
PAD_LEFT = 48
PAD_RIGHT = 12
PAD_TOP = 12
PAD_BOTTOM = 28
MAX_SERIES_STYLES = 8  # series beyond this reuse the styles (ui.css: .s0 ... .s7)
X_TICKS = 8


@dataclass(frozen=True)
class Point:
    """One value, where it is drawn, what it says on hover (its SVG <title>) and where it links."""

    x: float
    y: float
    value: float
    label: str
    href: str | None = None


@dataclass
class Series:
    """One line: its name, its style slot, its points (a gap where a value is missing splits the path)."""

    name: str
    style: int
    points: list[Point] = field(default_factory=list)
    path: str = ""
    emphasis: bool = False


@dataclass
class Chart:
    """Everything the template draws: series, axis ticks and an optional threshold line."""

    title: str
    description: str
    width: int
    height: int
    series: list[Series]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str, str]]  # x, label, text-anchor
    threshold: tuple[float, str] | None = None
    left: int = PAD_LEFT
    right: int = WIDTH - PAD_RIGHT
    top: int = PAD_TOP
    bottom: int = HEIGHT - PAD_BOTTOM


def _nice_max(value: float) -> float:
    """A round upper bound for the y axis (1, 2 or 5 times a power of ten) at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _format(value: float) -> str:
    return f"{value:.3g}"


def line_chart(
    title: str,
    x_labels: list[str],
    series: dict[str, list[float | None]],
    *,
    hrefs: list[str | None] | None = None,
    threshold: float | None = None,
    emphasis: str | None = None,
    zero: bool = True,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """Lay out `series` (name -> one value or None per x label) over `x_labels`, left to right.

    `hrefs` gives each x position's link (every point at that position links there); `threshold` draws a dashed
    horizontal line; `emphasis` names the series drawn thicker (and last, on top). The y axis starts at 0 (or
    below, for a negative value) unless `zero` is False, when it spans the values.
    """
    values = [v for points in series.values() for v in points if v is not None and math.isfinite(v)]
    if threshold is not None:
        values.append(threshold)
    if zero or not values:
        low = min([0.0, *values])
        high = _nice_max(max(values, default=1.0))
    else:
        # Around the values: a metric that moves by 0.01 shows it (a y axis from 0 would flatten it).
        spread = max(values) - min(values) or abs(max(values)) * 0.1 or 1.0
        low, high = min(values) - spread * 0.15, max(values) + spread * 0.15
    if high <= low:
        high = low + 1.0
    left, right, top, bottom = PAD_LEFT, width - PAD_RIGHT, PAD_TOP, height - PAD_BOTTOM
    count = len(x_labels)

    def x_of(index: int) -> float:
        return left + (right - left) * (index / (count - 1) if count > 1 else 0.5)

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * (value - low) / (high - low)

    laid_out: list[Series] = []
    for number, (name, points) in enumerate(series.items()):
        line = Series(name=name, style=number % MAX_SERIES_STYLES, emphasis=name == emphasis)
        segments: list[str] = []
        pen_down = False
        for index, value in enumerate(points):
            if value is None or not math.isfinite(value):
                pen_down = False
                continue
            x, y = round(x_of(index), 1), round(y_of(value), 1)
            href = hrefs[index] if hrefs else None
            line.points.append(Point(x, y, value, f"{name} {_format(value)} at {x_labels[index]}", href))
            segments.append(f"{'L' if pen_down else 'M'}{x} {y}")
            pen_down = True
        line.path = " ".join(segments)
        laid_out.append(line)
    steps = 4
    y_ticks = [(round(y_of(low + (high - low) * i / steps), 1), _format(low + (high - low) * i / steps)) for i in
               range(steps + 1)]  # fmt: skip
    every = max(1, math.ceil(count / X_TICKS))
    x_ticks = [(round(x_of(i), 1), x_labels[i], "middle") for i in range(0, count, every)]
    if count and (count - 1) % every:
        if len(x_ticks) > 1 and x_of(count - 1) - x_ticks[-1][0] < (right - left) / X_TICKS:
            x_ticks.pop()  # too close to the last regular tick to label both
        x_ticks.append((round(x_of(count - 1), 1), x_labels[-1], "middle"))
    if len(x_ticks) > 1:  # the outermost labels stay inside the drawing
        x_ticks[0] = (x_ticks[0][0], x_ticks[0][1], "start")
        x_ticks[-1] = (x_ticks[-1][0], x_ticks[-1][1], "end")
    laid_out.sort(key=lambda line: line.emphasis)  # the emphasised series is drawn last, on top
    names = ", ".join(series)
    description = f"{names} over {count} point(s), from {x_labels[0]} to {x_labels[-1]}" if count else "no data"
    return Chart(
        title=title,
        description=description,
        width=width,
        height=height,
        series=laid_out,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        threshold=(round(y_of(threshold), 1), f"threshold {_format(threshold)}") if threshold is not None else None,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
    )
