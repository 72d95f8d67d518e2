"""Secret redaction: the one function every log line, span, event and error message
passes free text through before it leaves the process.

What counts as a secret:

* the literal value of any environment variable whose name ends in ``_API_KEY``,
  ``_TOKEN``, ``_SECRET``, ``_PASSWORD`` or ``_ACCESS_KEY`` (this covers every provider
  key we read, including those a ``.env`` file put into the environment);
* explicitly given values (an adapter passes the key it holds);
* anything shaped like a well-known key (``sk-...``, ``sk-ant-...``, ``sk-or-...``,
  ``AIza...``, ``Bearer ...``, ``api_key=...``), so a key we never saw is caught too.
  The shapes are anchored so that ordinary text is left alone: ``sk-`` must start a
  word, or follow a ``\n``/``\t`` escape of JSON text (``task-runner-for-the-risk-model``
  is no key), and an ``api_key=`` value must be
  quoted or hold a digit (generated code's ``api_key=os.environ[...]`` stays code).

Where it is applied: user-given text (the project, criteria, task prompts and ids) once,
where it enters a run (``Orchestrator``), so no prompt, span, event or checkpoint ever
holds the key; and at every sink that writes a file (events JSON lines, ``summary.json``
and the output files, the run store, the response cache, log lines) through
:func:`redact` or :func:`redact_data`, which also catches keys in model-written text.

Imports nothing of ours, so emitters and observers alike can use it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

__all__ = ["redact", "redact_data", "RedactingFormatter", "REDACTED"]

REDACTED = "[REDACTED]"

_KEY_SHAPES = re.compile(
    r"((?:(?<![A-Za-z0-9])|(?<=\\[nrt]))sk-(?:ant-|proj-|or-)?[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._\-~+/=]{12,}|"
    r"(?i:api[_-]?key|x-api-key|x-goog-api-key)[\"']?\s*[:=]\s*"
    r"(?:[\"'][A-Za-z0-9._\-]{8,}|(?=[A-Za-z._\-]*[0-9])[A-Za-z0-9._\-]{8,}))"
)
_SECRET_ENV = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|_ACCESS_KEY)$")
_MIN_SECRET_LENGTH = 4


def _secret_env_values() -> Iterable[str]:
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_ENV.search(name.upper()):
            yield value


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with secrets replaced by ``[REDACTED]``: the given ``secrets``, the
    values of secret-named environment variables, and anything shaped like a key."""
    if not text:
        return text
    return _scrub(text, (*secrets, *_secret_env_values()))


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    for value in secrets:
        if value and len(value) >= _MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def redact_data(value: object, *secrets: str | None) -> object:
    """A copy of JSON-shaped ``value`` (dicts, lists, tuples, strings, numbers) with
    :func:`redact` applied to every string in it, mapping keys included.  Redacting the
    data before it is serialised, not the serialised text, keeps the JSON well formed
    and catches a key whatever escaping the format would give it."""
    known = (*secrets, *_secret_env_values())

    def walk(item: object) -> object:
        if isinstance(item, str):
            return _scrub(item, known) if item else item
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(value)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (message, arguments, traceback) is redacted: the
    command line's ``-v`` logs what libraries say too (an SDK may log a request)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
