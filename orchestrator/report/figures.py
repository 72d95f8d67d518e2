"""The numbers of a report, from its attempts' spans: the run's accounting, by task and
by model, scores per iteration, the budget over time.

Why "kept" accounting: the run's totals (``summary.json``'s ``usage``, the root span's
``project.*``) count every call behind a result the run kept once - the planning calls
and each task's calls in the attempt whose result was kept - so a resumed run adds up
as an uninterrupted one would.  The report counts the same way, from the calls, and
shows apart what was spent on work that stopped unfinished and ran again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .. import attributes as attr
from .load import Event
from .spans import Attempt, Span, _num

__all__ = ["Usage", "TaskRow", "ModelRow", "IterationRow", "BudgetMark", "Accounting", "account"]

PLANNING = "(planning)"


@dataclass
class Usage:
    """What a group of LLM call attempts consumed, counted as the run counts it: a cached
    answer is a call with no tokens and $0; an unpriced call is counted apart."""

    calls: int = 0
    cached: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    unpriced: int = 0

    def add(self, call: Span) -> None:
        self.calls += 1
        if call.status != "ok":
            self.failed += 1
        if call.cached:
            self.cached += 1
            return
        self.tokens_in += call.tokens_in
        self.tokens_out += call.tokens_out
        self.cost += call.cost
        if call.unpriced:
            self.unpriced += 1

    @classmethod
    def of(cls, calls: Iterable[Span]) -> Usage:
        usage = cls()
        for call in calls:
            usage.add(call)
        return usage

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass
class TaskRow:
    id: str
    type: str = ""
    status: str = "running"
    score: float | None = None
    threshold: float | None = None
    iterations: int = 0
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    checks_passed: int = 0
    checks_total: int = 0
    attempt: int = 0
    """The run's attempt number whose result this is."""
    restored: bool = False
    """Kept from an earlier attempt's checkpoint by a resumed run."""
    span: Span | None = None
    note: str = ""

    @property
    def score_note(self) -> str:
        """Why there is no score, when there is none."""
        if self.score is not None:
            return ""
        if self.checks_total and self.checks_passed == self.checks_total:
            return f"no evaluator score: the acceptance checks passed ({self.checks_passed}/{self.checks_total})"
        if self.status == "failed":
            return "no evaluator score: no output passed the validators"
        if self.status in ("running", "open"):
            return "no evaluator score: did not finish"
        return "no evaluator score"


@dataclass
class ModelRow:
    model: str
    usage: Usage = field(default_factory=Usage)


@dataclass
class IterationRow:
    task: str
    attempt: int
    iteration: int
    score: float | None
    """The evaluator's score; None when no evaluator scored the round."""
    gate_score: float | None
    best: float | None
    checks_passed: int = 0
    checks_total: int = 0
    note: str = ""


@dataclass
class BudgetMark:
    t: int
    attempt: int
    spent: float
    fraction: float
    reason: str
    stop: bool


@dataclass
class Accounting:
    """The run's accounting, rebuilt from its calls."""

    totals: Usage
    other: Usage
    """Calls on work whose result was not kept (it stopped unfinished and ran again, or never finished)."""
    tasks: list[TaskRow]
    models: list[ModelRow]
    planning: Usage
    kept_calls: list[Span]
    iterations: list[IterationRow]
    spend: list[tuple[int, int, float]]
    """(time ns, attempt order, cumulative spend) after each priced call, every attempt."""
    marks: list[BudgetMark]


@dataclass
class _Kept:
    """Where a task's kept result comes from: an attempt and its span there (None when
    that attempt's events are not here), and the ``task_restored`` event of a resumed
    run that kept it."""

    attempt: Attempt | None
    span: Span | None
    restored: Event | None = None


