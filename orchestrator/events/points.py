"""Point events: :func:`emit`, typed by the signal's payload.

Why a ``ParamSpec`` and not ``emit(Payload(...))``: building a payload costs more than
the whole no-receiver budget of an emit point, and most emit points have no receiver.  A
:class:`~orchestrator.events.bus.PointSignal` carries its payload class's keyword
parameters in its type, so ``emit(budget_warning, spent_usd=..., fracton=...)`` is a mypy
error at the call site (``Unexpected keyword argument "fracton"``; a missing field too),
while at run time ``emit`` still returns before building anything when nobody listens.
"""

from __future__ import annotations

from time import time_ns
from typing import Any, ParamSpec, TypeVar

from . import context as _ids
from .bus import PointSignal
from .context import _ctx
from .payloads import PointEvent

__all__ = ["emit"]

P = ParamSpec("P")
E = TypeVar("E", bound=PointEvent)


def emit(signal: PointSignal[P, E], /, *args: P.args, **fields: P.kwargs) -> None:
    """Send a point event on ``signal`` if anyone listens: ``fields`` are the payload's own
    (checked by the type checker against the payload class).  ``task_id`` defaults to the
    caller's task; ids and timestamp are filled in."""
    if not signal.receivers:
        return
    fields_: dict[str, Any] = fields
    pid, tid, parent_cid = _ctx.get()
    if "task_id" not in fields_:
        fields_["task_id"] = tid or None
    fields_["correlation_id"] = next(_ids._id_pool, None) or _ids._next_id_block()
    fields_["parent_id"] = parent_cid
    fields_["project_id"] = pid
    fields_["timestamp_ns"] = time_ns()
    signal._deliver(signal.payload_type(*args, **fields_))
