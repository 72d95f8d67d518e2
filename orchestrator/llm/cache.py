"""SQLite response cache.

The key is a hash of everything that changes the answer (model, system, prompt,
max_tokens, temperature, JSON schema) plus a ``variant`` the caller bumps when a call
must differ from an earlier identical one (a second evaluation sample, a retry after a
bad answer), so such calls are never answered from the cache by accident.

A cache that cannot be opened (not a database, unreadable, a file where its directory
should be) is a :class:`CacheError` before the run starts (the CLI: one line, exit 2;
``--no-cache`` always works).  A read or write that fails during a run only costs
that hit or that entry: the call goes to the provider, a warning is logged once.

Private, as the run store: the directory is made 0700 (the default one, ours by name, is
set to 0700 if it exists) and the database 0600, whatever the umask; answers are stored
redacted (:func:`~orchestrator.redaction.redact`), so no key shape reaches the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from platformdirs import user_cache_dir

from ..domain.errors import OrchestratorError
from ..domain.values import JsonSchema
from ..files import open_private, private_dir
from ..redaction import redact

DEFAULT_CACHE_DIR = Path(user_cache_dir("multi-llm-orchestrator"))
DB_NAME = "responses.sqlite3"
_COLUMNS = ("key", "model", "text", "input_tokens", "output_tokens", "finish_reason", "response_model", "created")

logger = logging.getLogger("orchestrator.cache")


class CacheError(OrchestratorError):
    """The response cache cannot be used; the message is one line naming the path."""


def check_cache_dir(directory: str | Path | None = None) -> Path:
    """Check, without writing anything, that a cache in ``directory`` can be opened:
    the directory is one (or can be made), an existing database file is readable,
    writable and a cache of ours.  Returns the database path; raises :class:`CacheError`."""
    where = Path(directory) if directory else DEFAULT_CACHE_DIR
    path = where / DB_NAME
    hint = "choose another --cache-dir, or run with --no-cache"
    if where.exists() and not where.is_dir():
        raise CacheError(f"cache directory {where} is not a directory; {hint}")
    if not where.exists():
        ancestor = where
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise CacheError(f"cache directory {where} cannot be made: {ancestor} is not a directory; {hint}")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise CacheError(f"cache directory {where} cannot be made: {ancestor} is not writable; {hint}")
        return path
    if not os.access(where, os.W_OK | os.X_OK):
        raise CacheError(f"cache directory {where} is not writable; {hint}")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise CacheError(f"cache file {path} is not a file; {hint}")
        if not os.access(path, os.R_OK | os.W_OK):
            raise CacheError(f"cache file {path} is not readable and writable; {hint}")
        try:
            db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=10)
            try:
                columns = [row[1] for row in db.execute("PRAGMA table_info(responses)")]
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise CacheError(f"cache file {path} cannot be used ({exc}); remove it, {hint}") from None
        if columns and tuple(columns) != _COLUMNS:
            raise CacheError(f"cache file {path} is not a response cache of this tool; remove it, {hint}")
    return path


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    response_model: str | None


def cache_key(
    model: str,
    system: str,
    prompt: str,
    max_tokens: int,
    temperature: float,
    json_schema: JsonSchema | None,
    variant: int = 0,
) -> str:
    material = json.dumps(
        [model, system, prompt, max_tokens, round(temperature, 4), json_schema, variant],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResponseCache:
    """A small key/value store of successful answers, safe to share across threads."""

    def __init__(self, directory: str | Path | None = None) -> None:
        """Open (or create) the cache; :class:`CacheError` when it cannot be used."""
        self.directory = Path(directory) if directory else DEFAULT_CACHE_DIR
        self.path = check_cache_dir(self.directory)
        self._lock = threading.Lock()
        self._warned = False
        try:
            private_dir(self.directory, tighten=not directory)
            os.close(open_private(self.path))  # made 0600 before SQLite opens it (its journal takes its mode)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            with self._lock, self._db:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, text TEXT, "
                    "input_tokens INTEGER, output_tokens INTEGER, finish_reason TEXT, response_model TEXT, "
                    "created REAL DEFAULT (julianday('now')))"
                )
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(
                f"cache {self.path} cannot be used ({exc}); choose another --cache-dir, or run with --no-cache"
            ) from None

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("response cache %s: %s failed (%s); calls go to the providers", self.path, what, exc)

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer, or None (also when the read fails: a miss costs a call, not the run)."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT text, input_tokens, output_tokens, finish_reason, response_model "
                    "FROM responses WHERE key = ?",
                    (key,),
                ).fetchone()
        except sqlite3.Error as exc:
            self._failed("a read", exc)
            return None
        return CachedAnswer(*row) if row else None

    def put(self, key: str, model: str, answer: CachedAnswer) -> None:
        """Store a successful answer; a failed write is logged once and skipped."""
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO responses (key, model, text, input_tokens, output_tokens, "
                    "finish_reason, response_model) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        model,
                        redact(answer.text),
                        answer.input_tokens,
                        answer.output_tokens,
                        answer.finish_reason,
                        answer.response_model,
                    ),
                )
        except sqlite3.Error as exc:
            self._failed("a write", exc)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
