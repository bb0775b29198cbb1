"""Inline SVG charts for the report (no JavaScript, no CDN, no plotting library).

Every data mark carries class "mark" plus its kind, data-* attributes with what it shows, and a
<title> tooltip, so a test (or a reader's devtools) can check the rendered page against the data.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


@dataclass(frozen=True)
class Interval:
    """A value with its 95% interval, for one mark."""

    value: float
    lo: float
    hi: float


@dataclass
class Frame:
    """Plot area inside an SVG of width x height with margins; y maps [y0, y1] to the plot's height."""

    width: int
    height: int
    left: int = 56
    right: int = 16
    top: int = 16
    bottom: int = 64
    y0: float = 0.0
    y1: float = 1.0

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    def y(self, v: float) -> float:
        v = min(max(v, self.y0), self.y1)
        return self.top + self.plot_h * (1 - (v - self.y0) / (self.y1 - self.y0))

    def y_axis(self, label: str, ticks: list[float], fmt: str = "{:.1f}", shown=None) -> str:
        """`shown(t)`: the text of tick t (default fmt.format(t)), e.g. 10**t on a log axis."""
        parts = [(f'<line class="axis" x1="{self.left}" y1="{self.top}" x2="{self.left}" '
                  f'y2="{self.top + self.plot_h}" stroke="#333"/>')]
        for t in ticks:
            y = self.y(t)
            parts.append(f'<line class="grid" x1="{self.left}" y1="{y:.1f}" x2="{self.left + self.plot_w}" '
                         f'y2="{y:.1f}" stroke="#e5e5e5"/>')
            parts.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                         f"{shown(t) if shown else fmt.format(t)}</text>")
        parts.append(f'<text transform="translate(14,{self.top + self.plot_h / 2:.0f}) rotate(-90)" '
                     f'text-anchor="middle" font-size="12">{_e(label)}</text>')
        return "".join(parts)


def _svg(chart_id: str, frame: Frame, body: str, title: str) -> str:
    return (f'<svg class="chart" id="{_e(chart_id)}" role="img" aria-label="{_e(title)}" width="{frame.width}" '
            f'height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}" font-family="system-ui,sans-serif">'
            f"<title>{_e(title)}</title>{body}</svg>")


def _errbar(x: float, frame: Frame, iv: Interval, cap: float = 4.0) -> str:
    y_lo, y_hi = frame.y(iv.lo), frame.y(iv.hi)
    return (f'<g class="ci"><line x1="{x:.1f}" y1="{y_lo:.1f}" x2="{x:.1f}" y2="{y_hi:.1f}" stroke="#222"/>'
            f'<line x1="{x - cap:.1f}" y1="{y_lo:.1f}" x2="{x + cap:.1f}" y2="{y_lo:.1f}" stroke="#222"/>'
            f'<line x1="{x - cap:.1f}" y1="{y_hi:.1f}" x2="{x + cap:.1f}" y2="{y_hi:.1f}" stroke="#222"/></g>')


def _legend(series: list[str], x: float, y: float) -> str:
    parts = ['<g class="legend">']
    for i, name in enumerate(series):
        yy = y + 16 * i
        parts.append(f'<rect x="{x:.0f}" y="{yy - 9:.0f}" width="10" height="10" fill="{color(i)}"/>'
                     f'<text x="{x + 14:.0f}" y="{yy:.0f}" font-size="11">{_e(name)}</text>')
    parts.append("</g>")
    return "".join(parts)


def grouped_bars(chart_id: str, title: str, groups: list[str], series: list[str],
                 values: dict[tuple[str, str], Interval], y_label: str = "success rate") -> str:
    """Bars of values[(series, group)] grouped by `groups` (x), one color per series, with 95% CIs.

    Missing (series, group) pairs draw no bar.
    """
    legend_w = 20 + 7 * max((len(s) for s in series), default=0)
    group_w = max(60, 18 * len(series) + 16)
    frame = Frame(width=int(56 + group_w * len(groups) + legend_w + 24), height=320)
    bar_w = (group_w - 16) / max(len(series), 1)
    parts = [frame.y_axis(y_label, [0, 0.25, 0.5, 0.75, 1.0], "{:.2f}")]
    for g, group in enumerate(groups):
        gx = frame.left + g * group_w + 8
        for s, name in enumerate(series):
            iv = values.get((name, group))
            if iv is None:
                continue
            x = gx + s * bar_w
            y = frame.y(iv.value)
            parts.append(f'<rect class="mark bar" data-series="{_e(name)}" data-group="{_e(group)}" '
                         f'data-value="{iv.value:.6f}" x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                         f'height="{frame.top + frame.plot_h - y:.1f}" fill="{color(s)}">'
                         f"<title>{_e(name)} / {_e(group)}: {iv.value:.2f} [{iv.lo:.2f}, {iv.hi:.2f}]</title></rect>")
            parts.append(_errbar(x + (bar_w - 2) / 2, frame, iv))
        parts.append(f'<text class="xlabel" x="{gx + (group_w - 16) / 2:.1f}" y="{frame.top + frame.plot_h + 16:.1f}" '
                     f'text-anchor="middle" font-size="11">{_e(group)}</text>')
    parts.append(f'<line class="axis" x1="{frame.left}" y1="{frame.y(0):.1f}" x2="{frame.left + group_w * len(groups):.1f}" '
                 f'y2="{frame.y(0):.1f}" stroke="#333"/>')
    parts.append(_legend(series, frame.left + group_w * len(groups) + 16, frame.top + 10))
    return _svg(chart_id, frame, "".join(parts), title)


