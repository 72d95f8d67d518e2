"""Geometry of the report's SVG charts: where every bar, tick and mark goes.  The
template only draws what this module placed (and escapes every text it draws).

The timeline shares one time scale across attempts, each attempt in its own lane (its
rows below the previous lane's, its bars to the right of them), with a fixed gap between
lanes that says how long the run stood still: a resume hours later stays readable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .figures import Usage
from .format import duration, money, tokens
from .model import Report
from .spans import Attempt, Span

__all__ = [
    "Timeline",
    "timeline",
    "BarChart",
    "cost_charts",
    "ScoreChart",
    "score_chart",
    "BudgetChart",
    "budget_chart",
]

LABEL_W = 250
BAR_X = 260
BAR_W = 900
ROW_H = 18
GAP_W = 56
AXIS_H = 22


@dataclass
class Bar:
    x: float
    w: float
    cls: str
    index: int
    queue_w: float = 0.0
    title: str = ""


@dataclass
class TimelineRow:
    y: float
    label: str
    depth: int
    cls: str
    bar: Bar | None = None
    marks: list[tuple[float, str, str]] = field(default_factory=list)
    """(x, class, title) of point marks on the row (budget warnings, retries)."""
    toggle: bool = False
    lane: int = 0


@dataclass
class LaneGeom:
    attempt: Attempt
    x0: float
    width: float
    scale: float
    """px per ns."""
    y0: float
    header: str
    gap_label: str = ""
    ticks: list[tuple[float, str]] = field(default_factory=list)

    def x(self, ns: int) -> float:
        return BAR_X + self.x0 + (ns - self.attempt.first_ns) * self.scale


TITLED_SPANS = 2000
"""Up to this many spans, every bar carries its details as a native tooltip (``<title>``,
also its accessible name); past it only the script's tooltip and the table have them:
thousands of titles cost a big report its speed."""


@dataclass
class Timeline:
    rows: list[TimelineRow]
    lanes: list[LaneGeom]
    width: float
    height: float
    task_bars: int
    call_bars: int
    titles: bool = True


def _nice_step(span_s: float, target: int = 6) -> float:
    raw = max(span_s / target, 1e-6)
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def lanes(report: Report) -> list[LaneGeom]:
    attempts = report.attempts
    total = sum(max(a.duration_ns, 1) for a in attempts)
    usable = BAR_W - GAP_W * (len(attempts) - 1)
    scale = usable / total
    out: list[LaneGeom] = []
    x0 = 0.0
    for n, attempt in enumerate(attempts):
        width = max(attempt.duration_ns, 1) * scale
        end = "finished" if attempt.finished else "stopped (no finish recorded)"
        tasks, calls = len(attempt.tasks), len(attempt.calls)
        header = (
            f"attempt {attempt.number}: {duration(attempt.duration_ns)}, {tasks} task{'s' if tasks != 1 else ''}, "
            f"{calls} call{'s' if calls != 1 else ''}; {end}"
        )
        lane = LaneGeom(attempt, x0, width, scale, 0.0, header)
        if n:
            lane.gap_label = f"{duration(attempt.first_ns - attempts[n - 1].last_ns)} later"
        step = _nice_step(attempt.duration_ns / 1e9 or 1e-3, max(2, int(width / 120)))
        t = 0.0
        while t * 1e9 <= attempt.duration_ns + 1:
            lane.ticks.append((lane.x(attempt.first_ns + int(t * 1e9)), duration(int(t * 1e9), short=True)))
            t += step
        out.append(lane)
        x0 += width + GAP_W
    return out


def span_title(span: Span, attempt: Attempt) -> str:
    """The hover text of a bar (also its accessible name)."""
    parts = [
        span.name,
        f"attempt {attempt.number}",
        f"at +{duration(span.start - attempt.first_ns)}",
        f"took {duration(span.duration_ns)}",
    ]
    if span.kind == "llm":
        parts.append(span.model)
        if span.queue_ns:
            parts.append(f"queued {duration(span.queue_ns)}")
        if span.cached:
            parts.append("cached")
        else:
            parts.append(f"{tokens(span.tokens_in)}→{tokens(span.tokens_out)} tok")
            parts.append("unpriced" if span.unpriced else money(span.cost))
    if span.kind == "task":
        status = span.attrs.get("task.status")
        if status:
            parts.append(str(status))
    if span.kind == "checks":
        parts.append(f"{span.attrs.get('checks.passed')}/{span.attrs.get('checks.total')} passed")
    if span.status != "ok":
        parts.append(f"{span.status}{': ' + span.error_type if span.error_type else ''}")
    if span.critical:
        parts.append("on the critical path")
    return " · ".join(parts)


def timeline(report: Report) -> Timeline:
    geoms = lanes(report)
    rows: list[TimelineRow] = []
    y = AXIS_H
    task_bars = call_bars = 0
    titled = len(report.spans) <= TITLED_SPANS
    for lane_no, lane in enumerate(geoms):
        attempt = lane.attempt
        lane.y0 = y
        rows.append(TimelineRow(y, lane.header, 0, "lane", lane=lane_no))
        y += ROW_H
        for span in attempt.spans:
            x = lane.x(span.start)
            w = max(1.5, span.duration_ns * lane.scale)
            cls = f"bar k-{span.kind} st-{span.status}" + (" crit" if span.critical else "")
            bar = Bar(x, w, cls, span.index, title=span_title(span, attempt) if titled else "")
            if span.kind == "llm":
                bar.queue_w = min(w, span.queue_ns * lane.scale)
                call_bars += 1
            elif span.kind == "task":
                task_bars += 1
            row = TimelineRow(
                y,
                span.name,
                span.depth,
                f"r-{span.kind}",
                bar,
                lane=lane_no,
                toggle=span.kind in ("task", "remediation") and bool(span.children),
            )
            for point in span.points:
                signal = point["signal"]
                if signal in ("budget_warning", "llm_retry", "model_unhealthy", "task_skipped"):
                    detail = point.get("reason") or point.get("error_type") or ""
                    row.marks.append(
                        (
                            lane.x(int(point["timestamp_ns"])),
                            f"mk mk-{signal}",
                            f"{signal}: {detail}" if detail else signal,
                        )
                    )
            rows.append(row)
            y += ROW_H
        for point in attempt.points:
            if point["signal"] == "task_restored":
                label = f"task:{point.get('task_id')} (kept from attempt {point.get('from_attempt')})"
            elif point["signal"] == "task_skipped":
                label = f"task:{point.get('task_id')} (skipped: {point.get('reason') or '?'})"
            else:
                continue
            rows.append(TimelineRow(y, label, 1, "r-restored", lane=lane_no))
            y += ROW_H
    return Timeline(
        rows, geoms, BAR_X + BAR_W + 20, y + 6, task_bars, call_bars, titles=len(report.spans) <= TITLED_SPANS
    )


# -- bars: cost and tokens by model and by task ----------------------------------------------


@dataclass
class BarItem:
    label: str
    value: float
    text: str
    cls: str = ""
    w: float = 0.0
    w2: float = 0.0
    """A second segment (output tokens), after the first."""


@dataclass
class BarChart:
    title: str
    items: list[BarItem]
    width: float = 860
    label_w: float = 220
    bar_w: float = 360

    @property
    def height(self) -> float:
        return len(self.items) * ROW_H + 8


def _scale(items: list[BarItem], bar_w: float) -> None:
    top = max((i.value for i in items), default=0.0)
    for item in items:
        item.w = max(1.0, item.value / top * bar_w) if top > 0 and item.value > 0 else 0.0


def _cost_text(usage: Usage) -> str:
    text = money(usage.cost)
    if usage.unpriced:
        text = f"unpriced ({usage.unpriced} call{'s' if usage.unpriced > 1 else ''})" + (
            f" + {text}" if usage.cost else ""
        )
    return f"{text} · {usage.calls} call{'s' if usage.calls != 1 else ''}" + (
        f" ({usage.cached} cached)" if usage.cached else ""
    )


def _cost_bars(title: str, groups: Sequence[tuple[str, Usage]]) -> BarChart:
    items = [BarItem(label, u.cost, _cost_text(u), "unpriced" if u.unpriced else "") for label, u in groups]
    _scale(items, 360)
    for item in items:
        if item.cls == "unpriced" and item.w < 12:
            item.w = 12.0  # a hatched stub: there was spend, of unknown size
    return BarChart(title, items)


def _token_bars(title: str, groups: Sequence[tuple[str, Usage]]) -> BarChart:
    items = []
    for label, u in groups:
        item = BarItem(label, float(u.tokens), f"{tokens(u.tokens_in)} in / {tokens(u.tokens_out)} out")
        item.w, item.w2 = float(u.tokens_in), float(u.tokens_out)
        items.append(item)
    top = max((i.value for i in items), default=0.0)
    for item in items:
        item.w = item.w / top * 360 if top else 0.0
        item.w2 = item.w2 / top * 360 if top else 0.0
    return BarChart(title, items)


def cost_charts(report: Report) -> list[BarChart]:
    acct = report.acct
    by_model = [(m.model, m.usage) for m in acct.models]
    by_task = ([("(planning)", acct.planning)] if acct.planning.calls else []) + [(t.id, t.usage) for t in acct.tasks]
    return [
        _cost_bars("Cost by model", by_model),
        _token_bars("Tokens by model", by_model),
        _cost_bars("Cost by task", by_task),
        _token_bars("Tokens by task", by_task),
    ]


# -- scores ----------------------------------------------------------------------------------


@dataclass
class ScoreRow:
    label: str
    y: float
    threshold_x: float | None
    dots: list[tuple[float, str, str]]
    """(x, label, title) of each iteration the evaluator scored."""
    text: str
    cls: str = ""


@dataclass
class ScoreChart:
    rows: list[ScoreRow]
    x0: float
    w: float
    height: float
    width: float

    def x(self, score: float) -> float:
        return self.x0 + max(0.0, min(1.0, score)) * self.w


def score_chart(report: Report) -> ScoreChart:
    chart = ScoreChart([], 230.0, 400.0, 0.0, 860.0)
    by_task: dict[str, list[tuple[int, float, int]]] = {}
    for it in report.acct.iterations:
        if it.score is not None:
            by_task.setdefault(it.task, []).append((it.attempt, it.score, it.iteration))
    y = AXIS_H
    for task in report.acct.tasks:
        dots = [
            (chart.x(score), str(iteration), f"attempt {attempt}, iteration {iteration}: {score:.2f}")
            for attempt, score, iteration in by_task.get(task.id, [])
            if attempt == task.attempt or not task.attempt
        ]
        text = f"{task.score:.2f} ({task.status})" if task.score is not None else f"{task.score_note} ({task.status})"
        chart.rows.append(
            ScoreRow(
                task.id,
                y,
                chart.x(task.threshold) if task.threshold is not None else None,
                dots,
                text,
                "none" if task.score is None else "",
            )
        )
        y += ROW_H
    chart.height = y + 6
    return chart


# -- budget burn -----------------------------------------------------------------------------


@dataclass
class BudgetChart:
    width: float
    height: float
    path: str
    cap_y: float | None
    cap_label: str
    marks: list[tuple[float, float, str, str]]
    """(x, y, class, title)."""
    y_ticks: list[tuple[float, str]]
    top: float
    x0: float = BAR_X
    x1: float = BAR_X + BAR_W


def budget_chart(report: Report) -> BudgetChart:
    geoms = {lane.attempt.order: lane for lane in lanes(report)}
    spend = report.acct.spend
    spent_max = max([s for _, _, s in spend] + [m.spent for m in report.acct.marks] + [0.0])
    cap = report.budget_usd
    top = max(spent_max, cap or 0.0) * 1.05 or 1.0
    height, plot_top, plot_h = 200.0, 14.0, 160.0

    def y(value: float) -> float:
        return plot_top + plot_h - value / top * plot_h

    parts: list[str] = []
    total = 0.0
    index = 0
    for order in sorted(geoms):
        lane = geoms[order]
        parts.append(f"M{lane.x(lane.attempt.first_ns):.1f},{y(total):.1f}")
        while index < len(spend) and spend[index][1] == order:
            t, _, total = spend[index]
            parts.append(f"H{lane.x(t):.1f}V{y(total):.1f}")
            index += 1
        parts.append(f"H{lane.x(lane.attempt.last_ns):.1f}")
    marks = []
    for mark in report.acct.marks:
        mark_lane = geoms.get(mark.attempt)
        if mark_lane is None:
            continue
        lane = mark_lane
        cls = "stop" if mark.stop else "warn"
        marks.append(
            (
                lane.x(mark.t),
                y(mark.spent),
                cls,
                f"{'hard stop' if mark.stop else 'budget warning'}: {mark.reason} "
                f"({money(mark.spent)}, {mark.fraction:.0%} of the cap)",
            )
        )
    if report.status == "budget_exhausted":
        final = report.attempts[-1]
        lane = geoms[final.order]
        marks.append((lane.x(final.last_ns), y(spent_max), "stop", "hard stop: the budget cap was reached"))
    ticks = [(y(top * f / 4), money(top * f / 4, short=True)) for f in range(5)]
    return BudgetChart(
        BAR_X + BAR_W + 20,
        height,
        "".join(parts),
        y(cap) if cap else None,
        f"cap {money(cap, short=True)}" if cap else "",
        marks,
        ticks,
        top,
    )
