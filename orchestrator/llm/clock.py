"""The catalog's clock: which day and moment it is for end-of-life dates, deprecation
windows and dated prices.

Why one seam: the catalog's answers change with the date (a model passes its end of
life, a new price starts on a given day, DeepSeek's rates follow the hour), so every part
of ``llm/`` that asks "when is now" asks here and nowhere else.  That makes the answers
repeatable: the test suite pins the moment and gets the same answers on any day, and a
user can ask what the catalog will say on another day (``ORCHESTRATOR_TODAY=2027-06-01
orchestrator models``).  Durations (latency, timeouts, the time budget) are not this
clock's job: they use the monotonic clock.

Which moment wins: one pinned in Python (:func:`pinned`), then ``ORCHESTRATOR_TODAY``,
then the wall clock (UTC).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from ..domain.errors import ConfigError

TODAY_ENV = "ORCHESTRATOR_TODAY"
"""A date (``2027-06-01``: 00:00 UTC that day) or a time (``2027-06-01T14:30``, UTC
unless it names an offset) that the catalog and prices take as now."""

_pinned: dt.datetime | None = None


def now() -> dt.datetime:
    """The moment (timezone-aware, UTC) prices are looked up at and retirement is judged
    by.  A bad ``ORCHESTRATOR_TODAY`` raises :class:`ConfigError` (one line)."""
    if _pinned is not None:
        return _pinned
    raw = os.environ.get(TODAY_ENV, "").strip()
    if raw:
        return parse_moment(raw, TODAY_ENV)
    return wall_clock()


def wall_clock() -> dt.datetime:
    """The wall clock's moment (UTC), whatever is pinned."""
    return dt.datetime.now(dt.UTC)


def today() -> dt.date:
    """The UTC date of :func:`now`."""
    return now().date()


def is_pinned() -> bool:
    """True when the moment is not the wall clock's (pinned in Python or by the environment)."""
    return _pinned is not None or bool(os.environ.get(TODAY_ENV, "").strip())


@contextmanager
def pinned(moment: dt.date | dt.datetime | str | None) -> Iterator[dt.datetime | None]:
    """Take ``moment`` as now inside the block (None: back to the environment or the
    wall clock), then restore what was pinned before.  Process-wide, like the date is: it
    holds in every thread and task.  A date means 00:00 UTC of that day; a naive time is
    UTC.  The catalog's base rates are computed when it is built: to see the catalog of
    another day, use :func:`orchestrator.llm.catalog.as_of`."""
    global _pinned
    previous = _pinned
    _pinned = None if moment is None else to_moment(moment)
    try:
        yield _pinned
    finally:
        _pinned = previous


def to_moment(value: dt.date | dt.datetime | str, key: str = "today") -> dt.datetime:
    """``value`` as a timezone-aware UTC datetime (a date: 00:00 UTC that day)."""
    if isinstance(value, str):
        return parse_moment(value, key)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise TypeError(f"not a date or time: {value!r}")


@lru_cache(maxsize=16)
def parse_moment(text: str, key: str = TODAY_ENV) -> dt.datetime:
    """``2027-06-01`` or ``2027-06-01T14:30[:00][Z|+02:00]`` as a UTC datetime;
    :class:`ConfigError` naming ``key`` otherwise."""
    value = text.strip()
    try:
        if len(value) == 10:
            return to_moment(dt.date.fromisoformat(value))
        if "T" in value or " " in value:
            return to_moment(dt.datetime.fromisoformat(value))
    except ValueError:
        pass
    raise ConfigError(
        f"must be a date such as 2027-06-01 or a UTC time such as 2027-06-01T14:30, got {text!r}", key=key
    )


__all__ = ["TODAY_ENV", "is_pinned", "now", "parse_moment", "pinned", "to_moment", "today", "wall_clock"]
