"""LoggingObserver: one structured log line per finished pair.

Lines go to the ``orchestrator`` logger: INFO when the pair ended well, WARNING when it
raised or was cancelled; point events at DEBUG.  The message is logfmt-like::

    llm_call:generate status=ok duration_ms=412.3 model=gpt-4o tokens_in=310 tokens_out=120
        cost_usd=0.001975 task_id=t1 trace_id=4bf9... span_id=00f0...

and the same fields are on the record as ``record.orchestrator`` (a dict) for JSON
formatters.  ``trace_id``/``span_id`` are those of the pair's span when a tracing
observer made one, else of the current OpenTelemetry span when OpenTelemetry is in use.
"""

from __future__ import annotations

import logging
import sys

from .. import attributes as attr
from .. import events
from .base import Handler, Observer, redact, span_ids_for, visible_fields

__all__ = ["LoggingObserver"]


def _span_name(p: events.PairFinish) -> str:
    """The name the tracing observer gives the pair's span."""
    match p:
        case events.ProjectFinished():
            return "run_project"
        case events.TaskFinished():
            return f"task:{p.task_id}"
        case events.LlmCallFinished():
            return f"llm_call:{p.call_type}"
        case events.PolicyChecked():
            return "policy_check"
        case _:
            return "remediation"


_PREFIX = {"project_finished": "project", "task_finished": "task", "remediation_finished": "remediation"}


def _current_otel_ids() -> tuple[str, str] | None:
    if "opentelemetry.trace" not in sys.modules:  # never import OpenTelemetry just to log
        return None
    from opentelemetry import trace

    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.8f}".rstrip("0")
    else:
        text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LoggingObserver(Observer):
    """``logger``: a logger or logger name (default ``orchestrator``)."""

    def __init__(self, logger: logging.Logger | str = "orchestrator", *, point_events: bool = True) -> None:
        super().__init__()
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.point_events = point_events

    def handlers(self) -> list[Handler]:
        out: list[Handler] = [(finish, self._on_finish) for _, finish in events.PAIRS]
        if self.point_events:
            out.extend((sig, self._on_point) for sig in events.POINT_SIGNALS)
        return out

    def fields_of(self, p: events.PairFinish) -> dict[str, object]:
        """The structured fields of one finished pair."""
        a = p.attributes
        name = _span_name(p)
        out: dict[str, object] = {"event": name, "status": p.status, "duration_ms": round(p.duration_ns / 1e6, 3)}
        if p.status != "ok":
            out["error_type"] = p.error_type
            if p.error_message:
                out["error"] = redact(p.error_message)[:200]
        prefix = _PREFIX.get(p.signal_name)
        if isinstance(p, events.LlmCallFinished):
            out["model"] = p.model
            if p.provider:
                out["provider"] = p.provider
            for key in ("tokens_in", "tokens_out", "cost_usd", "cached"):
                if f"llm.{key}" in a:
                    out[key] = a[f"llm.{key}"]
            if p.attempt != 1:
                out["attempt"] = p.attempt
        elif prefix is not None:
            if prefix == "task":
                out["task_status"] = a.get(attr.TASK_STATUS)
                out["model"] = a.get(attr.TASK_MODEL) or None
                out["score"] = a.get(attr.TASK_SCORE)
            elif prefix == "project":
                out["project_status"] = a.get(attr.PROJECT_STATUS)
            else:
                out["strategy"] = a.get(attr.REMEDIATION_STRATEGY)
                out["success"] = a.get(attr.REMEDIATION_SUCCESS)
            for key in ("tokens_in", "tokens_out", "cost_usd"):
                if f"{prefix}.{key}" in a:
                    out[key] = a[f"{prefix}.{key}"]
        elif isinstance(p, events.PolicyChecked):
            out["passed"] = a.get(attr.POLICY_PASSED)
            out["violations"] = a.get(attr.POLICY_VIOLATIONS)
        task_id = getattr(p, "task_id", None)
        if task_id and prefix != "task":
            out["task_id"] = task_id
        if p.project_id and prefix == "project":
            out["project_id"] = p.project_id
        ids = span_ids_for(p.correlation_id) or _current_otel_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        return {k: v for k, v in out.items() if v is not None}

    def _on_finish(self, p: events.PairFinish) -> None:
        level = logging.INFO if p.status == "ok" else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        data = self.fields_of(p)
        message = f"{data['event']} " + " ".join(f"{k}={_fmt(v)}" for k, v in data.items() if k != "event")
        self.logger.log(level, "%s", message, extra={"orchestrator": data})

    def _on_point(self, p: events.PointEvent) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        data = {
            k: v
            for k, v in p.to_dict().items()
            if k not in ("signal", "correlation_id", "parent_id", "timestamp_ns") and v is not None
        }
        data = {
            k: redact(v) if isinstance(v, str) else v  # a log line never holds model text or keys
            for k, v in visible_fields(data, False).items()
        }
        message = p.signal_name + " " + " ".join(f"{k}={_fmt(v)}" for k, v in data.items())
        self.logger.debug("%s", message, extra={"orchestrator": {"event": p.signal_name, **data}})
