"""The root of the orchestrator's exceptions, and the one error type for configuration
problems.

Every exception class the orchestrator defines derives from :class:`OrchestratorError`,
so ``except OrchestratorError`` catches what the orchestrator raises on purpose and
nothing a bug or a library raised.  Each keeps the standard base code already catches it
by (a ``ConfigError`` is still a ``ValueError``).  The hierarchy (where each lives)::

    OrchestratorError
    ├── ConfigError (ValueError)          a file or value a user wrote is wrong  (domain.errors)
    ├── StoreError                        the run store cannot be used  (domain.checkpoint)
    │   ├── UnknownProjectError           no run with this project id
    │   └── ProjectBusyError              another process runs this project now
    ├── ProviderError                     a provider call failed  (llm.providers.base)
    │   ├── ProviderUnavailable           the provider cannot be used here at all
    │   └── WorkerCrashed                 the embedded model's worker died mid-call  (llm.providers.local_worker)
    ├── LLMCallError                      every attempt of a call failed  (llm.errors)
    ├── BudgetExceededError               the budget cannot pay for a call; nothing sent  (llm.errors)
    ├── TimeBudgetExceededError           too little time left for a call; nothing sent  (llm.errors)
    ├── CacheError                        the response cache cannot be used  (llm.cache)
    ├── PoolUnavailable                   a shared pool (the batch ledger) cannot be asked  (domain.budget)
    ├── NoModelAvailable                  no usable model for a role  (llm.routing)
    ├── CircuitOpen                       a model's breaker stayed open too long  (llm.health)
    ├── PolicyViolationError              no model may be used under the policies  (governance.policy_engine)
    ├── SandboxUnavailable (ValueError)   no isolation for model-written code here  (governance.sandbox)
    ├── CallRefused                       a task's next call cannot be paid for  (engine.context)
    ├── ObserverLoadError (ValueError)    an --observer spec cannot be loaded  (observers.loading)
    ├── UnknownHandlerError (TypeError)   an observer's on_* method matches no signal  (observers.base)
    ├── TracingUnavailable (ImportError)  the tracing extra is not installed  (otel.config)
    ├── ReportInputError (ValueError)     an event log a report cannot be made from  (report.load)
    ├── UnsafePathError (OSError)         a link or non-file where a file is written  (files)
    ├── UsageError                        bad flags or input: one line, exit 2  (cli.errors)
    └── Interrupted                       the run was cancelled by Ctrl-C  (cli.interrupt)

This module imports nothing of ours, so every part of the package may import it
(``tests/test_architecture.py`` allows it everywhere, and checks that every exception
class of the package derives from the root).

Configuration problems are reported in one line, ``source: key: reason``, e.g.
``policies.yaml: policies[0].enforcement_mode: unknown mode 'strict' (known: hard, soft,
monitor)``, so the CLI can print it as is and exit 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ConfigError", "OrchestratorError", "join_key", "unknown"]


class OrchestratorError(Exception):
    """The root of every exception the orchestrator defines (see the module's hierarchy)."""


class ConfigError(OrchestratorError, ValueError):
    """A configuration value is wrong; ``str()`` is one line naming source, key and reason."""

    def __init__(self, reason: str, *, key: str = "", source: str = "") -> None:
        self.reason = " ".join(str(reason).split())  # one line, whatever the reason held
        self.key = key
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        return ": ".join(part for part in (self.source, self.key, self.reason) if part)

    def within(self, prefix: str = "", source: str | None = None) -> ConfigError:
        """The same error located under ``prefix`` (a key path) and in ``source``."""
        key = join_key(prefix, self.key) if prefix else self.key
        return type(self)(self.reason, key=key, source=self.source or source or "")


def join_key(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def unknown(what: str, value: object, known: Iterable[str]) -> str:
    """``unknown mode 'strict' (did you mean 'soft'? known: hard, soft, monitor)``."""
    known = list(known)
    close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {value!r} ({hint}known: {', '.join(known)})"
