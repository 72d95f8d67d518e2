"""API keys: read from the environment or a ``.env`` file, held so they cannot leak.

Why a module of its own:

* every remote adapter needs the same rules (which variable wins, ``.env`` support), and
  the rules must be testable without an SDK;
* a key held as a plain ``str`` ends up in ``repr()`` of the adapter, in tracebacks'
  locals and in f-strings; :class:`Secret` prints as ``Secret('***')`` and only
  :meth:`Secret.reveal` gives the value, at the one place it is handed to the SDK;
* SDK error messages may echo request details; :func:`scrub` removes the key's value
  (and well-known key shapes, through the one :func:`~orchestrator.redaction.redact`)
  before any message leaves an adapter.

``.env`` values are put into ``os.environ`` (never overriding a variable already set),
like python-dotenv does, so that the observers' redaction of ``*_API_KEY`` values knows
them too.  A tiny parser instead of a dependency: ``KEY=VALUE`` lines, optional
``export``, single or double quotes, ``#`` comments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ...redaction import redact

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_loaded: set[Path] = set()


class Secret:
    """A key value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs of a ``.env`` file (comments, ``export``, quotes handled)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, value = match.group(1), match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        out[name] = value
    return out


def load_dotenv(path: str | os.PathLike[str] | None = None) -> list[str]:
    """Put the variables of ``path`` (default ``./.env``) into ``os.environ`` unless
    already set; returns the names added.  Reads each file once per process."""
    file = Path(path) if path is not None else Path.cwd() / ".env"
    try:
        resolved = file.resolve()
    except OSError:
        return []
    if resolved in _loaded or not file.is_file():
        return []
    _loaded.add(resolved)
    try:
        pairs = parse_dotenv(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return []
    added = [name for name in pairs if name not in os.environ]
    for name in added:
        os.environ[name] = pairs[name]
    return added


def key_from_env(*names: str) -> tuple[str | None, Secret | None]:
    """The first non-empty variable of ``names``: (its name, its value as a Secret)."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return name, Secret(value)
    return None, None


def scrub(text: str, secret: Secret | None = None) -> str:
    """``text`` without ``secret``'s value nor anything else secret
    (:func:`orchestrator.redaction.redact` with the value the adapter holds)."""
    return redact(text, secret.reveal() if secret is not None else None)
