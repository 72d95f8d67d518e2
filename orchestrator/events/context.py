"""Who is emitting: the project id, task id and enclosing pair of the caller, carried by
one context variable so that concurrent asyncio tasks each see their own; correlation ids;
the batch a run belongs to."""

from __future__ import annotations

import contextvars
import itertools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

__all__ = ["EventContext", "BatchScope", "batch_scope", "current_batch", "current_ids", "new_correlation_id"]

_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def _reseed_ids() -> None:  # a forked child must not repeat its parent's ids
    global _ID_PREFIX, _id_counter
    _ID_PREFIX, _id_counter = os.urandom(4).hex(), itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_correlation_id() -> str:
    """16 hex chars, unique per pair (and per attempt: every retry is a new pair): a
    random per-process prefix and a counter (cheaper than 8 random bytes per pair)."""
    return _ID_PREFIX + "%08x" % (next(_id_counter) & 0xFFFFFFFF)



class EventContext(NamedTuple):
    project_id: str | None = None
    task_id: str | None = None
    parent_id: str | None = None


_Ids = tuple[str | None, str | None, str | None]  # an EventContext as a plain tuple: 10x cheaper to make
_ROOT_CTX: _Ids = (None, None, None)
_ctx: contextvars.ContextVar[_Ids] = contextvars.ContextVar("orchestrator_event_ctx", default=_ROOT_CTX)


class BatchScope(NamedTuple):
    batch_id: str
    carrier: Mapping[str, str]


_batch: contextvars.ContextVar[BatchScope | None] = contextvars.ContextVar("orchestrator_batch", default=None)


@contextmanager
def batch_scope(batch_id: str, carrier: Mapping[str, str] | None = None) -> Iterator[None]:
    """Runs started inside belong to batch ``batch_id``: their ``project_started`` carries
    the batch id and the batch span's ``carrier``, and they start at the root of the event
    tree (each project is a trace of its own, linked to the batch, never a child of it)."""
    scope_token = _batch.set(BatchScope(batch_id, dict(carrier or {})))
    ctx_token = _ctx.set(_ROOT_CTX)
    try:
        yield
    finally:
        _ctx.reset(ctx_token)
        _batch.reset(scope_token)


def current_batch() -> BatchScope | None:
    """The batch the caller runs in (see :func:`batch_scope`), or None."""
    return _batch.get()


def current_ids() -> EventContext:
    """The project id, task id and enclosing pair's correlation id of the caller."""
    return EventContext(*_ctx.get())

