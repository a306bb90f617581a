"""The workflow page's timeline: every step of the tree as a bar on one time axis.

Positions are relative to the workflow's start; a step that has not finished runs to the
workflow's end, or to ``now`` while the workflow goes on. The geometry is computed here in
SVG user units (the template draws it in a ``viewBox`` that scales with the page), so the
page needs no inline styles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from ..views import InvocationView, StepView

WIDTH = 1000.0
LABEL_W = 300.0
TRACK_X = 310.0
TRACK_W = WIDTH - TRACK_X - 30.0
ROW_H = 24.0
AXIS_H = 28.0
LABEL_CHARS = 40
_NICE = (1.0, 2.0, 2.5, 5.0)


@dataclasses.dataclass(frozen=True)
class Bar:
    """One step's row: its label and, when it has started, its bar."""

    path: str
    label: str
    title: str
    status: str
    depth: int
    y: float
    x: float | None = None
    width: float = 0.0
    running: bool = False
    #: The step's duration, drawn at ``text_x``: after the bar, inside its end, or before it.
    duration: str = ""
    text_x: float = 0.0
    text_at: str = "after"


@dataclasses.dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclasses.dataclass(frozen=True)
class Timeline:
    bars: list[Bar]
    ticks: list[Tick]
    span_s: float
    height: float
    track_x: float = TRACK_X
    track_w: float = TRACK_W
    label_w: float = LABEL_W


@dataclasses.dataclass(frozen=True)
class _Row:
    path: str
    depth: int
    step: StepView


def _rows(invocation: InvocationView, prefix: str = "", depth: int = 0) -> list[_Row]:
    rows: list[_Row] = []
    for step in invocation.steps:
        path = f"{prefix}{step.n}"
        rows.append(_Row(path, depth, step))
        if step.child is not None:
            rows.extend(_rows(step.child, f"{path}.", depth + 1))
    return rows


def _num(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def format_seconds(seconds: float) -> str:
    """``250 ms``, ``1.5 s``, ``2 min``, ``1.2 h``, ``3 d``: short durations for labels."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds else "0 s"
    if seconds < 60:
        return f"{_num(seconds)} s"
    if seconds < 3600:
        return f"{_num(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{_num(seconds / 3600)} h"
    return f"{_num(seconds / 86400)} d"


def _tick_step(span_s: float, target: int = 6) -> float:
    raw = span_s / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for nice in _NICE:
        if nice * magnitude >= raw:
            return nice * magnitude
    return 10.0 * magnitude


def _ticks(span_s: float) -> list[Tick]:
    # Nice steps in the unit the labels use: 15 min, 6 h, 2 d rather than 231 d.
    unit = 1.0 if span_s < 120 else 60.0 if span_s < 7200 else 3600.0 if span_s < 48 * 3600 else 86400.0
    step = _tick_step(span_s / unit) * unit
    count = int(span_s / step + 1e-9)
    return [Tick(round(TRACK_X + i * step / span_s * TRACK_W, 2), format_seconds(i * step)) for i in range(count + 1)]


def _label(row: _Row) -> str:
    text = f"{row.path}. {row.step.task}"
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC time (naive times are taken as UTC)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _bounds(root: InvocationView, rows: list[_Row], now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    starts = [utc(r.step.started_at) for r in rows if r.step.started_at is not None]
    origin = utc(root.started_at) if root.started_at is not None else (min(starts) if starts else None)
    if origin is None:
        return None
    ends = [utc(r.step.finished_at) for r in rows if r.step.finished_at is not None]
    end = max([utc(root.finished_at) if root.finished_at is not None else now, *ends, *starts])
    return origin, end


def _text_place(x: float, width: float, room: float = 70.0) -> tuple[str, float]:
    if x + width + room <= TRACK_X + TRACK_W:
        return "after", x + width + 5
    if width >= room:
        return "inside", x + width - 5
    return "before", x - 5


def _bar(row: _Row, index: int, origin: dt.datetime, span_s: float, end: dt.datetime) -> Bar:
    step = row.step
    y = AXIS_H + index * ROW_H
    title = f"{row.path}. {step.task}: {step.status}"
    if step.started_at is None:
        return Bar(row.path, _label(row), f"{title} (not started)", step.status, row.depth, y)
    started = utc(step.started_at)
    finish = utc(step.finished_at) if step.finished_at is not None else end
    start_s = max(0.0, (started - origin).total_seconds())
    length_s = max(0.0, (finish - started).total_seconds())
    x = TRACK_X + min(1.0, start_s / span_s) * TRACK_W
    width = max(2.0, min(length_s / span_s * TRACK_W, TRACK_X + TRACK_W - x))
    title += f", from +{format_seconds(start_s)} for {format_seconds(length_s)}"
    running = step.finished_at is None
    text_at, text_x = _text_place(x, width)
    return dataclasses.replace(
        Bar(row.path, _label(row), title, step.status, row.depth, y),
        x=round(x, 2),
        width=round(width, 2),
        running=running,
        duration=format_seconds(length_s),
        text_x=round(text_x, 2),
        text_at=text_at,
    )


def build_timeline(root: InvocationView, now: dt.datetime | None = None) -> Timeline:
    """The bars of every step in ``root``'s tree, children's steps indented below their step."""
    now = utc(now) if now is not None else dt.datetime.now(dt.UTC)
    rows = _rows(root)
    height = AXIS_H + max(1, len(rows)) * ROW_H + 4
    bounds = _bounds(root, rows, now)
    if bounds is None:
        return Timeline([], [], 0.0, height)
    origin, end = bounds
    span_s = max((end - origin).total_seconds(), 0.001)
    bars = [_bar(row, i, origin, span_s, end) for i, row in enumerate(rows)]
    return Timeline(bars, _ticks(span_s), span_s, height)
