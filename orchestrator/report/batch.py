"""A batch's report: one self-contained HTML file with one row per project, from a
batch's summary (``batch-summary.json``, or the record the run store keeps).

Same rules as a run's report (:mod:`.render`): every value escaped by the template, a
Content-Security-Policy that allows only our own inline style sheet, no script, no
external resource.  Each row names the project's id, so ``orchestrator report
PROJECT_ID`` gives its own report.
"""

from __future__ import annotations

from typing import Any

from .format import duration, money, tokens
from .render import _environment, _static, _version, csp_hash, json_block

__all__ = ["render_batch_html"]


def _rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in summary.get("results") or []:
        rows.append(
            {
                "position": r.get("position"),
                "name": r.get("name", ""),
                "project_id": r.get("project_id", ""),
                "status": r.get("status", ""),
                "kept": bool(r.get("kept")),
                "tasks": f"{r.get('tasks_done', 0)}/{r.get('tasks_total', 0)}",
                "calls": r.get("llm_calls", 0),
                "tokens": f"{tokens(int(r.get('tokens_in', 0)))} / {tokens(int(r.get('tokens_out', 0)))}",
                "cost": money(float(r.get("cost_usd", 0.0))),
                "spent": money(float(r.get("spent_usd", 0.0))),
                "seconds": duration(float(r.get("seconds", 0.0)) * 1e9),
                "attempt": r.get("attempt") or "-",
                "worker": r.get("worker", ""),
                "error": r.get("error", ""),
            }
        )
    return rows


def render_batch_html(summary: dict[str, Any]) -> str:
    """The batch's report as one HTML document (``summary``: ``batch-summary.json``)."""
    from markupsafe import Markup

    css = _static("report.css")
    csp = f"default-src 'none'; style-src {csp_hash(css)}; img-src data:; base-uri 'none'; form-action 'none'"
    budget = summary.get("budget") or {}
    spent, cap = float(budget.get("spent_usd") or 0.0), float(budget.get("max_usd") or 0.0)
    usage = summary.get("usage") or {}
    template = _environment().get_template("batch.html.j2")
    return template.render(
        s=summary,
        rows=_rows(summary),
        csp=csp,
        css=Markup(css),
        version=_version(),
        spent=money(spent),
        cap=money(cap),
        share=min(100.0, 100.0 * spent / cap) if cap > 0 else 0.0,
        wall=duration(float(summary.get("seconds") or 0.0) * 1e9),
        calls=usage.get("llm_calls", 0),
        tokens_in=tokens(int(usage.get("input_tokens", 0))),
        tokens_out=tokens(int(usage.get("output_tokens", 0))),
        cost=money(float(usage.get("cost_usd", 0.0))),
        counts=", ".join(f"{n} {k}" for k, n in sorted((summary.get("projects") or {}).items()) if k != "total"),
        data=Markup(json_block(summary)),
    )
