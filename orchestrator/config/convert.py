"""Data to a shape, and the one place a validation error becomes a line a user can act on.

``msgspec.convert(data, Shape, strict=True)`` checks types, constraints and unknown keys in
one pass; its errors say where in ``$.a[0].b`` notation and in type words (``Expected
`int` >= 1``).  :func:`explain` turns any of them into :class:`ConfigError`: the key path
as the user wrote it (``policies[0].enforcement_mode``, ``models."gpt-6.1-sol".price``),
the value, what it must be (from the field's type and constraints, or the words its
``Meta(extra=...)`` gives), and for an unknown key or choice the closest known one.  A
shape's ``__post_init__`` raises :class:`ConfigError` for what types cannot say (names
that must exist, fields that contradict each other); its key is placed under the path.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from ..domain.errors import ConfigError, join_key, unknown
from .fields import FINITE
from .reading import read_document

__all__ = ["convert", "explain", "load_file", "key_text"]

T = TypeVar("T")

_MISSING = object()
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def load_file(path: str | Path, shape: type[T], *, what: str, fmt: str | None = None) -> T:
    """Read ``path`` (:func:`~orchestrator.config.read_document`) and convert it to ``shape``."""
    return convert(read_document(path, what=what, fmt=fmt), shape, source=str(path))


def convert(data: object, shape: type[T], *, source: str = "", key: str = "") -> T:
    """``data`` as an instance of ``shape`` (a ``msgspec.Struct``), or one
    :class:`ConfigError` located at ``key`` (a prefix) in ``source``."""
    try:
        return msgspec.convert(data, shape, strict=True)
    except msgspec.ValidationError as exc:
        raise explain(exc, data, shape).within(key, source=source) from None


def key_text(key: object) -> str:
    """A mapping key in a key path: bare when it is a plain word, else quoted (TOML style)."""
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else f'"{text}"'


# -- explaining an error ------------------------------------------------------------------


def explain(exc: msgspec.ValidationError, data: object, shape: object) -> ConfigError:
    """The one-line :class:`ConfigError` for ``exc``, raised converting ``data`` to ``shape``."""
    text = str(exc)
    head, sep, where = text.rpartition(" - at `")
    if not sep:
        head, where = text, ""
    of_key = where.startswith("key` in `")
    path = where.removeprefix("key` in `").rstrip("`")
    key, value, tp = _walk(data, shape, path.removeprefix("$"))
    if of_key:  # the failing key of the mapping found at ``path``
        key_type = _mapping_types(tp)[0]
        bad = _first_failing(value.keys() if isinstance(value, Mapping) else (), key_type)
        key, value, tp = join_key(key, key_text(bad)) if bad is not _MISSING else key, bad, key_type
    cause = exc.__cause__
    if isinstance(cause, ConfigError):
        return ConfigError(cause.reason, key=join_key(key, cause.key))
    if isinstance(cause, ValueError | TypeError):
        return ConfigError(str(cause), key=key)
    field = re.fullmatch(r"Object (contains unknown|missing required) field `(.*)`", head)
    if field:
        struct = _struct_of(tp)
        name = field.group(2)
        if field.group(1) == "contains unknown":
            known = [f.encode_name for f in msgspec.structs.fields(struct)] if struct else []
            noun = getattr(struct, "unknown_key_noun", "key")
            return ConfigError(unknown(noun, name, known), key=join_key(key, key_text(name)))
        field_type = (
            next((f.type for f in msgspec.structs.fields(struct) if f.encode_name == name), object)
            if struct
            else object
        )
        return ConfigError(f"is required: {expected(field_type)}", key=join_key(key, key_text(name)))
    if head.startswith("Invalid enum value"):
        noun, choices = _choices(tp)
        return ConfigError(unknown(noun, value, choices), key=key)
    return ConfigError(f"must be {expected(tp)}, got {_show(value, tp)}", key=key)


def _walk(data: object, shape: object, path: str) -> tuple[str, object, object]:
    """Follow ``path`` (``.field``, ``[3]``, ``[...]`` for a mapping's value) through the
    data and the types together: the user's key path, the value there and its type."""
    key, value, tp = "", data, shape
    for match in _SEGMENT.finditer(path):
        name, index = match.groups()
        if name is not None:
            struct = _struct_of(tp)
            field = next((f for f in msgspec.structs.fields(struct) if f.encode_name == name), None) if struct else None
            tp = field.type if field is not None else object
            value = value.get(name, _MISSING) if isinstance(value, Mapping) else _MISSING
            key = join_key(key, key_text(name))
        elif index == "...":
            value_type = _mapping_types(tp)[1]
            entries: dict[object, object] = dict(value.items()) if isinstance(value, Mapping) else {}
            bad = _first_failing(entries, value_type, values=entries)
            value = entries.get(bad, _MISSING)
            key = join_key(key, key_text(bad)) if bad is not _MISSING else key
            tp = value_type
        else:
            position = int(index)
            tp = _item_type(tp, position)
            value = value[position] if isinstance(value, list | tuple) and position < len(value) else _MISSING
            key = f"{key}[{position}]"
    return key, value, tp


def _first_failing(keys: Iterable[object], tp: object, values: Mapping[object, object] | None = None) -> object:
    """The first key (or, with ``values``, the first key whose value) ``tp`` refuses;
    msgspec checks a mapping in order and stops at the first problem."""
    keys = list(keys)
    for k in keys:
        try:
            msgspec.convert(values[k] if values is not None else k, tp, strict=True)
        except msgspec.ValidationError:
            return k
    return keys[0] if keys else _MISSING


# -- types --------------------------------------------------------------------------------


def _strip(tp: object) -> tuple[object, list[msgspec.Meta]]:
    """``tp`` without its ``Annotated`` layers, and their ``Meta`` objects."""
    metas: list[msgspec.Meta] = []
    while get_origin(tp) is Annotated:
        tp, *extras = get_args(tp)
        metas.extend(m for m in extras if isinstance(m, msgspec.Meta))
    return tp, metas


def _members(tp: object) -> list[object]:
    base, _ = _strip(tp)
    if get_origin(base) in (Union, types.UnionType):
        return [m for member in get_args(base) for m in _members(member)]
    return [tp]


def _useful(tp: object) -> list[object]:
    return [m for m in _members(tp) if _strip(m)[0] not in (type(None), msgspec.UnsetType)]


def _struct_of(tp: object) -> type[msgspec.Struct] | None:
    for member in _members(tp):
        base, _ = _strip(member)
        if isinstance(base, type) and issubclass(base, msgspec.Struct):
            return base
    return None


def _mapping_types(tp: object) -> tuple[object, object]:
    for member in _members(tp):
        base, _ = _strip(member)
        if get_origin(base) in (dict, Mapping) or base in (dict, Mapping):
            args = get_args(base)
            return (args[0], args[1]) if len(args) == 2 else (object, object)
    return object, object


def _item_type(tp: object, position: int) -> object:
    for member in _members(tp):
        base, _ = _strip(member)
        if get_origin(base) in (list, tuple) or base in (list, tuple):
            args = get_args(base)
            if get_origin(base) is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
                return args[position] if position < len(args) else object
            return args[0] if args else object
    return object


def _extra(tp: object, word: str) -> str | None:
    for meta in _strip(tp)[1]:
        if meta.extra and word in meta.extra:
            return str(meta.extra[word])
    return None


def _choices(tp: object) -> tuple[str, list[str]]:
    """What an unknown choice is called, and the known ones."""
    noun = _extra(tp, "noun")
    for member in _useful(tp):
        noun = noun or _extra(member, "noun")
        base, _ = _strip(member)
        if isinstance(base, type) and issubclass(base, enum.Enum):
            words = re.sub(r"(?<!^)(?=[A-Z])", " ", base.__name__).lower()
            return noun or words, [str(m.value) for m in base]
        if get_origin(base) is Literal:
            return noun or "value", [str(a) for a in get_args(base)]
    return noun or "value", []


def expected(tp: object) -> str:
    """What a value of type ``tp`` must be, in words: ``a whole number >= 1``."""
    said = _extra(tp, "expected")
    if said:
        return said
    members = _useful(tp)
    if len(members) > 1:
        return " or ".join(dict.fromkeys(expected(m) for m in members))
    if len(members) == 1 and members[0] is not tp:
        return expected(members[0])
    base, metas = _strip(tp)
    if base is bool:
        return "true or false"
    if base is int:
        return "a whole number" + _bounds(metas)
    if base is float:
        finite = any(FINITE in (m.le, m.lt) or -FINITE in (m.ge, m.gt) for m in metas)
        return ("a finite number" if finite else "a number") + _bounds(metas)
    if base is str:
        return "text"
    if base is dt.date:
        return "a date such as 2026-11-30"
    origin = get_origin(base) or base
    if origin in (list, tuple, set, frozenset):
        return "a list"
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return str(getattr(base, "described_as", "a mapping"))
    if origin in (dict, Mapping):
        return "a mapping"
    if (isinstance(base, type) and issubclass(base, enum.Enum)) or origin is Literal:
        return "one of " + ", ".join(_choices(tp)[1])
    return "a value"


def _bounds(metas: list[msgspec.Meta]) -> str:
    low: tuple[str, float] | None = None
    high: tuple[str, float] | None = None
    for m in metas:
        if m.gt is not None:
            low = (">", m.gt)
        elif m.ge is not None:
            low = (">=", m.ge)
        if m.lt is not None:
            high = ("<", m.lt)
        elif m.le is not None:
            high = ("<=", m.le)
    low, high = (None if b is None or abs(b[1]) == FINITE else b for b in (low, high))
    if low is not None and high is not None and (low[0], high[0]) == (">=", "<="):
        return f" between {low[1]:g} and {high[1]:g}"
    return "".join(f" {op} {bound:g}" for op, bound in (b for b in (low, high) if b is not None))


def _show(value: object, tp: object) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, float) and not math.isfinite(value):
        return f"{text} (not a finite number)"
    if isinstance(value, int | float) and not isinstance(value, bool) and any(_strip(m)[0] is str for m in _useful(tp)):
        return f"{text} (quote numbers: '{value}')"
    return text
