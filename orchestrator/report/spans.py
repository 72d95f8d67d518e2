"""The span tree of each attempt, rebuilt from its events: the same pairs the tracing
observer turns into spans (run > task > llm_call / policy_check / remediation), plus
the acceptance checks (point events that carry how long their sandboxed run took).

A pair whose finish never arrived (the process was killed) ends at the attempt's last
event, with status ``open``.  Each attempt's critical path is marked: the chain of spans
that decided when the attempt ended (walking back from the root's end, the child that
ended last before each point, as in Jaeger's critical path; a child still running at that
point ran beside the path, not on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import attributes as attr
from .load import Event, LoadedJson

__all__ = ["Span", "Attempt", "build_attempt", "PAIR_KINDS"]

PAIR_KINDS: dict[str, tuple[str, str]] = {
    "project_started": ("project", "project_finished"),
    "task_started": ("task", "task_finished"),
    "llm_call_started": ("llm", "llm_call_finished"),
    "policy_check_started": ("policy", "policy_checked"),
    "remediation_started": ("remediation", "remediation_finished"),
}
FINISHES = {finish: kind for kind, finish in PAIR_KINDS.values()}


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(eq=False)
class Span:
    """One span: a pair of events, or a round's acceptance checks."""

    id: str
    parent: str | None
    kind: str
    """project, task, llm, policy, remediation or checks."""
    name: str
    start: int
    end: int
    status: str = "open"
    """ok, error, cancelled, open (never finished), failed (checks that did not pass)."""
    error_type: str = ""
    error_message: str = ""
    attrs: LoadedJson = field(default_factory=dict)
    start_fields: LoadedJson = field(default_factory=dict)
    finish_fields: LoadedJson = field(default_factory=dict)
    task_id: str | None = None
    children: list[Span] = field(default_factory=list)
    points: list[Event] = field(default_factory=list)
    critical: bool = False
    depth: int = 0
    index: int = -1
    """Position in the report's span list (set by the report)."""

    @property
    def duration_ns(self) -> int:
        return max(0, self.end - self.start)

    # -- an llm_call's figures ----------------------------------------------------------
    @property
    def model(self) -> str:
        return str(self.attrs.get(attr.LLM_MODEL) or self.start_fields.get("model") or "")

    @property
    def call_type(self) -> str:
        return str(self.attrs.get(attr.LLM_CALL_TYPE) or self.start_fields.get("call_type") or "")

    @property
    def tokens_in(self) -> int:
        return int(_num(self.attrs.get(attr.LLM_TOKENS_IN)) or 0)

    @property
    def tokens_out(self) -> int:
        return int(_num(self.attrs.get(attr.LLM_TOKENS_OUT)) or 0)

    @property
    def cost(self) -> float:
        return _num(self.attrs.get(attr.LLM_COST_USD)) or 0.0

    @property
    def cached(self) -> bool:
        return bool(self.attrs.get(attr.LLM_CACHED))

    @property
    def unpriced(self) -> bool:
        return bool(self.attrs.get(attr.ORCHESTRATOR_UNPRICED))

    @property
    def queue_ns(self) -> int:
        """Time before the request left (``llm_call_dispatched``), 0 when not known."""
        for point in self.points:
            if point["signal"] == "llm_call_dispatched":
                return max(0, min(self.duration_ns, int(point["timestamp_ns"]) - self.start))
        queued = _num(self.attrs.get(attr.ORCHESTRATOR_QUEUE_MS))
        return max(0, min(self.duration_ns, int(queued * 1e6))) if queued is not None else 0

    @property
    def failed(self) -> bool:
        return self.status not in ("ok",)


@dataclass(eq=False)
class Attempt:
    """One attempt of the run: its root span, every span in tree order, its point events."""

    order: int
    """1, 2, ... in time order."""
    number: int
    """The run's own attempt number (``project_started.attempt``)."""
    root: Span
    spans: list[Span]
    points: list[Event]
    started: Event
    finished: Event | None
    first_ns: int
    last_ns: int

    calls: list[Span] = field(default_factory=list)
    """The LLM calls, in tree order."""
    tasks: list[Span] = field(default_factory=list)
    by_task: dict[str | None, list[Span]] = field(default_factory=dict)
    """The calls of each task (None: the planning's)."""
    task_spans: dict[str, list[Span]] = field(default_factory=dict)
    """The spans of each task (one, or more when a task ran twice in an attempt)."""

    def __post_init__(self) -> None:
        self.calls = [s for s in self.spans if s.kind == "llm"]
        self.tasks = [s for s in self.spans if s.kind == "task"]
        for call in self.calls:
            self.by_task.setdefault(call.task_id, []).append(call)
        for task in self.tasks:
            self.task_spans.setdefault(task.task_id or "", []).append(task)

    @property
    def duration_ns(self) -> int:
        return max(0, self.last_ns - self.first_ns)


