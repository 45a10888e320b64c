"""/ops's chart as inline SVG, drawn on the server (no JavaScript): the last 24 hours in
10-minute bars — archived, failed and expired stacked — and, on the right with its own scale,
the links of unarchived tasks dying in each 10 minutes of the coming hour.

Every bar is a `<rect>` with `data-series`, `data-slot` (the slot's start, UTC) and
`data-count`, and a `<title>` a browser shows on hover. Colours come from ops.css (classes).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

from afterimage.timeline import AHEAD, PAST, SLOT, Timeline

BAR, GAP = 6, 24  # px per 10-minute slot; between the two panels
LEFT, TOP, PLOT, BOTTOM, RIGHT = 44, 16, 150, 22, 40  # margins and the plot's height
FUTURE_BAR = 12
WIDTH = LEFT + PAST * BAR + GAP + AHEAD * FUTURE_BAR + RIGHT
HEIGHT = TOP + PLOT + BOTTOM
TICK_EVERY = 3 * 3600  # a time label every 3 hours


def nice(top: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above `top` (at least 1)."""
    if top <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(top))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= top)


def _clock(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M")


def _bars(x: float, width: float, slot: str, when: str, stack: list[tuple[str, int]],
          scale: int) -> list[str]:
    """One slot's bars, stacked from the bottom; `stack` is (series, count), `slot` names the
    slot (data-slot), `when` says it in words (the hover title)."""
    out, y = [], float(TOP + PLOT)
    for series, count in stack:
        if count <= 0:
            continue
        h = max(count / scale * PLOT, 1.0)
        y -= h
        what = "links dying" if series == "dying" else series
        out.append(
            f'<rect class="bar {series}" data-series="{series}" data-slot="{escape(slot)}" '
            f'data-count="{count}" x="{x:.1f}" y="{y:.1f}" width="{width - 1:.1f}" '
            f'height="{h:.1f}"><title>{escape(when)}: {count} {what}</title></rect>')
    return out


def _axis(x: float, scale: int, width: float, right: bool = False) -> list[str]:
    """Grid lines at 0, half (when whole) and the top of `scale`, labelled on the left (or
    on the right)."""
    out = []
    for value in (0, scale // 2 if scale % 2 == 0 else None, scale):
        if value is None:
            continue
        y = TOP + PLOT - value / scale * PLOT
        out.append(f'<line class="grid" x1="{x}" x2="{x + width}" y1="{y:.1f}" y2="{y:.1f}"/>')
        at, anchor = (x + width + 4, "start") if right else (x - 4, "end")
        out.append(f'<text class="tick" x="{at}" y="{y + 4:.1f}" '
                   f'text-anchor="{anchor}">{value}</text>')
    return out


def svg(timeline: Timeline) -> str:
    """The chart's `<svg>` element."""
    past = timeline.past
    totals = [sum(past[s][i] for s in past) for i in range(PAST)]
    scale = nice(max(totals, default=0))
    ahead = nice(max(timeline.dying, default=0))
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} '
             f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="Tasks '
             f'archived, failed and expired per 10 minutes over the last 24 hours, and links '
             f'dying in the coming hour">']
    parts += _axis(LEFT, scale, PAST * BAR)
    for i in range(PAST):
        slot = timeline.start + i * SLOT
        if slot % TICK_EVERY == 0:
            x = LEFT + i * BAR
            parts.append(f'<line class="tickmark" x1="{x}" x2="{x}" y1="{TOP + PLOT}" '
                         f'y2="{TOP + PLOT + 4}"/><text class="tick" x="{x}" '
                         f'y="{TOP + PLOT + 16}" text-anchor="middle">{_clock(slot)}</text>')
        stack = [(s, past[s][i]) for s in past]
        iso = datetime.fromtimestamp(slot, UTC).strftime("%Y-%m-%dT%H:%MZ")
        when = f"{_clock(slot)} to {_clock(slot + SLOT)} UTC"
        parts += _bars(LEFT + i * BAR, BAR, iso, when, stack, scale)
    right = LEFT + PAST * BAR + GAP
    parts += _axis(right, ahead, AHEAD * FUTURE_BAR, right=True)
    parts.append(f'<line class="now" x1="{right - GAP / 2}" x2="{right - GAP / 2}" y1="{TOP}" '
                 f'y2="{TOP + PLOT}"/><text class="tick" x="{right - GAP / 2}" y="{TOP - 4}" '
                 f'text-anchor="middle">now</text>')
    parts.append(f'<text class="tick" x="{right + AHEAD * FUTURE_BAR / 2}" '
                 f'y="{TOP + PLOT + 16}" text-anchor="middle">next hour</text>')
    for i, count in enumerate(timeline.dying):
        a, b = i * SLOT // 60, (i + 1) * SLOT // 60
        parts += _bars(right + i * FUTURE_BAR, FUTURE_BAR, f"+{a}min",
                       f"in {a} to {b} min", [("dying", count)], ahead)
    parts.append("</svg>")
    return "".join(parts)