def _kept_results(attempts: Sequence[Attempt]) -> dict[str, _Kept]:
    """Each task's kept result: the last attempt that finished it, unless a later one
    kept an earlier attempt's result (``task_restored``)."""
    kept: dict[str, _Kept] = {}
    by_number: dict[int, Attempt] = {}
    for attempt in attempts:
        by_number[attempt.number] = attempt
        for point in attempt.points:
            if point["signal"] == "task_restored" and point.get("task_id"):
                tid = str(point["task_id"])
                source = by_number.get(int(_num(point.get("from_attempt")) or 0))
                span = _result_span(source, tid) if source is not None else None
                kept[tid] = _Kept(source if span is not None else None, span, point)
        for span in attempt.tasks:
            if span.status != "open" and span.task_id:
                kept[span.task_id] = _Kept(attempt, span)
    return kept


def _result_span(attempt: Attempt, task_id: str) -> Span | None:
    """The task's span in ``attempt`` whose result a later attempt kept: the finished one,
    else the last one (a kill right after the checkpoint that kept it, before its
    ``task_finished`` reached the log: its calls are all there, the checkpoint came after
    them)."""
    spans = attempt.task_spans.get(task_id, [])
    finished = [s for s in spans if s.status != "open"]
    chosen = finished or spans
    return chosen[-1] if chosen else None


def _task_row(tid: str, kept: _Kept, final: Attempt) -> TaskRow:
    span, point = kept.span, kept.restored or {}
    a = span.attrs if span is not None and span.status != "open" else {}
    start = span.start_fields if span is not None else {}
    row = TaskRow(
        id=tid,
        type=str(a.get(attr.TASK_TYPE) or start.get("task_type") or ""),
        status=str(a.get(attr.TASK_STATUS) or point.get("status") or (span.status if span else "")),
        score=_num(a.get(attr.TASK_SCORE)) if a else _num(point.get("score")),
        threshold=_num(a.get(attr.TASK_THRESHOLD)),
        iterations=int(_num(a.get(attr.TASK_ITERATIONS)) or 0),
        model=str(a.get(attr.TASK_MODEL) or point.get("model") or ""),
        checks_passed=int(_num(a.get(attr.TASK_CHECKS_PASSED)) or 0),
        checks_total=int(_num(a.get(attr.TASK_CHECKS_TOTAL)) or 0),
        attempt=kept.attempt.number if kept.attempt is not None else int(_num(point.get("from_attempt")) or 0),
        restored=kept.restored is not None or (kept.attempt is not None and kept.attempt is not final),
        span=span,
    )
    if kept.attempt is None:
        row.note = "kept from an attempt whose events are not here: its calls are not counted"
    return row


def account(attempts: Sequence[Attempt]) -> Accounting:
    final = attempts[-1]
    kept_calls: list[Span] = []
    tasks: dict[str, TaskRow] = {}
    for tid, kept in _kept_results(attempts).items():
        row = _task_row(tid, kept, final)
        if kept.attempt is not None:
            calls = kept.attempt.by_task.get(tid, [])
            row.usage = Usage.of(calls)
            kept_calls.extend(calls)
        tasks[tid] = row
    planners = [a for a in attempts if a.by_task.get(None)]
    planning_calls = list(planners[-1].by_task[None]) if planners else []
    kept_calls.extend(planning_calls)
    kept_ids = {id(c) for c in kept_calls}
    other = Usage.of(c for a in attempts for c in a.calls if id(c) not in kept_ids)
    # tasks that ran but kept no result (killed mid-task and not run again)
    for attempt in attempts:
        for span in attempt.tasks:
            if span.task_id and span.task_id not in tasks:
                row = _task_row(span.task_id, _Kept(attempt, span), final)
                row.status, row.note = "unfinished", "stopped before it finished: its calls are not in the totals"
                row.usage = Usage.of(attempt.by_task.get(span.task_id, []))
                tasks[span.task_id] = row
    for tid, (number, reason) in _not_run(attempts).items():
        if tid not in tasks:
            tasks[tid] = TaskRow(
                tid,
                status="skipped" if reason is not None else "not run",
                attempt=number,
                note=reason or "planned, never started",
            )
    order = _task_order(attempts)
    rows = sorted(tasks.values(), key=lambda r: order.get(r.id, len(order)))
    models: dict[str, ModelRow] = {}
    for call in kept_calls:
        models.setdefault(call.model, ModelRow(call.model)).usage.add(call)
    return Accounting(
        totals=Usage.of(kept_calls),
        other=other,
        tasks=rows,
        models=sorted(models.values(), key=lambda m: (-m.usage.cost, -m.usage.tokens, m.model)),
        planning=Usage.of(planning_calls),
        kept_calls=kept_calls,
        iterations=_iterations(attempts),
        spend=_spend(attempts),
        marks=_marks(attempts),
    )


