"""One self-contained HTML file from a :class:`~.model.Report`: a Jinja2 template with
inline SVG, one inline style sheet, one small inline script, and the report's numbers as
a JSON data block.

Why it is safe with hostile text (task ids, model names, error messages and captured
completions come from users and models):

* the template escapes every value by default (``autoescape``), in text, attributes and
  SVG alike; nothing is marked safe but our own style sheet, script and the JSON block;
* the JSON block escapes ``<``, ``>`` and ``&`` (and the two JavaScript line
  separators), so no string can end the block or open a comment in it;
* a Content-Security-Policy meta tag allows nothing (``default-src 'none'``) but the one
  inline style sheet and the one inline script, by their SHA-256 hashes: an injected
  ``<script>``, event handler or ``style`` attribute would not run even if escaping
  failed; the script builds its tooltips with ``textContent`` only.

Why no chart library: measured for the issue, a 50-span Gantt and two bar charts as
inline SVG are 23 KB; the same with plotly is 4.8 MB.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from .charts import budget_chart, cost_charts, score_chart, timeline
from .figures import Usage
from .format import clock, duration, money, tokens
from .model import Report

if TYPE_CHECKING:
    import jinja2

__all__ = ["render_html", "json_block", "csp_hash"]


def _static(name: str) -> str:
    return resources.files("orchestrator.report").joinpath("static", name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    """The CSP source expression allowing exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def json_block(data: object) -> str:
    """JSON that is safe inside ``<script type="application/json">``: nothing in it can
    end the element or start markup."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("multi-llm-orchestrator")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"


def _data(report: Report) -> dict[str, Any]:
    """The report's numbers for scripts and machines (the JSON data block)."""
    t = report.acct.totals

    def usage(u: Usage) -> dict[str, Any]:
        return {
            "calls": u.calls,
            "cached_calls": u.cached,
            "failed_calls": u.failed,
            "tokens_in": u.tokens_in,
            "tokens_out": u.tokens_out,
            "cost_usd": round(u.cost, 8),
            "unpriced_calls": u.unpriced,
        }

    spans = []
    for attempt in report.attempts:
        for s in attempt.spans:
            spans.append(
                [
                    s.name,
                    s.kind,
                    attempt.number,
                    round((s.start - attempt.first_ns) / 1e6, 3),
                    round(s.duration_ns / 1e6, 3),
                    round(s.queue_ns / 1e6, 3) if s.kind == "llm" else 0,
                    s.model if s.kind == "llm" else "",
                    s.status,
                    s.error_type,
                    s.tokens_in if s.kind == "llm" else 0,
                    s.tokens_out if s.kind == "llm" else 0,
                    round(s.cost, 8) if s.kind == "llm" else 0,
                    s.unpriced,
                    s.cached,
                    s.critical,
                    s.task_id or "",
                ]
            )
    return {
        "project_id": report.project_id,
        "status": report.status,
        "exit_reason": report.exit_reason,
        "profile": report.profile,
        "isolation": report.isolation,
        "budget_usd": report.budget_usd,
        "wall_seconds": round(report.wall_ns / 1e9, 3),
        "totals": usage(t),
        "other": usage(report.acct.other),
        "planning": usage(report.acct.planning),
        "recorded": report.recorded,
        "mismatches": report.mismatches,
        "attempts": [
            {
                "number": a.number,
                "start_ns": a.first_ns,
                "end_ns": a.last_ns,
                "finished": a.finished is not None,
                "tasks": len(a.tasks),
                "calls": len(a.calls),
            }
            for a in report.attempts
        ],
        "tasks": [
            {
                "id": r.id,
                "status": r.status,
                "score": r.score,
                "threshold": r.threshold,
                "attempt": r.attempt,
                "restored": r.restored,
                **usage(r.usage),
            }
            for r in report.acct.tasks
        ],
        "models": [{"model": m.model, **usage(m.usage)} for m in report.acct.models],
        "span_fields": [
            "name",
            "kind",
            "attempt",
            "start_ms",
            "duration_ms",
            "queue_ms",
            "model",
            "status",
            "error_type",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "unpriced",
            "cached",
            "critical",
            "task",
        ],
        "spans": spans,
    }


def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=duration, money=money, tokens=tokens, clock=clock, px=lambda v: f"{float(v):.1f}")
    return env


def critical_path(report: Report) -> list[str]:
    """The critical path of each attempt as text: its tasks and calls in order."""
    out = []
    for attempt in report.attempts:
        steps = [
            s
            for s in attempt.spans
            if s.critical and s.kind in ("task", "llm", "checks", "remediation") and s.duration_ns > 0
        ]
        steps.sort(key=lambda s: s.start)
        shown = " → ".join(f"{s.name} ({duration(s.duration_ns)})" for s in steps[:40])
        more = f" → … {len(steps) - 40} more" if len(steps) > 40 else ""
        out.append(f"attempt {attempt.number}: {shown or 'no spans'}{more}")
    return out


def render_html(report: Report) -> str:
    """The report as one HTML document (no external resource of any kind)."""
    from markupsafe import Markup

    css, js = _static("report.css"), _static("report.js")
    csp = (
        f"default-src 'none'; script-src {csp_hash(js)}; style-src {csp_hash(css)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        csp=csp,
        css=Markup(css),
        js=Markup(js),
        data=Markup(json_block(_data(report))),
        tl=timeline(report),
        bars=cost_charts(report),
        scores=score_chart(report),
        budget=budget_chart(report),
        critical=critical_path(report),
        version=_version(),
    )
