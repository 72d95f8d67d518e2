"""Observers of the event bus: one file each, one small base.

``Observer`` (base.py), ``TracingObserver`` (tracing.py), ``MetricsObserver``
(metrics.py), ``LoggingObserver`` (logging.py), ``ProgressObserver`` (progress.py),
``BatchProgressObserver`` (batch_progress.py: ``orchestrator batch``'s live view),
``EventRecorder`` (recorder.py); ``load_observer`` (loading.py) for specs such as
``package.module:factory``.  Wiring observers from command-line flags is the CLI's job
(:mod:`orchestrator.cli.observers`).

Names are imported on first use, so ``import orchestrator.observers`` does not import
OpenTelemetry; only the tracing and metrics observers need it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Observer": "base",
    "redact": "base",  # re-exported from orchestrator.redaction
    "TracingObserver": "tracing",
    "MetricsObserver": "metrics",
    "LoggingObserver": "logging",
    "ProgressObserver": "progress",
    "BatchProgressObserver": "batch_progress",
    "EventRecorder": "recorder",
    "read_jsonl": "recorder",
    "load_observer": "loading",
    "ObserverLoadError": "loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator.observers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
