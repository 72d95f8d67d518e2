"""The run store's file itself: an existing one checked before SQLite opens it, a new one
made whole before anyone can see it.  Why apart from :class:`~.store.RunStore`: these are
about the file system, not about what the store keeps."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from ..domain.checkpoint import StoreError
from ..files import PRIVATE_FILE
from .paths import DB_NAME
from .schema import prepare

__all__ = ["check_store_file", "create_store_file"]


def check_store_file(path: Path) -> None:
    """An existing store file must be a file with content: an empty one lost its
    history (we never leave one empty, see :func:`create_store_file`), so it is refused."""
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_file():
        raise StoreError(f"{path}: not a run store (not a regular file); move it away or use another --state-dir")
    if path.stat().st_size == 0:
        raise StoreError(
            f"{path}: the run store is empty (0 bytes): its history is lost or it is "
            "not a run store; move it away or use another --state-dir"
        )


def create_store_file(directory: Path, path: Path) -> None:
    """Build a new store whole in a temporary file (0600, schema in place), then
    link it into place: another process opening the store at the same time finds
    either no file or a complete one, and a kill mid-way leaves no empty store."""
    fd, temp = tempfile.mkstemp(prefix=f".{DB_NAME}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.close(fd)
        conn = sqlite3.connect(temp, isolation_level=None)
        try:
            prepare(conn, str(path))
        finally:
            conn.close()
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temp, path)
    finally:
        for leftover in (temp, f"{temp}-journal"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
