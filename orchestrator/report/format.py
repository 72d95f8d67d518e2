"""How numbers read in a report: durations, money, token counts, clock times."""

from __future__ import annotations

import time

__all__ = ["duration", "money", "tokens", "clock"]


def duration(ns: int | float, short: bool = False) -> str:
    """``840 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; ``short`` drops the minor unit."""
    s = max(0.0, ns / 1e9)
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 or s == 0 else f"{s * 1e6:.0f} µs"
    if s < 60:
        return f"{s:.1f} s" if not short or s < 10 else f"{s:.0f} s"
    if s < 3600:
        m, rest = divmod(int(round(s)), 60)
        if short:  # axis ticks: every label distinct
            return f"{s:.0f} s" if s < 600 else f"{m} min" if not rest else f"{m} min {rest:02d} s"
        return f"{m} min {rest:02d} s"
    h, rest = divmod(int(round(s)), 3600)
    return f"{h} h" if short else f"{h} h {rest // 60:02d} min"


def money(usd: float | None, short: bool = False) -> str:
    """``$0.001234``; ``short`` for axis labels (``$0.25``, ``$8``)."""
    if usd is None:
        return "-"
    if short:
        return f"${usd:.4g}"
    return f"${usd:.6f}"


def tokens(n: int) -> str:
    return f"{n:,}"


def clock(ns: int) -> str:
    """A wall-clock time in UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))