def line_chart(chart_id: str, title: str, points: list[tuple[float, Interval, str]], x_label: str,
               y_label: str = "mean success rate") -> str:
    """A curve through (x, value) with 95% CI bars; labels name each point (e.g. the row)."""
    frame = Frame(width=520, height=320, bottom=56)
    xs = [p[0] for p in points]
    x_min, x_max = min(xs), max(xs)
    span = (x_max - x_min) or 1.0

    def xpos(v: float) -> float:
        return frame.left + 24 + (frame.plot_w - 48) * (v - x_min) / span

    parts = [frame.y_axis(y_label, [0, 0.25, 0.5, 0.75, 1.0], "{:.2f}")]
    parts.append(f'<line class="axis" x1="{frame.left}" y1="{frame.y(0):.1f}" x2="{frame.left + frame.plot_w}" '
                 f'y2="{frame.y(0):.1f}" stroke="#333"/>')
    ordered = sorted(points, key=lambda p: p[0])
    path = " ".join(f"{xpos(x):.1f},{frame.y(iv.value):.1f}" for x, iv, _ in ordered)
    parts.append(f'<polyline class="curve" points="{path}" fill="none" stroke="{color(0)}" stroke-width="2"/>')
    for x, iv, label in ordered:
        px, py = xpos(x), frame.y(iv.value)
        parts.append(_errbar(px, frame, iv))
        parts.append(f'<circle class="mark point" data-x="{x:g}" data-value="{iv.value:.6f}" data-label="{_e(label)}" '
                     f'cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{color(0)}">'
                     f"<title>{_e(label)} ({x_label} {x:g}): {iv.value:.2f} [{iv.lo:.2f}, {iv.hi:.2f}]</title></circle>")
        parts.append(f'<text class="xlabel" x="{px:.1f}" y="{frame.top + frame.plot_h + 16:.1f}" text-anchor="middle" '
                     f'font-size="11">{x:g}</text>')
    parts.append(f'<text x="{frame.left + frame.plot_w / 2:.0f}" y="{frame.height - 12}" text-anchor="middle" '
                 f'font-size="12">{_e(x_label)}</text>')
    return _svg(chart_id, frame, "".join(parts), title)


def forest(chart_id: str, title: str, items: list[tuple[str, Interval, str]], x_label: str) -> str:
    """Horizontal intervals around a point per item (paired deltas), with the zero line."""
    row_h = 28
    frame = Frame(width=640, height=40 + row_h * max(len(items), 1) + 40, left=150, right=150, top=20, bottom=40)
    bound = max([1e-9] + [max(abs(iv.lo), abs(iv.hi), abs(iv.value)) for _, iv, _ in items])
    bound = min(1.0, max(0.1, round(bound * 1.2 + 0.05, 1)))

    def xpos(v: float) -> float:
        return frame.left + frame.plot_w * (v + bound) / (2 * bound)

    parts = [(f'<line class="zero" x1="{xpos(0):.1f}" y1="{frame.top}" x2="{xpos(0):.1f}" '
              f'y2="{frame.top + frame.plot_h}" stroke="#888" stroke-dasharray="4 3"/>')]
    for t in (-bound, -bound / 2, 0.0, bound / 2, bound):
        parts.append(f'<text x="{xpos(t):.1f}" y="{frame.top + frame.plot_h + 16}" text-anchor="middle" '
                     f'font-size="11">{t:+.2f}</text>')
    parts.append(f'<text x="{xpos(0):.1f}" y="{frame.height - 6}" text-anchor="middle" font-size="12">{_e(x_label)}</text>')
    for i, (label, iv, note) in enumerate(items):
        y = frame.top + row_h * (i + 0.5)
        parts.append(f'<text x="{frame.left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{_e(label)}</text>')
        parts.append(f'<line class="ci" x1="{xpos(iv.lo):.1f}" y1="{y:.1f}" x2="{xpos(iv.hi):.1f}" y2="{y:.1f}" '
                     f'stroke="#222" stroke-width="2"/>')
        fill = color(2) if iv.lo > 0 else color(3) if iv.hi < 0 else color(7)
        parts.append(f'<circle class="mark delta" data-label="{_e(label)}" data-value="{iv.value:.6f}" '
                     f'data-lo="{iv.lo:.6f}" data-hi="{iv.hi:.6f}" cx="{xpos(iv.value):.1f}" cy="{y:.1f}" r="5" '
                     f'fill="{fill}"><title>{_e(label)}: {iv.value:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}] {_e(note)}</title>'
                     "</circle>")
        parts.append(f'<text x="{frame.left + frame.plot_w + 8}" y="{y + 4:.1f}" font-size="11">{_e(note)}</text>')
    return _svg(chart_id, frame, "".join(parts), title)


