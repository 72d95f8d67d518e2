"""One error type for configuration problems (policies, remediation plans, validators).

Every problem is reported in one line, ``source: key: reason``, e.g.
``policies.yaml: policies[0].enforcement_mode: unknown mode 'strict' (known: hard, soft,
monitor)``, so the CLI can print it as is and exit 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
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
