"""Load observers named on the command line.

A spec is either ``package.module:factory`` (``factory`` may be a dotted path inside the
module: a class, a function returning an observer, or an observer instance) or a NAME
registered in the entry-point group ``orchestrator.observers``::

    # pyproject.toml of a plugin package
    [project.entry-points."orchestrator.observers"]
    slack = "my_plugin.observers:SlackObserver"

Built-in names (used when no entry point has the name): ``logging``; ``metrics`` and
``tracing``, which use the *global* OpenTelemetry providers (useful under
``opentelemetry-instrument``, which configures them from ``OTEL_*`` variables).

A loaded observer is anything with ``subscribe()`` and ``unsubscribe()`` (normally an
:class:`~orchestrator.observers.base.Observer`, whose ``on_*`` handler names are checked
here: one that matches no signal is refused before the run, not silently never called).
Errors are :class:`ObserverLoadError`, a ValueError with a one-line message.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from ..domain.errors import OrchestratorError
from .base import Observer, Subscribable, unknown_handlers

__all__ = ["ObserverLoadError", "load_observer", "ENTRY_POINT_GROUP", "BUILTIN_OBSERVERS", "available_observer_names"]

ENTRY_POINT_GROUP = "orchestrator.observers"
BUILTIN_OBSERVERS = {
    "logging": "orchestrator.observers.logging:LoggingObserver",
    "metrics": "orchestrator.observers.metrics:MetricsObserver",
    "tracing": "orchestrator.observers.tracing:TracingObserver",
}


class ObserverLoadError(OrchestratorError, ValueError):
    """An ``--observer`` spec could not be turned into an observer."""


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_observer_names() -> list[str]:
    return sorted(set(_entry_points()) | set(BUILTIN_OBSERVERS))


def _resolve(module_name: str, attr_path: str, spec: str) -> object:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ObserverLoadError(f"--observer {spec}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin that fails at import time
        raise ObserverLoadError(
            f"--observer {spec}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: object = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ObserverLoadError(f"--observer {spec}: {module_name!r} has no attribute {attr_path!r}") from None
    return target


def _instantiate(target: object, spec: str) -> Subscribable:
    """A user's plug-in: its shape is checked here, since nothing typed it."""
    observer = target
    if not (hasattr(target, "subscribe") and not isinstance(target, type)):
        if not callable(target):
            raise ObserverLoadError(f"--observer {spec}: {target!r} is neither an observer nor a factory")
        try:
            observer = target()
        except Exception as exc:  # noqa: BLE001
            raise ObserverLoadError(f"--observer {spec}: the factory failed: {type(exc).__name__}: {exc}") from None
    if not (isinstance(observer, Subscribable) and callable(observer.subscribe) and callable(observer.unsubscribe)):
        raise ObserverLoadError(
            f"--observer {spec}: the factory returned {type(observer).__name__}, which has no subscribe()/unsubscribe()"
        )
    if isinstance(observer, Observer):
        problems = unknown_handlers(observer)
        if problems:
            raise ObserverLoadError(f"--observer {spec}: {'; '.join(problems)}")
    return observer


def load_observer(spec: str) -> Subscribable:
    """The observer a spec names (not yet subscribed)."""
    spec = (spec or "").strip()
    if not spec:
        raise ObserverLoadError("--observer needs package.module:factory or an entry-point name")
    if ":" in spec:
        module_name, _, attr_path = spec.partition(":")
        if not module_name or not attr_path:
            raise ObserverLoadError(f"--observer {spec}: expected package.module:factory")
        return _instantiate(_resolve(module_name, attr_path, spec), spec)
    eps = _entry_points()
    if spec in eps:
        try:
            target = eps[spec].load()
        except Exception as exc:  # noqa: BLE001
            raise ObserverLoadError(
                f"--observer {spec}: loading entry point {eps[spec].value!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        return _instantiate(target, spec)
    if spec in BUILTIN_OBSERVERS:
        module_name, _, attr_path = BUILTIN_OBSERVERS[spec].partition(":")
        return _instantiate(_resolve(module_name, attr_path, spec), spec)
    raise ObserverLoadError(
        f"--observer {spec}: no entry point {spec!r} in group {ENTRY_POINT_GROUP!r} "
        f"(known: {', '.join(available_observer_names())}); "
        "or use package.module:factory"
    )
