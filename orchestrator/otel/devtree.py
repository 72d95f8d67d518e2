"""Dev-mode tracing output: finished spans rendered as a rich tree.

With tracing on and no OTLP endpoint, spans are collected in memory by
:class:`DevTreeExporter` and shown as a tree when the run ends::

    run_project  2.31 s  1200→610 tok  $0.004120  success
    ├── llm_call:decompose  gpt-4o  410 ms  300→120 tok  $0.001950  ok
    └── task:t1  1.80 s  900→490 tok  $0.002170  completed  score 0.95
        ├── llm_call:generate  gpt-4o  600 ms  ...

Imported only when tracing is on (it needs the OpenTelemetry SDK).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode
from rich.markup import escape
from rich.tree import Tree

from .. import attributes as attr
from ..attributes import GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS
from ..observers.base import number, whole

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["render_span_tree", "print_span_tree", "DevTreeExporter", "span_label"]

_TOKENS = (
    (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS),
    (attr.TASK_TOKENS_IN, attr.TASK_TOKENS_OUT),
    (attr.PROJECT_TOKENS_IN, attr.PROJECT_TOKENS_OUT),
    (attr.BATCH_TOKENS_IN, attr.BATCH_TOKENS_OUT),
    (attr.rollup_key("remediation", attr.ROLLUP_TOKENS_IN), attr.rollup_key("remediation", attr.ROLLUP_TOKENS_OUT)),
)
# shown by the status, score, tree already
_ROUTINE_EVENTS = {"exception", "iteration_scored", "tasks_planned", "task_restored"}
_COST = (
    attr.LLM_COST_USD,
    attr.TASK_COST_USD,
    attr.PROJECT_COST_USD,
    attr.BATCH_COST_USD,
    attr.rollup_key("remediation", attr.ROLLUP_COST_USD),
)


def _duration(span: ReadableSpan) -> str:
    if span.start_time is None or span.end_time is None:
        return "open"
    ns = span.end_time - span.start_time
    if ns < 1_000_000:
        return f"{ns / 1e6:.2f} ms"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.0f} ms"
    return f"{ns / 1e9:.2f} s"


def span_label(span: ReadableSpan) -> str:
    """One line: name, model, duration, tokens, cost, status (rich markup)."""
    a = span.attributes or {}
    parts = [f"[bold]{escape(span.name)}[/bold]"]
    if attr.LLM_MODEL in a:
        parts.append(f"[cyan]{escape(str(a['llm.model']))}[/cyan]")
    elif attr.POLICY_MODEL in a:  # which model a policy check judged
        parts.append(f"[cyan]{escape(str(a[attr.POLICY_MODEL]))}[/cyan]")
    parts.append(_duration(span))
    for tin_key, tout_key in _TOKENS:
        if tin_key in a or tout_key in a:
            parts.append(f"{a.get(tin_key, 0)}→{a.get(tout_key, 0)} tok")
            break
    for key in _COST:
        if key in a:
            parts.append(f"${number(a[key]) or 0.0:.6f}")
            break
    if a.get(attr.LLM_CACHED):
        parts.append("[dim]cached[/dim]")
    for key in (attr.PROJECT_STATUS, attr.TASK_STATUS, attr.BATCH_STATUS):
        if key in a:
            parts.append(escape(str(a[key])))
    if attr.TASK_SCORE in a:
        parts.append(f"score {number(a[attr.TASK_SCORE]) or 0.0:.2f}")
    attempt = a.get(attr.ORCHESTRATOR_ATTEMPT)
    if isinstance(attempt, int) and attempt > 1:
        parts.append(
            f"[cyan]resumed: attempt {attempt}[/cyan]"
            + (f" [dim](linked to {len(span.links)} earlier)[/dim]" if span.links else "")
        )
    if attr.POLICY_PASSED in a:
        noted = whole(a.get(attr.POLICY_VIOLATIONS)) or 0
        if not a[attr.POLICY_PASSED]:
            parts.append("[yellow]blocked[/yellow]")
        else:  # soft/monitor violations do not block but are worth seeing
            parts.append("passed" + (f" ({noted} violation{'s' if noted > 1 else ''} noted)" if noted else ""))
    if attr.REMEDIATION_STRATEGY in a:
        parts.append(escape(f"{a[attr.REMEDIATION_STRATEGY]!s} ({a.get(attr.REMEDIATION_TRIGGER, '')!s})"))
        if attr.REMEDIATION_SUCCESS in a:
            parts.append("succeeded" if a[attr.REMEDIATION_SUCCESS] else "[yellow]did not help[/yellow]")
    if span.status.status_code == StatusCode.ERROR:
        parts.append(f"[bold red]ERROR[/bold red] [red]{escape(span.status.description or '')}[/red]")
    else:
        parts.append("[green]ok[/green]")
    if span.events:
        counts = collections.Counter(e.name for e in span.events if e.name not in _ROUTINE_EVENTS)
        if counts:
            parts.append(
                "[magenta]"
                + ", ".join(escape(name) + (f"×{n}" if n > 1 else "") for name, n in counts.items())
                + "[/magenta]"
            )
    return "  ".join(parts)


def render_span_tree(spans: Iterable[ReadableSpan], title: str | None = None) -> Tree:
    """The spans as a tree, children in start order.  Spans whose parent is not among
    them are roots; several roots hang under one title node."""
    spans = list(spans)
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int, list[ReadableSpan]] = collections.defaultdict(list)
    roots: list[ReadableSpan] = []
    for s in spans:
        parent = s.parent.span_id if s.parent is not None else None
        if parent is not None and parent in by_id:
            children[parent].append(s)
        else:
            roots.append(s)

    def key(s: ReadableSpan) -> tuple[int, str]:
        return (s.start_time or 0, s.name)

    def add(node: Tree, span: ReadableSpan) -> None:
        branch = node.add(span_label(span))
        add_children(branch, span)

    def add_children(branch: Tree, span: ReadableSpan) -> None:
        for label in restored_labels(span):
            branch.add(label)
        for child in sorted(children.get(span.context.span_id, ()), key=key):
            add(branch, child)

    roots.sort(key=key)
    if len(roots) == 1 and title is None:
        tree = Tree(span_label(roots[0]), guide_style="dim")
        add_children(tree, roots[0])
        return tree
    tree = Tree(escape(title or f"{len(spans)} spans"), guide_style="dim")
    for root in roots:
        add(tree, root)
    return tree


def restored_labels(span: ReadableSpan) -> list[str]:
    """A resumed run's tasks kept from the checkpoint (``task_restored`` events): they did
    not run in this trace, so they show as dim lines saying where they came from."""
    out = []
    for event in span.events or ():
        if event.name != "task_restored":
            continue
        e = event.attributes or {}
        out.append(
            f"[dim]task:{escape(str(e.get('task_id', '?')))}  from checkpoint (attempt "
            f"{e.get('from_attempt', '?')})  {e.get('tokens_in', 0)}→{e.get('tokens_out', 0)} tok  "
            f"${number(e.get('cost_usd')) or 0.0:.6f}  {escape(str(e.get('status', '')))}"
            + (f"  score {number(e.get('score')) or 0.0:.2f}" if number(e.get("score")) is not None else "")
            + "[/dim]"
        )
    return out


def print_span_tree(spans: Sequence[ReadableSpan], console: Console | None = None, title: str | None = None) -> None:
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    if not spans:
        console.print("[dim]tracing: no spans were recorded[/dim]")
        return
    console.print(render_span_tree(spans, title))


class DevTreeExporter(SpanExporter):
    """Keeps finished spans in memory (the last ``max_spans``); with ``print_on_root_end``
    prints a trace's tree on stderr when its root span ends."""

    def __init__(
        self, max_spans: int = 50_000, print_on_root_end: bool = False, console: Console | None = None
    ) -> None:
        self._spans: collections.deque[ReadableSpan] = collections.deque(maxlen=max_spans)
        self._lock = threading.Lock()
        self.print_on_root_end = print_on_root_end
        self.console = console

    @property
    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
        if self.print_on_root_end:
            for span in spans:
                if span.parent is None or span.parent.is_remote:
                    trace_id = span.context.trace_id
                    print_span_tree([s for s in self.spans if s.context.trace_id == trace_id], self.console)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