def curves(chart_id: str, title: str, series: dict[str, list[tuple[float, float]]], x_label: str,
           y_label: str) -> str:
    """Lines through (x, y) per series (a learning curve: loss and validation metrics vs training step).

    The y axis is logarithmic (losses span decades) when every value is positive and they span more than
    a factor of 20; non-finite values draw nothing."""
    pts = {n: [(x, y) for x, y in p if math.isfinite(x) and math.isfinite(y)] for n, p in series.items()}
    pts = {n: p for n, p in pts.items() if p}
    values = [y for p in pts.values() for _, y in p] or [0.0, 1.0]
    log = min(values) > 0 and max(values) / min(values) > 20

    def ty(v: float) -> float:
        return math.log10(v) if log else v

    lo, hi = min(map(ty, values)), max(map(ty, values))
    if log:
        lo, hi = math.floor(lo), math.ceil(hi)
        ticks = [float(t) for t in range(int(lo), int(hi) + 1)]
    else:
        lo, hi = min(lo, 0.0), (hi if hi > lo else lo + 1.0)
        ticks = [lo + (hi - lo) * i / 4 for i in range(5)]
    legend_w = 20 + 7 * max((len(n) for n in pts), default=0)
    frame = Frame(width=520 + legend_w, height=300, right=16 + legend_w, bottom=56, y0=lo, y1=hi)
    xs = [x for p in pts.values() for x, _ in p] or [0.0, 1.0]
    x_min, x_max = min(xs), max(xs)

    def xpos(v: float) -> float:
        return frame.left + frame.plot_w * (v - x_min) / ((x_max - x_min) or 1.0)

    parts = [frame.y_axis(y_label + (" (log)" if log else ""), ticks, "{:.3g}",
                          (lambda t: f"{10 ** t:g}") if log else None)]
    parts.append(f'<line class="axis" x1="{frame.left}" y1="{frame.top + frame.plot_h:.1f}" '
                 f'x2="{frame.left + frame.plot_w}" y2="{frame.top + frame.plot_h:.1f}" stroke="#333"/>')
    for t in (x_min, (x_min + x_max) / 2, x_max):
        parts.append(f'<text x="{xpos(t):.1f}" y="{frame.top + frame.plot_h + 16:.1f}" text-anchor="middle" '
                     f'font-size="11">{t:g}</text>')
    for i, (name, p) in enumerate(pts.items()):
        path = " ".join(f"{xpos(x):.1f},{frame.y(ty(y)):.1f}" for x, y in p)
        parts.append(f'<polyline class="curve" data-series="{_e(name)}" points="{path}" fill="none" '
                     f'stroke="{color(i)}" stroke-width="1.5"/>')
        parts.extend(f'<circle class="mark curve-point" data-series="{_e(name)}" data-x="{x:g}" data-value="{y:.6g}" '
                     f'cx="{xpos(x):.1f}" cy="{frame.y(ty(y)):.1f}" r="2.5" fill="{color(i)}">'
                     f"<title>{_e(name)} at {x_label} {x:g}: {y:.4g}</title></circle>" for x, y in p)
    parts.append(f'<text x="{frame.left + frame.plot_w / 2:.0f}" y="{frame.height - 12}" text-anchor="middle" '
                 f'font-size="12">{_e(x_label)}</text>')
    parts.append(_legend(list(pts), frame.left + frame.plot_w + 16, frame.top + 10))
    return _svg(chart_id, frame, "".join(parts), title)
