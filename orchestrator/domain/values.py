"""Checking numbers that come from users (flags, project, policy and catalog files).

One rule everywhere: a number is finite (NaN, infinity and ``1e309`` are refused, so
no budget, deadline or threshold can silently mean "never" or "always" and no JSON we
write holds ``NaN``), a boolean is not a number (YAML's ``yes`` is not ``1``), and an
integer field takes integers only (``concurrency: 2.7`` is an error, not 2).

Also the names of JSON-ready data (:data:`JsonValue`, :data:`JsonObject`): what the run
writes to ``summary.json``, the run store and event files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from .errors import ConfigError

__all__ = ["JsonObject", "JsonSchema", "JsonValue", "finite_number", "text_value", "whole_number"]

JsonValue: TypeAlias = None | bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"]
"""What ``json.dumps`` can write as it is (a recursive type: mypy checks every level;
read-only containers, so a ``dict[str, str]`` or a ``list[int]`` is one)."""
JsonObject: TypeAlias = dict[str, JsonValue]
"""A JSON object being built (``summary.json``, a checkpoint's settings)."""
JsonSchema: TypeAlias = dict[str, JsonValue]
"""A JSON Schema an answer must follow (a JSON object like any other: the name says what
it is for)."""


def finite_number(
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    what: str = "a number",
) -> float:
    """``value`` as a float when it is a finite number within the bounds (``positive``:
    strictly above 0); else :class:`ConfigError` saying what was expected and what came.
    Strings that spell a number (flags arrive as text) are read."""
    expected = _expectation(what, minimum, maximum, positive)
    number = _as_number(value, expected)
    if not math.isfinite(number):
        raise ConfigError(f"must be {expected}, got {value!r} (not a finite number)")
    if positive and number <= 0:
        raise ConfigError(f"must be {expected}, got {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ConfigError(f"must be {expected}, got {value!r}")
    return number


def whole_number(
    value: object, *, minimum: int | None = None, maximum: int | None = None, what: str = "a whole number"
) -> int:
    """``value`` as an int when it is an integer (``3`` or ``"3"``, never ``2.7``, ``3.0``
    from a file is accepted as 3) within the bounds; else :class:`ConfigError`."""
    expected = _expectation(what, minimum, maximum, False)
    if isinstance(value, bool):
        raise ConfigError(f"must be {expected}, got {value!r}")
    if isinstance(value, int):
        number = value
    else:
        real = _as_number(value, expected)
        if not math.isfinite(real) or real != int(real):
            raise ConfigError(f"must be {expected}, got {value!r}")
        number = int(real)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ConfigError(f"must be {expected}, got {value!r}")
    return number


def _as_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"must be {what}, got {value!r}")
    try:
        return float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"must be {what}, got {value!r}") from None


def _expectation(what: str, minimum: float | None, maximum: float | None, positive: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} between {minimum:g} and {maximum:g}"
    if positive:
        return f"{what} > 0"
    if minimum is not None:
        return f"{what} >= {minimum:g}"
    if maximum is not None:
        return f"{what} <= {maximum:g}"
    return what


def text_value(value: object, *, what: str = "text") -> str:
    """``value`` when it is text that can be sent to a model: a string, valid UTF-8
    (arguments with undecodable bytes arrive as lone surrogates), without NUL bytes
    (llama.cpp reads C strings: a NUL would silently cut the prompt)."""
    if not isinstance(value, str):
        raise ConfigError(f"must be {what}, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"is not valid UTF-8 (an undecodable byte at character {exc.start + 1})") from None
    if "\x00" in value:
        raise ConfigError(f"contains a NUL byte (character {value.index(chr(0)) + 1})")
    return value
