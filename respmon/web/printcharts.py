"""Small charts drawn on the server as inline SVG, for the printed report.

A PDF cannot run the page's scripts, so the report draws its trends here: one time axis (the report's
period), lines, points or bars, dashed guide lines for thresholds, a fitted trend line. Colours are SVG
attributes (the CSP forbids inline style, not presentation attributes); every label is escaped.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

WIDTH, HEIGHT = 680, 180
LEFT, RIGHT, TOP, BOTTOM = 46, 26, 22, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
COLOURS = ("#0b4f8a", "#b34700", "#1d6b2f", "#6a1b9a")  # AA contrast on white, told apart in greyscale by shape

Mark = Literal["line", "points", "bars"]


@dataclass(frozen=True)
class Series:
    """One measure over time: `points` are (day, value); None values are gaps."""

    label: str
    points: Sequence[tuple[date, float | None]]
    mark: Mark = "line"


@dataclass(frozen=True)
class Guide:
    """A horizontal line at a threshold (a rule's, or a usage target), labelled."""

    value: float
    label: str


@dataclass(frozen=True)
class Trend:
    """A fitted straight line from `start` to `end` (a Theil–Sen fit), drawn dashed."""

    start: tuple[date, float]
    end: tuple[date, float]
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    first: date
    last: date
    series: Sequence[Series]
    guides: Sequence[Guide] = field(default_factory=tuple)
    trends: Sequence[Trend] = field(default_factory=tuple)
    floor: float | None = None  # the y axis starts here at most (0 for hours, counts)


def _nice_step(span: float, ticks: int = 4) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` ticks over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _y_range(chart: Chart) -> tuple[float, float, float]:
    values = [v for s in chart.series for _, v in s.points if v is not None and math.isfinite(v)]
    values += [g.value for g in chart.guides] + [t.start[1] for t in chart.trends] + [t.end[1] for t in chart.trends]
    if chart.floor is not None:
        values.append(chart.floor)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if chart.floor is not None:
        low = min(low, chart.floor)
    step = _nice_step(high - low)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    if high <= low:
        high = low + step
    return low, high, step


class _Axes:
    """Day and value to SVG coordinates, rounded to a tenth of a pixel (keeps the SVG small)."""

    def __init__(self, first: date, last: date, low: float, high: float) -> None:
        self.first, self.days = first, max((last - first).days, 1)
        self.low, self.span = low, high - low

    def x(self, day: date) -> float:
        return round(LEFT + PLOT_W * (day - self.first).days / self.days, 1)

    def y(self, value: float) -> float:
        return round(TOP + PLOT_H * (1 - (value - self.low) / self.span), 1)


def _month_ticks(first: date, last: date) -> list[date]:
    """First days of months within the period, thinned to at most 8 labels."""
    months, day = [], date(first.year, first.month, 1)
    while day <= last:
        if day >= first:
            months.append(day)
        day = (day + timedelta(days=32)).replace(day=1)
    stride = max(1, math.ceil(len(months) / 8))
    return months[::stride] or [first]


def _frame(chart: Chart, axes: _Axes, low: float, high: float, step: float) -> list[str]:
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#c8c8c8"/>']
    ticks = round((high - low) / step)
    for i in range(ticks + 1):
        value = low + i * step
        y = axes.y(value)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{y}" y2="{y}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 4}" text-anchor="end" font-size="11" fill="#333">'
                   f'{value:g}</text>')
    for month in _month_ticks(chart.first, chart.last):
        x = axes.x(month)
        out.append(f'<line x1="{x}" x2="{x}" y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H + 4}" stroke="#777"/>')
        out.append(f'<text x="{x}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" fill="#333">'
                   f'{month:%b %Y}</text>')
    return out


def _runs(points: Sequence[tuple[date, float | None]]) -> list[list[tuple[date, float]]]:
    """Consecutive non-missing points: a line is broken where a value is missing."""
    runs: list[list[tuple[date, float]]] = [[]]
    for day, value in sorted(points, key=lambda p: p[0]):
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((day, value))
    return [r for r in runs if r]


def _series(s: Series, axes: _Axes, colour: str, low: float) -> list[str]:
    if s.mark == "bars":
        width = max(0.6, round(PLOT_W / axes.days * 0.8, 1))
        base = axes.y(low)
        return [f'<rect x="{round(axes.x(d) - width / 2, 1)}" y="{axes.y(v)}" width="{width}"'
                f' height="{round(base - axes.y(v), 1)}" fill="{colour}"/>'
                for run in _runs(s.points) for d, v in run]
    if s.mark == "points":
        return [f'<circle cx="{axes.x(d)}" cy="{axes.y(v)}" r="2.6" fill="{colour}"/>'
                for run in _runs(s.points) for d, v in run]
    out = []
    for run in _runs(s.points):
        if len(run) == 1:
            out.append(f'<circle cx="{axes.x(run[0][0])}" cy="{axes.y(run[0][1])}" r="2" fill="{colour}"/>')
        else:
            coords = " ".join(f"{axes.x(d)},{axes.y(v)}" for d, v in run)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.4"/>')
    return out


def _guides(chart: Chart, axes: _Axes) -> list[str]:
    out = []
    for guide in chart.guides:
        y = axes.y(guide.value)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{y}" y2="{y}" stroke="#a30000"'
                   ' stroke-dasharray="5 3"/>')
        out.append(f'<text x="{LEFT + PLOT_W - 4}" y="{y - 3}" text-anchor="end" font-size="10" fill="#a30000">'
                   f'{escape(guide.label)}</text>')
    for trend in chart.trends:
        (d0, v0), (d1, v1) = trend.start, trend.end
        out.append(f'<line x1="{axes.x(d0)}" y1="{axes.y(v0)}" x2="{axes.x(d1)}" y2="{axes.y(v1)}" stroke="#111"'
                   ' stroke-width="1.2" stroke-dasharray="2 2"/>')
    return out


def _legend(chart: Chart) -> list[str]:
    items = [(s.label, COLOURS[i % len(COLOURS)]) for i, s in enumerate(chart.series)]
    items += [(t.label, "#111") for t in chart.trends]
    out: list[str] = []
    x = LEFT + 6.0
    for label, colour in items:
        out.append(f'<rect x="{x}" y="{TOP - 17}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14}" y="{TOP - 8}" font-size="11" fill="#111">{escape(label)}</text>')
        x += 24 + 6.5 * len(label)
    return out


def svg(chart: Chart) -> Markup:
    """The chart as an inline `<svg>` (role img, titled), sized by its viewBox to the page's width."""
    low, high, step = _y_range(chart)
    axes = _Axes(chart.first, chart.last, low, high)
    label = quoteattr(f"{chart.title} ({chart.unit})")
    head = f'<svg class="print-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label={label}'
    parts = [head + ' xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(chart.title)} ({escape(chart.unit)})</title>", *_frame(chart, axes, low, high, step)]
    for i, series in enumerate(chart.series):
        parts += _series(series, axes, COLOURS[i % len(COLOURS)], low)
    parts += _guides(chart, axes) + _legend(chart)
    parts.append("</svg>")
    return Markup("".join(parts))  # every text above is escaped
