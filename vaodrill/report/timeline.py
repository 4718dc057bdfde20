"""The drill timeline: one picture of when each plan failed over, waited and was put back.

One row per plan: a bar for the failover (Run sent → stage ended), a thinner one for the time until the undo
was verified, a tick at the plan's RTO target, arrows for the dependencies and the critical path (the chain
of dependencies that decided when the last plan finished) outlined. Plain SVG built with the standard library,
so any browser, the Prefect UI or a ticket can show it; every text from a server is escaped by ElementTree and
stripped of characters XML cannot carry.
"""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from vaodrill.report.checks import check_legend, check_markers
from vaodrill.report.model import DrillReport, PlanResult
from vaodrill.report.text import UNDO_WORDS, format_duration, plan_reasons

__all__ = ["critical_path", "render_svg"]

WIDTH = 1120
PLOT_X = 250  # plan names end left of here
PLOT_W = 610
NOTE_X = PLOT_X + PLOT_W + 14  # the per-row outcome text
TOP = 92  # first row
ROW_H = 30
LABEL_CHARS = 30
NOTE_CHARS = 36
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

STATUS_COLOURS = {
    "passed": "#2e8b57",
    "failed": "#c0392b",
    "halted": "#e67e22",
    "timed_out": "#8e44ad",
    "interrupted": "#b7950b",
    "skipped": "#95a5a6",
}
UNDO_COLOUR = "#a9dfbf"
UNVERIFIED_COLOUR = "#f5b7b1"
NOT_UNDONE_COLOUR = "#d6dbdf"
CRITICAL = "#1a5276"
EDGE = "#7f8c8d"
MUTED = "#5d6d7e"
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

