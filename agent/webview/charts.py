"""Charts as inline SVG, drawn here: no JavaScript, no library, so a page works from file:// offline.

Each function takes plain numbers and labels and returns one `<svg>` element; every mark carries a
`<title>` (the browser's tooltip) with its exact value. Colours are CSS variables of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Series", "Part", "BarRow", "Segment", "columns", "line", "bars", "timeline", "histogram"]

WIDTH = 720
PLOT_H = 150
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 26, 28


@dataclass(frozen=True)
class Series:
    """One stacked layer of a column chart: a value per column."""

    name: str
    values: Sequence[float]
    colour: str


@dataclass(frozen=True)
class Part:
    """One piece of a horizontal bar (e.g. the failed calls of one tool)."""

    name: str
    value: float
    colour: str


@dataclass(frozen=True)
class BarRow:
    """One horizontal bar: its label, its pieces, and the text shown after it."""

    label: str
    parts: Sequence[Part]
    note: str = ""


@dataclass(frozen=True)
class Segment:
    """A stretch of a timeline, from column `start` to `end` (exclusive)."""

    start: int
    end: int
    label: str
    colour: str


def _num(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _svg(chart_id: str, title: str, height: int, body: list[str]) -> str:
    head = (f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
            f'height="{height}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">')
    heading = f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>'
    return "".join([head, heading, *body, "</svg>"])


def _axis(top: float, fmt: str) -> list[str]:
    """The y axis from 0 to `top`, with the top value written beside it."""
    y0, y1 = TOP + PLOT_H, TOP
    return [
        f'<line class="axis" x1="{LEFT}" y1="{y0}" x2="{WIDTH - RIGHT}" y2="{y0}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{y1}" x2="{WIDTH - RIGHT}" y2="{y1}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{y0}" text-anchor="end">0</text>',
        f'<text class="tick" x="{LEFT - 6}" y="{y1 + 4}" text-anchor="end">{escape(fmt.format(top))}</text>',
    ]


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    out, x = [], WIDTH - RIGHT
    for name, colour in reversed(items):
        x -= 12 + 7 * len(name) + 14
        out.append(f'<rect x="{x}" y="7" width="10" height="10" style="fill:{colour}"/>'
                   f'<text class="legend" x="{x + 14}" y="16">{escape(name)}</text>')
    return out


def _x_labels(labels: Sequence[str], xs: Sequence[float], most: int = 20) -> list[str]:
    every = max(1, -(-len(labels) // most))
    y = TOP + PLOT_H + 16
    return [f'<text class="tick" x="{x:.1f}" y="{y}" text-anchor="middle">{escape(label)}</text>'
            for i, (label, x) in enumerate(zip(labels, xs)) if i % every == 0 or i == len(labels) - 1]


def columns(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Series], *,
            fmt: str = "{:,.0f}", most_labels: int = 20) -> str:
    """Stacked columns, one per label (a step), layers bottom-up in the order of `series`."""
    n = len(labels)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    top = max(totals, default=0) or 1
    slot = (WIDTH - LEFT - RIGHT) / max(n, 1)
    width = max(min(slot * 0.7, 40), 1)
    body = _axis(top, fmt) + _legend([(s.name, s.colour) for s in series])
    xs = []
    for i, label in enumerate(labels):
        x = LEFT + slot * i + (slot - width) / 2
        xs.append(x + width / 2)
        base = TOP + PLOT_H
        body.append(f'<g class="column" data-label="{escape(label)}">')
        for s in series:
            h = PLOT_H * s.values[i] / top
            base -= h
            body.append(f'<rect class="bar" x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" height="{h:.1f}" '
                        f'style="fill:{s.colour}"><title>{escape(label)}: {escape(s.name)} '
                        f'{escape(fmt.format(s.values[i]))}</title></rect>')
        body.append("</g>")
    return _svg(chart_id, title, TOP + PLOT_H + BOTTOM, body + _x_labels(labels, xs, most_labels))


def line(chart_id: str, title: str, labels: Sequence[str], values: Sequence[float], *,
         colour: str = "var(--accent)", fmt: str = "{:,.4f}") -> str:
    """A line with one marked point per label (e.g. cumulative cost after each step)."""
    n = len(values)
    top = max(values, default=0) or 1
    slot = (WIDTH - LEFT - RIGHT) / max(n, 1)
    pts = [(LEFT + slot * (i + 0.5), TOP + PLOT_H - PLOT_H * v / top) for i, v in enumerate(values)]
    body = _axis(top, fmt)
    if pts:
        body.append(f'<polyline class="line" style="stroke:{colour}" points="'
                    + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
    for (x, y), label, v in zip(pts, labels, values):
        body.append(f'<circle class="point" data-label="{escape(label)}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                    f'style="fill:{colour}"><title>{escape(label)}: {escape(fmt.format(v))}</title></circle>')
    return _svg(chart_id, title, TOP + PLOT_H + BOTTOM, body + _x_labels(labels, [p[0] for p in pts]))


def bars(chart_id: str, title: str, rows: Sequence[BarRow], *, scale: float | None = None) -> str:
    """Horizontal stacked bars, one row each, with a note (a count, a rate) after each bar."""
    row_h, label_w, note_w = 22, 190, 120
    top = scale or max((sum(p.value for p in r.parts) for r in rows), default=0) or 1
    span = WIDTH - label_w - note_w - RIGHT
    legend: dict[str, str] = {}
    body: list[str] = []
    for i, row in enumerate(rows):
        y = TOP + i * row_h
        body.append(f'<g class="row" data-label="{escape(row.label)}">'
                    f'<text class="tick" x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
                    f'{escape(_clip(row.label, 28))}<title>{escape(row.label)}</title></text>')
        x = float(label_w)
        for p in row.parts:
            legend.setdefault(p.name, p.colour)
            w = span * p.value / top
            body.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                        f'style="fill:{p.colour}"><title>{escape(row.label)}: {escape(p.name)} '
                        f'{_num(p.value)}</title></rect>')
            x += w
        body.append(f'<text class="tick" x="{x + 6:.1f}" y="{y + 15}">{escape(row.note)}</text></g>')
    height = TOP + len(rows) * row_h + 8
    return _svg(chart_id, title, height, _legend(list(legend.items())) + body)


def timeline(chart_id: str, title: str, segments: Sequence[Segment], total: int,
             labels: Sequence[str] | None = None) -> str:
    """Bands along the steps (e.g. the mode each model call was made in), ticked 1..total or by `labels`."""
    names = list(labels) if labels is not None else [str(i + 1) for i in range(total)]
    span = (WIDTH - LEFT - RIGHT) / max(total, 1)
    body: list[str] = [f'<line class="axis" x1="{LEFT}" y1="{TOP + 34}" x2="{WIDTH - RIGHT}" y2="{TOP + 34}"/>']
    for seg in segments:
        x, w = LEFT + span * seg.start, span * (seg.end - seg.start)
        body.append(f'<g class="segment"><rect class="bar" x="{x:.1f}" y="{TOP}" width="{max(w, 1):.1f}" height="30" '
                    f'style="fill:{seg.colour}"><title>{escape(seg.label)}: {escape(names[seg.start])}-{escape(names[seg.end - 1])}'
                    f'</title></rect><text class="band" x="{x + 4:.1f}" y="{TOP + 20}">'
                    f'{escape(_clip(seg.label, max(int(w / 7), 1)))}</text></g>')
    ticks = [f'<text class="tick" x="{LEFT + span * (i + 0.5):.1f}" y="{TOP + 48}" text-anchor="middle">{escape(names[i])}</text>'
             for i in range(total) if i % max(1, total // 20) == 0]
    return _svg(chart_id, title, TOP + 56, body + ticks)


def histogram(chart_id: str, title: str, values: Sequence[float], *, bins: int = 10,
              unit: str = "", colour: str = "var(--accent)") -> str:
    """How `values` spread: counts in equal-width bins from 0 to the largest."""
    high = max(values, default=0) or 1
    width = high / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v / width), bins - 1)] += 1
    labels = [f"≤{_num(width * (i + 1))}{unit}" for i in range(bins)]
    return columns(chart_id, title, labels, [Series("instances", counts, colour)], fmt="{:,.0f}", most_labels=5)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"
