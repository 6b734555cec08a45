"""Line charts as SVG, drawn on the server: no chart library, nothing to load in the browser.

A chart has one or more series of (time, value) points over a period and optional bands, horizontal
stripes for ranges such as an alert range or a reference interval. The SVG scales to its container
(viewBox), has a title and description for screen readers, and every page that shows a chart also shows
the numbers in a table.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from kjerne.web.fmt import OSLO, number


@dataclass(slots=True)
class Series:
    label: str
    points: list[tuple[dt.datetime, float]]
    css: str = "s1"
    flagged: set[int] = field(default_factory=set)  # indexes of points outside their range


@dataclass(slots=True)
class Band:
    low: float | None  # None: from the bottom of the chart
    high: float | None  # None: to the top
    label: str
    css: str = "band-alert"


W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 36


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _domain(series: list[Series], bands: list[Band]) -> tuple[float, float]:
    values = [v for s in series for _, v in s.points]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    for b in bands:
        for edge in (b.low, b.high):
            # Show a threshold when it is near the data, so a band is visible where it matters.
            if edge is not None and lo - (hi - lo or abs(hi) or 1) <= edge <= hi + (hi - lo or abs(hi) or 1):
                lo, hi = min(lo, edge), max(hi, edge)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1.0)
    return lo - pad, hi + pad


def _time_ticks(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, str]]:
    span = (end - start).days
    local_start = start.astimezone(OSLO)
    ticks: list[tuple[dt.datetime, str]] = []
    if span <= 10:
        day = local_start.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
        while day < end:
            ticks.append((day, day.strftime("%d.%m")))
            day += dt.timedelta(days=1 if span <= 7 else 2)
        return ticks
    if span <= 120:
        step = 7 if span <= 60 else 14
        day = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
        day += dt.timedelta(days=(7 - day.weekday()) % 7)
        while day < end:
            ticks.append((day, day.strftime("%d.%m")))
            day += dt.timedelta(days=step)
        return ticks
    months = max(1, round(span / 30 / 6))
    year, month = local_start.year, local_start.month + 1
    while True:
        if month > 12:
            year, month = year + 1, month - 12
        moment = dt.datetime(year, month, 1, tzinfo=OSLO)
        if moment >= end:
            break
        ticks.append((moment, moment.strftime("%m.%y")))
        month += months
    return ticks


def line_chart(
    title: str,
    description: str,
    series: list[Series],
    *,
    start: dt.datetime,
    end: dt.datetime,
    bands: list[Band] | None = None,
    unit: str = "",
    chart_id: str = "chart",
) -> Markup:
    bands = bands or []
    lo, hi = _domain(series, bands)
    t0, t1 = start.timestamp(), max(end.timestamp(), start.timestamp() + 1)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(moment: dt.datetime) -> float:
        return LEFT + (moment.timestamp() - t0) / (t1 - t0) * pw

    def y(value: float) -> float:
        return TOP + (hi - value) / (hi - lo) * ph

    out: list[str] = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(description)}</desc>',
    ]
    for b in bands:
        top = y(min(b.high, hi)) if b.high is not None else TOP
        bottom = y(max(b.low, lo)) if b.low is not None else TOP + ph
        if bottom - top <= 0.5:
            continue
        out.append(
            f'<rect class="{escape(b.css)}" x="{LEFT}" y="{top:.1f}" width="{pw}" height="{bottom - top:.1f}">'
            f"<title>{escape(b.label)}</title></rect>"
        )
    for v in nice_ticks(lo, hi):
        yy = y(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + pw}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{number(v)}</text>')
    for moment, label in _time_ticks(start, end):
        xx = x(moment)
        out.append(f'<line class="grid" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + ph}"/>')
        out.append(f'<text class="tick" x="{xx:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/>')
    if unit:
        out.append(f'<text class="unit" x="4" y="{TOP + 10}">{escape(unit)}</text>')
    for s in series:
        pts = sorted(s.points)
        if len(pts) > 1:
            path = " ".join(f"{x(m):.1f},{y(v):.1f}" for m, v in pts)
            out.append(f'<polyline class="line {escape(s.css)}" points="{path}"/>')
        if len(pts) <= 400:
            for i, (m, v) in enumerate(s.points):
                cls = "pt flagged" if i in s.flagged else "pt"
                label = f"{s.label}: {number(v)} {unit} ({m.astimezone(OSLO):%d.%m.%Y %H:%M})"
                radius = 4 if i in s.flagged else 3
                out.append(
                    f'<circle class="{cls} {escape(s.css)}" cx="{x(m):.1f}" cy="{y(v):.1f}" r="{radius}">'
                    f"<title>{escape(label)}</title></circle>"
                )
    out.append("</svg>")
    return Markup("".join(out))
