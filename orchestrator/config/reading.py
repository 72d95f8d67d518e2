"""Reading a user's file into plain data, refusing what no configuration needs before it can
cost memory, time or a traceback.

Refused, each in one line naming the file (and the line where the parser knows it):

* anything that is not a regular file (a FIFO would block the read; a directory);
* files over :data:`MAX_BYTES` (checked on the size, then on what is actually read);
* text that is not UTF-8;
* YAML aliases and merge keys (``*name``, ``<<``): a kilobyte of aliases expands to
  gigabytes; no configuration of ours needs them;
* duplicate keys in YAML and JSON mappings (the last one would win silently: a
  ``budget_usd: 0.01`` followed by ``budget_usd: 500`` would be a $500 cap); TOML's own
  parser refuses them;
* nesting deeper than :data:`MAX_DEPTH` (the parsers recurse, so 5,000 levels are a
  ``RecursionError`` otherwise).

The format is the caller's (a project file is YAML, a catalog file TOML) or comes from
the suffix (``.json``, ``.toml``, ``.yaml``/``.yml``; YAML otherwise).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Iterable
from pathlib import Path

import yaml

from ..domain.errors import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "read_document", "parse_text", "yaml_problem"]

MAX_BYTES = 1024 * 1024
"""The largest file read (1 MiB): a project file with long prompts is well under it."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists (a policy file needs 6; a JSON schema in a
validator's options a few more)."""

_FORMATS = {".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


def read_document(path: str | Path, *, what: str, fmt: str | None = None) -> object:
    """The parsed content of ``path`` (a ``what`` file: "project", "policy"...), or
    :class:`ConfigError` naming the file.  ``fmt``: always this format (``yaml``,
    ``json``, ``toml``); None: by the suffix, YAML when it says nothing."""
    source = str(path)
    try:
        text = _read_text(Path(path), what)
        return parse_text(text, fmt or _FORMATS.get(Path(path).suffix.lower(), "yaml"))
    except ConfigError as exc:
        raise exc.within(source=source) from None


def _read_text(path: Path, what: str) -> str:
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"no such {what} file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"is a directory, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("is not a regular file (a pipe, socket or device)")
    if info.st_size > MAX_BYTES:
        raise ConfigError(_too_large(info.st_size))
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, the read does not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(_too_large(len(data)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file (byte {exc.start + 1})") from None


def _too_large(size: int) -> str:
    return f"too large: {size:,} bytes or more (a configuration file may have at most {MAX_BYTES:,})"


def parse_text(text: str, fmt: str) -> object:
    """``text`` parsed as ``fmt`` (``yaml``, ``json`` or ``toml``) with the refusals above."""
    try:
        if fmt == "json":
            data = _json(text)
        elif fmt == "toml":
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"not valid TOML: {exc}") from None
        else:
            data = _yaml(text)
    except RecursionError:  # a parser's own recursion, should a format slip past the depth checks
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _too_deep(data):
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels")
    return data


def _too_deep(data: object) -> bool:
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children: Iterable[object]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


# -- JSON ---------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')


def _json(text: str) -> object:
    depth = 0
    for match in _JSON_TOKEN.finditer(text):  # strings are skipped whole: their brackets do not count
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise ConfigError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
        elif token in "]}":
            depth -= 1
    try:
        return json.loads(text, object_pairs_hook=_json_mapping)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"not valid JSON (line {getattr(exc, 'lineno', '?')}: {getattr(exc, 'msg', exc)})") from None


def _json_mapping(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {key!r} (a key may appear once in an object)")
        out[key] = value
    return out


# -- YAML ---------------------------------------------------------------------------------


class _SafeLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """PyYAML's safe loader (pure Python: the C one has no hooks) that refuses aliases,
    merge keys, duplicate keys and deep nesting while it composes, before anything is
    built or expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: object, index: object) -> object:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"line {line}: YAML aliases are not allowed (*{event.anchor}): write the value out")
        if not isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ConfigError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> object:
        first: dict[object, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError(f"line {line}: YAML merge keys (<<) are not allowed: write the keys out")
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen is not None:
                raise ConfigError(
                    f"line {line}: duplicate key {key!r} (first on line {seen}); a key may appear once in a mapping"
                )
            first[key] = line
        return super().construct_mapping(node, deep)


def _yaml(text: str) -> object:
    try:
        loader = _SafeLoader(text)  # the reader checks the characters here already
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({yaml_problem(exc)})") from None


def yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: where and what (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None and hasattr(exc, "position") and hasattr(exc, "character"):  # a ReaderError
        char = exc.character
        shown = f"#x{ord(char):04x}" if isinstance(char, str) else f"#x{char:02x}" if isinstance(char, int) else "?"
        return f"character {exc.position + 1}: unacceptable character {shown}: {getattr(exc, 'reason', '')}"
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem or exc}".split())