def _not_run(attempts: Sequence[Attempt]) -> dict[str, tuple[int, str | None]]:
    """Planned tasks that did not run, by id: (attempt, the ``task_skipped`` reason, or
    None when the attempt ended before they started)."""
    out: dict[str, tuple[int, str | None]] = {}
    for attempt in attempts:
        planned = [p for p in attempt.points if p["signal"] == "tasks_planned"]
        for point in planned[-1:]:
            for tid in point.get("task_ids") or ():
                out.setdefault(str(tid), (attempt.number, None))
        for point in attempt.points:
            if point["signal"] == "task_skipped" and point.get("task_id"):
                out[str(point["task_id"])] = (attempt.number, str(point.get("reason") or "skipped"))
    return out


def _task_order(attempts: Sequence[Attempt]) -> dict[str, int]:
    """Tasks in the order planned (``tasks_planned``), then as they started."""
    order: dict[str, int] = {}
    for attempt in attempts:
        for point in attempt.points:
            if point["signal"] == "tasks_planned":
                for tid in point.get("task_ids") or ():
                    order.setdefault(str(tid), len(order))
        for span in attempt.tasks:
            if span.task_id:
                order.setdefault(span.task_id, len(order))
    return order


def _iterations(attempts: Sequence[Attempt]) -> list[IterationRow]:
    rows: list[IterationRow] = []
    for attempt in attempts:
        checks: dict[tuple[str, int], list[bool]] = {}
        failed: dict[tuple[str, int], list[str]] = {}
        for span in attempt.spans:
            for point in span.points:
                key = (str(point.get("task_id") or ""), int(_num(point.get("iteration")) or 0))
                if point["signal"] == "acceptance_check" and span.kind == "checks":
                    checks.setdefault(key, []).append(point.get("passed") is True)
                elif point["signal"] == "validation_failed":
                    failed.setdefault(key, []).append(str(point.get("validator") or "?"))
        for span in attempt.spans:
            for point in span.points:
                if point["signal"] != "iteration_scored":
                    continue
                tid = str(point.get("task_id") or "")
                iteration = int(_num(point.get("iteration")) or 0)
                results = checks.get((tid, iteration), [])
                rejected = failed.get((tid, iteration), [])
                ev = _num(point.get("evaluator_score"))
                note = ""
                if ev is None:
                    if rejected:
                        note = f"rejected by {', '.join(sorted(set(rejected)))}: no evaluator asked"
                    elif results and all(results):
                        note = "checks passed: no evaluator asked"
                    else:
                        note = "no evaluator score"
                rows.append(
                    IterationRow(
                        tid,
                        attempt.number,
                        iteration,
                        ev,
                        _num(point.get("score")),
                        _num(point.get("best_score")),
                        sum(results),
                        len(results),
                        note,
                    )
                )
    return rows


def _spend(attempts: Sequence[Attempt]) -> list[tuple[int, int, float]]:
    calls = sorted(((c.end, a.order, c) for a in attempts for c in a.calls), key=lambda x: (x[0], x[1]))
    out: list[tuple[int, int, float]] = []
    total = 0.0
    for end, order, call in calls:
        if call.cached or call.cost == 0:
            continue
        total += call.cost
        out.append((end, order, total))
    return out


def _marks(attempts: Sequence[Attempt]) -> list[BudgetMark]:
    marks = []
    for attempt in attempts:
        for point in attempt.points:
            if point["signal"] != "budget_warning":
                continue
            reason = str(point.get("reason") or "")
            marks.append(
                BudgetMark(
                    int(point["timestamp_ns"]),
                    attempt.order,
                    _num(point.get("spent_usd")) or 0.0,
                    _num(point.get("fraction")) or 0.0,
                    reason,
                    stop=reason.startswith("overrun") or " refused" in reason,
                )
            )
    return sorted(marks, key=lambda m: m.t)
