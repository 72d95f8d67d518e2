"""A report's content, built from a run's events: the header, the spans of every attempt,
the accounting, and the tables (checks, policy decisions, remediations, cache hits,
errors, captured content).  Rendering is :mod:`.render`'s job; nothing here is HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import attributes as attr
from ..redaction import redact
from .figures import Accounting, account
from .load import Event, LoadedJson, split_attempts
from .spans import Attempt, Span, _num, build_attempt

__all__ = ["Report", "build_report", "exit_reason"]

_ERROR_POINTS = (
    "validation_failed",
    "llm_retry",
    "model_unhealthy",
    "json_mode_rejected",
    "task_skipped",
    "decomposition_fallback",
)


@dataclass
class Row:
    """One line of a table: the cells as text, and the span it belongs to (or None)."""

    cells: list[object]
    span: Span | None = None
    attempt: int = 0
    cls: str = ""


@dataclass
class Content:
    span: Span
    prompt: str = ""
    system: str = ""
    completion: str = ""


@dataclass
class Report:
    project_id: str
    description: str
    criteria: str
    budget_usd: float | None
    time_limit_s: float | None
    attempts: list[Attempt]
    spans: list[Span]
    acct: Accounting
    status: str
    exit_reason: str
    profile: str
    isolation: str
    recorded: LoadedJson
    """The final attempt's own totals (``project.*`` on its root), when it finished."""
    mismatches: list[str]
    notes: list[str] = field(default_factory=list)
    checks: list[Row] = field(default_factory=list)
    policies: list[Row] = field(default_factory=list)
    remediations: list[Row] = field(default_factory=list)
    cache_hits: list[Row] = field(default_factory=list)
    errors: list[Row] = field(default_factory=list)
    content: list[Content] = field(default_factory=list)

    @property
    def wall_ns(self) -> int:
        """Time the run ran, summed over its attempts (gaps between them excluded)."""
        return sum(a.duration_ns for a in self.attempts)

    @property
    def span_ns(self) -> int:
        """From the first attempt's start to the last one's end, gaps included."""
        return self.attempts[-1].last_ns - self.attempts[0].first_ns

    @property
    def models_used(self) -> list[str]:
        return [m.model for m in self.acct.models]


def exit_reason(final: Attempt, status: str, tasks_done: int, tasks_total: int) -> str:
    """Why the run (its last attempt) ended, for people."""
    finished = final.finished
    if finished is None:
        return "stopped: the process ended before the run finished (killed?); resume it to go on"
    if finished.get("status") == "cancelled":
        return "interrupted (Ctrl-C): the results so far are kept"
    if finished.get("status") == "error":
        return f"failed: {finished.get('error_type') or 'error'}"
    return {
        "success": f"every task completed ({tasks_done}/{tasks_total})",
        "budget_exhausted": "the budget cap was reached: no further call could be paid",
        "timed_out": "the time cap was reached",
        "partial_success": f"{tasks_done} of {tasks_total} tasks completed; the others were degraded, failed "
        "or skipped",
        "failed": f"no task completed ({tasks_done}/{tasks_total})",
    }.get(status, status)


ISOLATION_KEYS = ("orchestrator.sandbox",)
"""Where the run records the isolation its model-written code ran under (on the root);
any field or attribute named ``isolation`` or ``*.isolation`` counts too."""


def _isolation(attempts: Sequence[Attempt]) -> str:
    """The isolation level of the acceptance checks, when the events say."""
    found: list[str] = []
    for attempt in attempts:
        for span in attempt.spans:
            for source in (span.attrs, *span.points):
                for key, value in source.items():
                    if (
                        (key in ISOLATION_KEYS or key == "isolation" or key.endswith(".isolation"))
                        and value
                        and str(value) not in found
                    ):
                        found.append(str(value))
    return ", ".join(found)


def build_report(events: Sequence[Event], *, notes: Sequence[str] = (), status: str | None = None) -> Report:
    """The report of one run's events (one or more attempts).  ``notes`` and ``status``:
    what the run store adds when the report is made from it (``interrupted`` is known
    there, not in the events)."""
    project_id, groups = split_attempts(events)
    attempts = [build_attempt(n, group) for n, group in enumerate(groups, 1)]
    spans = [s for a in attempts for s in a.spans]
    for index, span in enumerate(spans):
        span.index = index
    acct = account(attempts)
    final = attempts[-1]
    started = attempts[0].started
    recorded = {k: v for k, v in final.root.attrs.items() if k.startswith("project.")} if final.finished else {}
    run_status = str(recorded.get(attr.PROJECT_STATUS) or status or ("stopped" if final.finished is None else "?"))
    done = sum(1 for t in acct.tasks if t.status == "completed")
    profile = next(
        (
            str(a.root.attrs[attr.ORCHESTRATOR_PROFILE])
            for a in reversed(attempts)
            if a.root.attrs.get(attr.ORCHESTRATOR_PROFILE)
        ),
        "",
    )
    report = Report(
        project_id=project_id,
        description=str(started.get("description") or ""),
        criteria=str(started.get("criteria") or ""),
        budget_usd=_num(final.started.get("budget_usd")) or None,
        time_limit_s=_num(final.started.get("time_limit_seconds")),
        attempts=attempts,
        spans=spans,
        acct=acct,
        status=run_status,
        exit_reason=exit_reason(final, run_status, done, len(acct.tasks)),
        profile=profile,
        isolation=_isolation(attempts),
        recorded=recorded,
        mismatches=_mismatches(recorded, acct),
        notes=[redact(str(n)) for n in notes],
    )
    _tables(report)
    return report