def _name(kind: str, start: Event) -> str:
    if kind == "project":
        return "run_project"
    if kind == "task":
        return f"task:{start.get('task_id', '?')}"
    if kind == "llm":
        return f"llm_call:{start.get('call_type', '?')}"
    return "policy_check" if kind == "policy" else kind


def _check_spans(points: Sequence[Event]) -> list[Span]:
    """A round's acceptance checks as one span: they run together in one sandboxed run."""
    groups: dict[tuple[str | None, str | None, object, object, object], list[Event]] = {}
    for p in points:
        if p["signal"] == "acceptance_check":
            # one sandboxed run's checks share its duration (and are sent one after another)
            key = (p.get("parent_id"), p.get("task_id"), p.get("iteration"), p.get("stage"), p.get("duration_ms"))
            groups.setdefault(key, []).append(p)
    out = []
    for (parent, task_id, iteration, stage, _), checks in groups.items():
        took = max((_num(c.get("duration_ms")) or 0.0) for c in checks)
        ts = min(int(c["timestamp_ns"]) for c in checks)
        passed = sum(1 for c in checks if c.get("passed") is True)
        span = Span(
            id=f"checks-{checks[0]['correlation_id']}",
            parent=parent,
            kind="checks",
            name=f"checks:{stage or 'run'}",
            start=int(ts - took * 1e6),
            end=int(ts),
            status="ok" if passed == len(checks) else "failed",
            task_id=task_id,
            attrs={"checks.passed": passed, "checks.total": len(checks), "checks.iteration": iteration},
        )
        span.points.extend(checks)
        out.append(span)
    return out


def build_attempt(order: int, events: Sequence[Event]) -> Attempt:
    """The spans of one attempt's events (the first is its ``project_started``)."""
    spans: dict[str, Span] = {}
    points: list[Event] = []
    last = max(int(e["timestamp_ns"]) for e in events)
    for e in events:
        signal = e["signal"]
        if signal in PAIR_KINDS:
            kind = PAIR_KINDS[signal][0]
            spans[e["correlation_id"]] = Span(
                id=e["correlation_id"],
                parent=e.get("parent_id"),
                kind=kind,
                name=_name(kind, e),
                start=int(e["timestamp_ns"]),
                end=last,
                attrs=dict(e.get("attributes") or {}),
                start_fields=e,
                task_id=e.get("task_id") or None,
            )
        elif signal in FINISHES:
            span = spans.get(e["correlation_id"])
            if span is None:
                continue  # its start was not recorded
            span.end = max(span.start, int(e["timestamp_ns"]))
            span.status = str(e.get("status") or "ok")
            span.error_type = str(e.get("error_type") or "")
            span.error_message = str(e.get("error_message") or "")
            span.attrs.update(e.get("attributes") or {})
            span.finish_fields = e
        else:
            points.append(e)
    for check in _check_spans(points):
        spans[check.id] = check
    root = next(s for s in spans.values() if s.kind == "project")
    for point in points:
        holder = spans.get(point.get("parent_id") or "")
        (holder or root).points.append(point)
    for span in spans.values():
        if span is root:
            continue
        parent = spans.get(span.parent or "")
        if parent is None or parent is span:
            span.parent = root.id
            parent = root
        parent.children.append(span)
    ordered: list[Span] = []

    def visit(span: Span, depth: int) -> None:
        span.depth = depth
        ordered.append(span)
        for child in sorted(span.children, key=lambda c: (c.start, c.end)):
            visit(child, depth + 1)

    visit(root, 0)
    _mark_critical(root)
    started = events[0]
    finished = root.finish_fields or None
    return Attempt(
        order=order,
        number=int(_num(started.get("attempt")) or order),
        root=root,
        spans=ordered,
        points=points,
        started=started,
        finished=finished,
        first_ns=min(int(e["timestamp_ns"]) for e in events),
        last_ns=last,
    )


def _mark_critical(root: Span) -> None:
    """Mark the spans on the critical path under ``root``."""
    stack: list[tuple[Span, int]] = [(root, root.end)]
    while stack:
        span, until = stack.pop()
        span.critical = True
        point = min(until, span.end)
        for child in sorted(span.children, key=lambda c: c.end, reverse=True):
            if point <= span.start:
                break
            if child.end > point or child.duration_ns == 0:
                continue  # still running at this point: concurrent work, not what the parent waited for
            stack.append((child, child.end))
            point = child.start
