"""SQLite response cache.

The key is a hash of everything that changes the answer (model, system, prompt,
max_tokens, temperature, JSON schema) plus a ``variant`` the caller bumps when a call
must differ from an earlier identical one (a second evaluation sample, a retry after a
bad answer), so such calls are never answered from the cache by accident.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

DEFAULT_CACHE_DIR = Path(user_cache_dir("multi-llm-orchestrator"))


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str
    response_model: str | None


def cache_key(model: str, system: str, prompt: str, max_tokens: int, temperature: float,
              json_schema: dict[str, Any] | None, variant: int = 0) -> str:
    material = json.dumps(
        [model, system, prompt, max_tokens, round(temperature, 4), json_schema, variant],
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResponseCache:
    """A small key/value store of successful answers, safe to share across threads."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else DEFAULT_CACHE_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "responses.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, text TEXT, "
                "input_tokens INTEGER, output_tokens INTEGER, finish_reason TEXT, response_model TEXT, "
                "created REAL DEFAULT (julianday('now')))"
            )

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, input_tokens, output_tokens, finish_reason, response_model "
                "FROM responses WHERE key = ?", (key,),
            ).fetchone()
        return CachedAnswer(*row) if row else None

    def put(self, key: str, model: str, answer: CachedAnswer) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, text, input_tokens, output_tokens, "
                "finish_reason, response_model) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, answer.text, answer.input_tokens, answer.output_tokens,
                 answer.finish_reason, answer.response_model),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