def _mismatches(recorded: LoadedJson, acct: Accounting) -> list[str]:
    """Where the run's own totals differ from the sum of its calls (should be nowhere)."""
    if not recorded:
        return []
    t = acct.totals
    pairs = [
        (attr.PROJECT_LLM_CALLS, t.calls),
        (attr.PROJECT_CACHED_CALLS, t.cached),
        (attr.PROJECT_TOKENS_IN, t.tokens_in),
        (attr.PROJECT_TOKENS_OUT, t.tokens_out),
        (attr.PROJECT_COST_USD, round(t.cost, 8)),
    ]
    out = []
    for key, mine in pairs:
        theirs = _num(recorded.get(key))
        if theirs is not None and abs(theirs - mine) > 1e-9:
            out.append(f"{key}: the run recorded {theirs:g}, its calls add up to {mine:g}")
    return out


def _tables(report: Report) -> None:
    for attempt in report.attempts:
        n = attempt.number
        for span in attempt.spans:
            if span.kind == "checks":
                for point in span.points:
                    report.checks.append(
                        Row(
                            [
                                span.task_id or "",
                                point.get("iteration", ""),
                                point.get("stage", ""),
                                str(point.get("check") or ""),
                                "passed" if point.get("passed") is True else "FAILED",
                                str(point.get("error_type") or ""),
                            ],
                            span,
                            n,
                            "" if point.get("passed") else "bad",
                        )
                    )
            elif span.kind == "policy":
                a = span.attrs
                passed = a.get(attr.POLICY_PASSED)
                report.policies.append(
                    Row(
                        [
                            span.task_id or "(planning)",
                            str(a.get(attr.POLICY_MODEL) or span.start_fields.get("model") or ""),
                            "allowed" if passed is True else "blocked" if passed is False else span.status,
                            _text(a.get(attr.POLICY_NAMES)),
                            _text(a.get(attr.POLICY_VIOLATIONS)),
                            _text(a.get(attr.POLICY_REASONS)),
                        ],
                        span,
                        n,
                        "bad" if passed is False else "",
                    )
                )
            elif span.kind == "remediation":
                a = span.attrs
                success = a.get(attr.REMEDIATION_SUCCESS)
                moved = " → ".join(
                    str(a[k]) for k in (attr.REMEDIATION_FROM_MODEL, attr.REMEDIATION_TO_MODEL) if a.get(k)
                )
                report.remediations.append(
                    Row(
                        [
                            span.task_id or "",
                            str(a.get(attr.REMEDIATION_TRIGGER) or span.start_fields.get("trigger") or ""),
                            str(a.get(attr.REMEDIATION_STRATEGY) or span.start_fields.get("strategy") or ""),
                            "succeeded" if success is True else "did not succeed" if success is False else span.status,
                            moved,
                            redact(_text(a.get(attr.REMEDIATION_DETAIL))),
                        ],
                        span,
                        n,
                        "bad" if success is not True else "",
                    )
                )
            if span.kind == "llm" and span.cached:
                hit = next((p for p in span.points if p["signal"] == "cache_hit"), {})
                report.cache_hits.append(
                    Row(
                        [span.task_id or "(planning)", span.model, span.call_type, str(hit.get("cache_key") or "")],
                        span,
                        n,
                    )
                )
            if span.status in ("error", "cancelled", "open"):
                what = span.error_type or ("never finished" if span.status == "open" else span.status)
                report.errors.append(
                    Row([span.name, span.task_id or "", what, redact(span.error_message)[:500]], span, n, "bad")
                )
            for point in span.points:
                if point["signal"] in _ERROR_POINTS:
                    report.errors.append(
                        Row(
                            [
                                point["signal"],
                                str(point.get("task_id") or ""),
                                str(point.get("error_type") or point.get("validator") or point.get("model") or ""),
                                redact(_point_text(point))[:500],
                            ],
                            span,
                            n,
                        )
                    )
            if span.kind == "llm":
                start, finish = span.start_fields, span.finish_fields
                texts = {
                    k: str(v)
                    for k, v in (
                        ("prompt", start.get("prompt")),
                        ("system", start.get("system")),
                        ("completion", finish.get("completion")),
                    )
                    if v
                }
                if texts:
                    report.content.append(Content(span, **{k: redact(v) for k, v in texts.items()}))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _point_text(point: Event) -> str:
    for key in ("message", "reason", "mode", "error_type"):
        if point.get(key):
            extra = f" (status {point['status_code']})" if point.get("status_code") else ""
            return f"{point[key]}{extra}"
    return ""
