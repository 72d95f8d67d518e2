"""The paths flags name, checked before anything is created.

Why up front: a run creates its output directory, its run store and its events file;
a bad path found only when something is written leaves half a run behind, and some are
worse than a late error: a name longer than the file system allows gave an ``OSError``
traceback, and writing events to a FIFO waits forever for a reader.  Each problem is one
line naming the flag (exit 2), and nothing has been created.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
from pathlib import Path
from typing import Literal

from ..domain.errors import ConfigError

__all__ = ["check_paths", "checked_path", "PATH_MAX"]

Kind = Literal["dir", "file", "new file"]

PATH_MAX = 4096
"""Longest path Linux accepts (bytes)."""


def check_paths(args: argparse.Namespace, output_dir: str | None) -> None:
    """Every path a ``run``/``resume`` writes or loads a model from, checked, nothing
    created (one line, exit 2).  ``output_dir``: from the flag or the project file.  The
    files read as configuration (``--file``, ``--policy``, ``--catalog``) are checked
    by the loader that reads them."""
    paths: list[tuple[str, str | None, Kind]] = [
        ("--output-dir", output_dir, "dir"),
        ("--state-dir", getattr(args, "state_dir", None), "dir"),
        ("--cache-dir", getattr(args, "cache_dir", None), "dir"),
        ("--events-jsonl", getattr(args, "events_jsonl", None), "new file"),
        ("--local-model", getattr(args, "local_model", None), "file"),
    ]
    for flag, value, kind in paths:
        if value is not None:
            checked_path(flag, value, kind)
    if getattr(args, "state_dir", None) is None:
        from ..state.paths import ENV_VAR, default_state_dir

        checked_path(
            f"${ENV_VAR}" if os.environ.get(ENV_VAR, "").strip() else "the run store directory",
            str(default_state_dir()),
            "dir",
        )


def checked_path(flag: str, value: str, kind: Kind) -> Path:
    """``value`` as ``flag`` wants it, checked without creating anything:

    * ``dir``: a directory, or one that can be made (its nearest existing ancestor is a
      writable directory);
    * ``file``: an existing regular file (read);
    * ``new file``: a regular file (or a character device such as ``/dev/null``) or none
      yet, in an existing writable directory; never a FIFO.

    Raises :class:`ConfigError` (a ``ValueError``, one line) naming the flag."""
    shown = value if len(value) <= 80 else f"{value[:40]}...{value[-20:]}"
    where = f"{flag} {shown}"
    if not value.strip():
        raise ConfigError("must be a path, got ''", key=flag)
    path = Path(value).expanduser()
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    limit = _name_max(path)
    if longest > limit:
        raise ConfigError(f"a name in it is too long ({longest} bytes; the file system allows {limit})", key=where)
    if len(os.fsencode(str(path))) > PATH_MAX:
        raise ConfigError(f"the path is too long (over {PATH_MAX} bytes)", key=where)
    info = _stat(path, where, kind)
    if info is not None:
        if kind == "dir" and not stat.S_ISDIR(info.st_mode):
            raise ConfigError("exists and is not a directory", key=where)
        if kind != "dir" and stat.S_ISDIR(info.st_mode):
            raise ConfigError("is a directory, not a file", key=where)
        if kind == "file" and not stat.S_ISREG(info.st_mode):
            raise ConfigError("is not a regular file (a pipe, socket or device)", key=where)
        if kind == "new file" and not (stat.S_ISREG(info.st_mode) or stat.S_ISCHR(info.st_mode)):
            # a FIFO would block the run until something reads it; /dev/null or a terminal is fine
            raise ConfigError("is not a regular file (a pipe or socket)", key=where)
        if kind == "new file" and not os.access(path, os.W_OK):
            raise ConfigError("not writable", key=where)
        return path
    if kind == "file":
        raise ConfigError("no such file", key=where)
    if kind == "new file" and _stat(path.parent, where, kind) is None:
        raise ConfigError(f"no such directory: {path.parent}", key=where)
    ancestor = path.parent
    while _stat(ancestor, where, kind) is None and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"not writable ({ancestor} is not a directory)", key=where)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"not writable ({ancestor} is not writable)", key=where)
    return path


def _name_max(path: Path) -> int:
    probe = path if path.is_absolute() else Path.cwd() / path
    for candidate in (probe, *probe.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _stat(path: Path, where: str, kind: str) -> os.stat_result | None:
    """The path's status (following links), None when nothing is there; a path that
    cannot be looked at is one line."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            what = "no such file" if kind == "file" else "not writable"
            raise ConfigError(f"{what} (a part of the path is a file, not a directory)", key=where) from None
        raise ConfigError(f"cannot be used ({exc.strerror or exc})", key=where) from None
