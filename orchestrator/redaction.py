"""Secret redaction: the one function every log line, span, event and error message
passes free text through before it leaves the process.

What counts as a secret:

* the literal value of any environment variable whose name ends in ``_API_KEY``,
  ``_TOKEN``, ``_SECRET``, ``_PASSWORD`` or ``_ACCESS_KEY`` (this covers every provider
  key we read, including those a ``.env`` file put into the environment);
* explicitly given values (an adapter passes the key it holds);
* anything shaped like a well-known key (``sk-...``, ``sk-ant-...``, ``sk-or-...``,
  ``AIza...``, ``Bearer ...``, ``api_key=...``), so a key we never saw is caught too.

Imports nothing of ours, so emitters and observers alike can use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["redact", "REDACTED"]

REDACTED = "[REDACTED]"

_KEY_SHAPES = re.compile(
    r"(sk-(?:ant-|proj-|or-)?[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._\-~+/=]{12,}|"
    r"(?i:api[_-]?key|x-api-key|x-goog-api-key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9._\-]{8,})"
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
    for value in (*secrets, *_secret_env_values()):
        if value and len(value) >= _MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)