_UNFIT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _text(value: str, limit: int | None = None) -> str:
    """One line XML can carry (control characters, ANSI escapes, lone surrogates gone), cut to ``limit``."""
    text = " ".join(_UNFIT.sub(" ", value).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _end(p: PlanResult) -> datetime | None:
    """When the plan's failover stage ended, if known."""
    return p.failover_completed_at or p.failover_ended_at


def _dependency_index(report: DrillReport) -> list[list[int]]:
    """For each plan, the rows of the plans it waited for.

    ``after`` holds the names as written in the drill, which may differ from the server's spelling in case
    or spacing, so an exact match wins and a loose one is the fallback; a name that matches nothing is dropped.
    """
    exact: dict[str, int] = {}
    loose: dict[str, int] = {}
    for i, p in enumerate(report.plans):
        exact.setdefault(p.plan, i)
        loose.setdefault(" ".join(p.plan.casefold().split()), i)
    deps = []
    for i, p in enumerate(report.plans):
        found = (exact.get(a, loose.get(" ".join(a.casefold().split()))) for a in p.after)
        deps.append(list(dict.fromkeys(j for j in found if j is not None and j != i)))
    return deps


def critical_path(report: DrillReport) -> list[int]:
    """Rows of the critical path, first to last: the plan whose failover ended last, then, going back, the
    dependency each one waited for longest (the one that ended last). Empty when no failover ended."""
    deps = _dependency_index(report)
    ends = {i: end for i, p in enumerate(report.plans) if (end := _end(p)) is not None}
    if not ends:
        return []
    path = [max(ends, key=ends.__getitem__)]
    while waited := [j for j in deps[path[-1]] if j in ends and j not in path]:
        path.append(max(waited, key=ends.__getitem__))
    return path[::-1]


@dataclass(frozen=True)
class _Scale:
    """Seconds since the drill's start to x, over an axis ending on a round tick."""

    origin: datetime
    axis_end: float
    step: float

    def x(self, at: datetime) -> float:
        seconds = min(max((at - self.origin).total_seconds(), 0.0), self.axis_end)
        return PLOT_X + seconds / self.axis_end * PLOT_W

    def covers(self, seconds: float) -> bool:
        return seconds <= self.axis_end


def _scale(report: DrillReport) -> _Scale:
    times = [report.started_at, report.finished_at]
    for p in report.plans:
        times += [t for t in (p.failover_started_at, _end(p), p.undo_completed_at) if t is not None]
    origin = min(times)
    span = max((max(times) - origin).total_seconds(), 1.0)
    # RTO targets widen the axis while they at most double it; beyond that they would squash every bar.
    for p in report.plans:
        if p.failover_started_at is not None and p.rto_target_seconds is not None:
            target = (p.failover_started_at - origin).total_seconds() + p.rto_target_seconds
            if target <= 2 * span:
                span = max(span, target)
    step = next((s for s in NICE_STEPS if span / s <= 8), math.ceil(span / 8 / 86400) * 86400)
    return _Scale(origin, max(math.ceil(span / step), 1) * step, step)


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _el(parent: ET.Element, tag: str, text: str | None = None, /, **attrs: object) -> ET.Element:
    """A child element; attribute names use ``_`` for ``-`` and numbers are written short."""
    el = ET.SubElement(
        parent,
        tag,
        {k.rstrip("_").replace("_", "-"): _num(v) if isinstance(v, float) else str(v) for k, v in attrs.items()},
    )
    if text is not None:
        el.text = text
    return el


def _defs(svg: ET.Element) -> None:
    defs = _el(svg, "defs")
    for ident, colour in (("arrow", EDGE), ("arrow-critical", CRITICAL)):
        marker = _el(
            defs,
            "marker",
            id=ident,
            viewBox="0 0 10 10",
            refX=9,
            refY=5,
            markerWidth=8,
            markerHeight=8,
            markerUnits="userSpaceOnUse",
            orient="auto",
        )
        _el(marker, "path", d="M0,0 L10,5 L0,10 z", fill=colour)


def _header(svg: ET.Element, report: DrillReport, scale: _Scale, rows: int) -> None:
    verdict = report.verdict.upper()
    _el(
        svg,
        "text",
        f"{_text(report.drill, 60)} · {verdict} · drill timeline",
        x=16,
        y=26,
        font_size=17,
        font_weight="bold",
        fill=STATUS_COLOURS["passed" if report.verdict == "passed" else "failed"],
    )
    started = report.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    sub = f"run {_text(report.run_id, 40)} · {report.mode} · started {started} · lasted "
    sub += format_duration(report.duration_seconds)
    if report.stopped:
        sub += f" · stopped early ({report.stopped})"
    _el(svg, "text", sub, x=16, y=46, font_size=12, fill=MUTED)

    bottom = TOP + rows * ROW_H
    axis = _el(svg, "g", class_="axis")
    _el(axis, "text", "time since drill start", x=PLOT_X - 18, y=TOP - 12, font_size=11, fill=MUTED, text_anchor="end")
    tick = 0.0
    while tick <= scale.axis_end:
        x = PLOT_X + tick / scale.axis_end * PLOT_W
        _el(axis, "line", x1=x, y1=TOP - 6, x2=x, y2=bottom, stroke="#d5d8dc", stroke_width=1)
        _el(axis, "text", format_duration(tick), x=x, y=TOP - 12, font_size=11, fill=MUTED, text_anchor="middle")
        tick += scale.step
    end = scale.x(report.finished_at)
    _el(
        axis,
        "line",
        x1=end,
        y1=TOP - 4,
        x2=end,
        y2=bottom + 4,
        stroke=MUTED,
        stroke_width=1,
        stroke_dasharray="4 3",
        class_="drill-end",
    )
    _el(axis, "text", "drill end", x=end, y=bottom + 16, font_size=11, fill=MUTED, text_anchor="middle")


def _note(p: PlanResult, left: bool) -> str:
    """The row's outcome in words, at the right of the plot."""
    if p.status == "passed":
        text = f"passed · RTO {format_duration(p.rto_seconds)}"
        if p.rto_target_seconds is not None:
            text += f" of {format_duration(p.rto_target_seconds)}" + ("" if p.rto_met is not False else " MISSED")
    else:
        status, reason = p.status.replace("_", " "), plan_reasons(p)
        text = reason if reason.startswith(status) else status + (f": {reason}" if reason else "")
    return f"LEFT FAILED OVER · {text}" if left else text


def _row(
    group: ET.Element, report: DrillReport, p: PlanResult, y: float, scale: _Scale, *, critical: bool, left: bool
) -> None:
    colour = STATUS_COLOURS.get(p.status, MUTED)
    mid = y + ROW_H / 2
    row = _el(
        group,
        "g",
        class_="row critical" if critical else "row",
        data_plan=_text(p.plan),
        data_status=p.status,
        data_critical=str(critical).lower(),
    )
    undo = UNDO_WORDS.get(p.undo, p.undo)
    _el(row, "title", _text(f"{p.plan} — {p.status.replace('_', ' ')}, undo {undo}"))
    _el(
        row,
        "text",
        _text(p.plan, LABEL_CHARS),
        x=PLOT_X - 10,
        y=mid + 4,
        font_size=12,
        text_anchor="end",
        font_weight="bold" if critical else "normal",
        fill="#1b2631",
        class_="label",
    )
    note = _text(_note(p, left))
    shown = _el(
        row,
        "text",
        _text(note, NOTE_CHARS),
        x=NOTE_X,
        y=mid + 4,
        font_size=11,
        class_="note",
        fill=STATUS_COLOURS["failed"] if left else MUTED,
    )
    if len(note) > NOTE_CHARS:
        _el(shown, "title", note)

    start = p.failover_started_at
    if start is None:
        return
    end = _end(p)
    _failover_bar(row, report, p, start, end, mid, scale, colour=colour, critical=critical)
    if end is not None and p.undo != "not_needed":
        _undo_bar(row, report, p, end, mid, scale, left=left)
    _rto_target(row, p, start, mid, scale)
    check_markers(row, p.checks, scale.x, mid)


def _failover_bar(
    row: ET.Element,
    report: DrillReport,
    p: PlanResult,
    start: datetime,
    end: datetime | None,
    mid: float,
    scale: _Scale,
    *,
    colour: str,
    critical: bool,
) -> None:
    """From the Run to the failover's end; an end not recorded is drawn faded up to what came after it."""
    x0 = scale.x(start)
    # the stage's end not recorded: drawn faded up to what is known to come after it
    faded = {} if end is not None else {"fill_opacity": 0.45}
    until = end or p.undo_completed_at or report.finished_at
    bar = _el(
        row,
        "rect",
        x=x0,
        y=mid - 7,
        width=max(scale.x(until) - x0, 2.0),
        height=14,
        rx=2,
        fill=colour,
        **faded,
        class_="failover" if end is not None else "failover open",
    )
    if end is None:
        _el(bar, "title", "failover; the end of its stage was not recorded")
    if critical:
        bar.set("stroke", CRITICAL)
        bar.set("stroke-width", "3")


def _undo_bar(
    row: ET.Element, report: DrillReport, p: PlanResult, end: datetime, mid: float, scale: _Scale, *, left: bool
) -> None:
    """From the failover's end to the undo's: done, unverified (dashed red) or never undone."""
    if p.undo_completed_at is not None:
        fill, cls, until = UNDO_COLOUR, "undo", p.undo_completed_at
    elif left:
        fill, cls, until = UNVERIFIED_COLOUR, "undo unverified", report.finished_at
    else:
        fill, cls, until = NOT_UNDONE_COLOUR, "undo not-undone", report.finished_at
    x1 = scale.x(end)
    undo_bar = _el(row, "rect", x=x1, y=mid - 4, width=max(scale.x(until) - x1, 1.0), height=8, fill=fill, class_=cls)
    if cls == "undo unverified":
        undo_bar.set("stroke", STATUS_COLOURS["failed"])
        undo_bar.set("stroke-dasharray", "3 2")


def _rto_target(row: ET.Element, p: PlanResult, start: datetime, mid: float, scale: _Scale) -> None:
    """The plan's RTO target as a tick on its row, or a pointer at the axis's right edge when it lies beyond."""
    if p.rto_target_seconds is None:
        return
    target = (start - scale.origin).total_seconds() + p.rto_target_seconds
    label = f"RTO target {format_duration(p.rto_target_seconds)}"
    if scale.covers(target):
        x = PLOT_X + target / scale.axis_end * PLOT_W
        tick = _el(
            row, "line", x1=x, y1=mid - 11, x2=x, y2=mid + 11, stroke="#17202a", stroke_width=2, class_="rto-target"
        )
    else:  # beyond the axis: a pointer at its right edge
        x = PLOT_X + PLOT_W
        tick = _el(
            row,
            "path",
            d=f"M{_num(x - 7)},{_num(mid - 6)} L{_num(x)},{_num(mid)} L{_num(x - 7)},{_num(mid + 6)} z",
            fill="#17202a",
            class_="rto-target beyond",
        )
        label += " (beyond the axis)"
    _el(tick, "title", label)


def _edges(svg: ET.Element, report: DrillReport, scale: _Scale, on_path: list[int]) -> None:
    critical_edges = set(itertools.pairwise(on_path))
    group = _el(svg, "g", class_="dependencies", fill="none")
    for i, deps in enumerate(_dependency_index(report)):
        p = report.plans[i]
        for j in deps:
            dep = report.plans[j]
            known = _end(dep) or dep.failover_started_at
            x1 = scale.x(known) if known else PLOT_X
            y1 = TOP + j * ROW_H + ROW_H / 2
            y2 = TOP + i * ROW_H + ROW_H / 2
            if p.failover_started_at is None:  # never started: straight across the rows, from the dependency
                gap = 8 if y2 > y1 else -8
                d = f"M{_num(x1)},{_num(y1 + gap)} L{_num(x1)},{_num(y2 - gap)}"
            else:
                x2 = scale.x(p.failover_started_at)
                bend = max(abs(x2 - x1) / 2, 12.0)
                d = (
                    f"M{_num(x1)},{_num(y1)} C{_num(x1 + bend)},{_num(y1)} {_num(x2 - bend)},{_num(y2)} "
                    f"{_num(x2)},{_num(y2)}"
                )
            critical = (j, i) in critical_edges
            _el(
                group,
                "path",
                d=d,
                stroke=CRITICAL if critical else EDGE,
                stroke_width=2.5 if critical else 1.2,
                stroke_opacity=1 if critical else 0.8,
                marker_end=f"url(#{'arrow-critical' if critical else 'arrow'})",
                class_="dependency critical" if critical else "dependency",
                data_from=_text(dep.plan),
                data_to=_text(p.plan),
            )


def _legend(svg: ET.Element, y: float) -> float:
    """The key, wrapped to the picture's width; returns the baseline of its last line."""
    group = _el(svg, "g", class_="legend", font_size=11, fill="#1b2631")
    bar = {"width": 16, "height": 12, "y": -6}
    thin = {"width": 16, "height": 8, "y": -4}
    items: list[tuple[str, str, dict[str, object]]] = [
        (status.replace("_", " "), "rect", {**bar, "fill": colour})
        for status, colour in STATUS_COLOURS.items()
        if status != "skipped"
    ]
    items += [
        ("failed over until undo verified", "rect", {**thin, "fill": UNDO_COLOUR}),
        (
            "undo not verified",
            "rect",
            {**thin, "fill": UNVERIFIED_COLOUR, "stroke": STATUS_COLOURS["failed"], "stroke_dasharray": "3 2"},
        ),
        ("critical path", "rect", {**bar, "fill": "#ffffff", "stroke": CRITICAL, "stroke_width": 3}),
        ("RTO target", "line", {"x1": 8, "y1": -6, "x2": 8, "y2": 6, "stroke": "#17202a", "stroke_width": 2}),
        *check_legend(),
        ("RTO target beyond the axis", "path", {"d": "M4,-6 L11,0 L4,6 z", "fill": "#17202a"}),
        (
            "waits for (dependency)",
            "path",
            {"d": "M0,0 L14,0", "stroke": EDGE, "stroke_width": 1.2, "marker_end": "url(#arrow)"},
        ),
    ]
    x = 16.0
    for label, tag, attrs in items:
        width = 34 + 6 * len(label)
        if x + width > WIDTH - 16:
            x, y = 16.0, y + 20
        key = _el(group, "g", transform=f"translate({_num(x)},{_num(y - 6)})")
        _el(key, tag, **attrs)
        _el(group, "text", label, x=x + 22, y=y - 2)
        x += width
    return y


def render_svg(report: DrillReport) -> str:
    """The timeline of one drill as a standalone SVG document."""
    scale = _scale(report)
    on_path = critical_path(report)
    left = {id(p) for p in report.left_failed_over}
    rows = len(report.plans)
    svg = ET.Element("svg", {"xmlns": "http://www.w3.org/2000/svg", "font-family": FONT, "role": "img"})
    _el(svg, "title", _text(f"Drill timeline of {report.drill}: {report.verdict}"))
    _defs(svg)
    background = _el(svg, "rect", x=0, y=0, width=WIDTH, fill="#ffffff")
    for i in range(rows):
        if i % 2:
            _el(svg, "rect", x=8, y=TOP + i * ROW_H, width=WIDTH - 16, height=ROW_H, fill="#f4f6f7")
    _header(svg, report, scale, rows)
    plans = _el(svg, "g", class_="plans")
    for i, p in enumerate(report.plans):
        _row(plans, report, p, TOP + i * ROW_H, scale, critical=i in on_path, left=id(p) in left)
    if not rows:
        _el(svg, "text", "No plans were run.", x=PLOT_X, y=TOP + ROW_H / 2 + 4, font_size=12, fill=MUTED)
    _edges(svg, report, scale, on_path)
    height = round(_legend(svg, TOP + max(rows, 1) * ROW_H + 48) + 16)
    background.set("height", str(height))
    svg.attrib.update({"width": str(WIDTH), "height": str(height), "viewBox": f"0 0 {WIDTH} {height}"})
    ET.indent(svg)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"
