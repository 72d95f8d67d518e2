"""The batch file of ``orchestrator batch FILE``: many projects, one budget.

YAML (a mapping)::

    budget_usd: 5.0          # the whole batch: every project's calls together
    time_seconds: 3600       # the whole batch: no project starts after it
    max_parallel: 4          # projects at once
    output_dir: out/         # each project's files in out/<name>/, and batch-summary.json
    defaults:                # any project-file key, for every entry that does not set it
      criteria: pytest passes
      budget_usd: 0.5        # each project's own cap
    projects:
      - project: Build a token-bucket rate limiter
      - name: slug
        project: Write slugify(text)
        criteria: slugify("A b") == "a-b"

or JSON lines (``.jsonl``): one entry per line, the batch-level values then come from
the flags.  An entry has a project file's keys (``project``, ``criteria``, ``tasks``,
``budget_usd``, ``time_seconds``, ``concurrency``, ``output_dir``, ``policies``,
``remediation``, ``validators``) and an optional ``name`` (default ``p01``, ``p02``...:
its output directory and its row in the summary).

Read by the same strict loader as a project file (:mod:`orchestrator.config`): no
aliases or duplicate keys, bounded depth, every key and value checked, one line naming
the file, the key path (``projects[3].budget_usd``, or ``batch.jsonl:4: budget_usd`` for
a JSON line) and the reason.  Bigger than a project file is allowed (a backlog can be
long): at most :data:`MAX_BYTES`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from msgspec import Meta, Struct

from ..config import convert
from ..config.fields import Count, NonNegative, Positive
from ..config.reading import parse_text
from ..domain.errors import ConfigError
from .project_file import DirectoryPath, ProjectFile

__all__ = ["BatchEntry", "BatchFile", "BatchSpec", "Entry", "load_batch_file", "MAX_BYTES"]

MAX_BYTES = 64 * 1024 * 1024
"""The largest batch file read (64 MiB: about 100,000 one-line projects)."""

EntryName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$",
        extra={"expected": "a name of letters, digits, '_', '.' and '-' (at most 80, not starting with '.' or '-')"},
    ),
]


class BatchEntry(ProjectFile, frozen=True, forbid_unknown_fields=True):
    """One project of a batch: a project file's keys, and its name."""

    described_as: ClassVar[str] = "a mapping with a project file's keys (at least 'project')"

    name: EntryName | None = None


Entries = Annotated[list[BatchEntry], Meta(min_length=1, extra={"expected": "a non-empty list of projects"})]


class BatchFile(Struct, frozen=True, forbid_unknown_fields=True):
    """The YAML batch file."""

    described_as: ClassVar[str] = "a mapping with 'projects' (a list of projects)"

    projects: Entries
    budget_usd: NonNegative | None = None
    time_seconds: Positive | None = None
    max_parallel: Count | None = None
    output_dir: DirectoryPath | None = None
    defaults: ProjectFile | None = None


@dataclass
class Entry:
    """One project, its defaults applied: ``shape`` (checked) and ``data`` (as read, with
    the defaults' keys it did not set) for what a run keeps."""

    position: int
    name: str
    shape: ProjectFile
    data: dict[str, Any]


@dataclass
class BatchSpec:
    path: str
    entries: list[Entry] = field(default_factory=list)
    budget_usd: float | None = None
    time_seconds: float | None = None
    max_parallel: int | None = None
    output_dir: str | None = None


def _read(path: str) -> str:
    """The file's text: a regular UTF-8 file of at most :data:`MAX_BYTES` (one line otherwise)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError("no such batch file", source=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc})", source=path) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("is not a regular file", source=path)
    if info.st_size > MAX_BYTES:
        raise ConfigError(
            f"too large: {info.st_size:,} bytes (a batch file may have at most {MAX_BYTES:,})", source=path
        )
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc})", source=path) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"too large (a batch file may have at most {MAX_BYTES:,} bytes)", source=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file (byte {exc.start + 1})", source=path) from None


def load_batch_file(path: str) -> BatchSpec:
    """The batch file, every entry checked with its defaults; one-line :class:`ConfigError`."""
    text = _read(path)
    if Path(path).suffix.lower() == ".jsonl":
        return _from_lines(path, text)
    try:
        data = parse_text(text, "json" if Path(path).suffix.lower() == ".json" else "yaml")
    except ConfigError as exc:
        raise exc.within(source=path) from None
    shape = convert(data, BatchFile, source=path)
    raw = data if isinstance(data, dict) else {}
    defaults = dict(raw.get("defaults") or {})
    if defaults.get("output_dir") is not None:
        raise ConfigError(
            "every project would write there: give output_dir at the top (each project gets "
            "DIR/<name>/) or in each entry",
            key="defaults.output_dir",
            source=path,
        )
    spec = BatchSpec(
        path,
        budget_usd=shape.budget_usd,
        time_seconds=shape.time_seconds,
        max_parallel=shape.max_parallel,
        output_dir=shape.output_dir,
    )
    for index, entry_data in enumerate(raw.get("projects") or []):
        spec.entries.append(_entry(index, len(shape.projects), {**defaults, **entry_data}, path, f"projects[{index}]"))
    _check_names(spec, lambda i: (path, f"projects[{i}].name"))
    return spec


def _from_lines(path: str, text: str) -> BatchSpec:
    spec = BatchSpec(path)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise ConfigError("no projects (one JSON object a line)", source=path)
    for index, (number, line) in enumerate(lines):
        where = f"{path}:{number}"
        try:
            data = parse_text(line, "json")
        except ConfigError as exc:
            raise exc.within(source=where) from None
        spec.entries.append(_entry(index, len(lines), data, where, ""))
    lines_of = [n for n, _ in lines]
    _check_names(spec, lambda i: (f"{path}:{lines_of[i]}", "name"))
    return spec


def _entry(index: int, count: int, data: Any, source: str, key: str) -> Entry:
    shape = convert(data, BatchEntry, source=source, key=key)
    if not (shape.project or "").strip():
        raise ConfigError(
            "is required: a non-empty string (the project)", key=f"{key}.project" if key else "project", source=source
        )
    width = max(2, len(str(count)))
    name = shape.name or f"p{index + 1:0{width}d}"
    values = {k: v for k, v in (data if isinstance(data, dict) else {}).items() if k != "name"}
    return Entry(index + 1, name, shape, values)


def _check_names(spec: BatchSpec, where: Any) -> None:
    seen: dict[str, int] = {}
    for i, entry in enumerate(spec.entries):
        folded = entry.name.lower()  # one output directory per name, also on a case-insensitive disk
        if folded in seen:
            source, key = where(i)
            raise ConfigError(
                f"the name {entry.name!r} is already the name of project {seen[folded] + 1}", key=key, source=source
            )
        seen[folded] = i
