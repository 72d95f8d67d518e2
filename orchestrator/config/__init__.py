"""One loader for every file a user writes: project, policy, catalog files (and any later one).

Why one: the hand-written parsers each checked a little differently, and what none of
them checked (YAML aliases, duplicate keys, deep nesting, huge files) went through to a
traceback, a hang or a silently wrong value.  Here a file goes through two steps:

1. :func:`read_document` reads it (a regular file, at most :data:`MAX_BYTES`, UTF-8) and
   parses YAML, JSON or TOML, refusing YAML aliases and merge keys, duplicate keys and
   nesting deeper than :data:`MAX_DEPTH`, each in one line;
2. :func:`convert` checks the data against a *shape*: a ``msgspec.Struct`` declared with
   ``forbid_unknown_fields=True`` whose field types carry the constraints
   (:mod:`.fields`).  Any problem becomes one :class:`ConfigError` line naming the file,
   the key path, the value, why, and the closest known key or value.

Adding a file kind is one shape and one :func:`load_file` call.  This package sits just
above ``domain`` (it imports nothing else of ours), so the CLI, governance and the
catalog all use it.
"""

from __future__ import annotations

from ..domain.errors import ConfigError
from .convert import convert, key_text, load_file
from .reading import MAX_BYTES, MAX_DEPTH, read_document

__all__ = ["ConfigError", "MAX_BYTES", "MAX_DEPTH", "convert", "key_text", "load_file", "read_document"]
