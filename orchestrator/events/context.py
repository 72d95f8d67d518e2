"""Who is emitting: the project id, task id and enclosing pair of the caller, carried by
one context variable so that concurrent asyncio tasks each see their own; correlation ids;
the batch a run belongs to."""

from __future__ import annotations

import contextvars
import itertools
import os
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

__all__ = ["EventContext", "BatchScope", "batch_scope", "current_batch", "current_ids", "new_correlation_id"]

_ID_BLOCK = 1024  # ids made at once; a divisor of 2**32, so a block never wraps the counter
_ID_PREFIX = os.urandom(4).hex()
_id_blocks = itertools.count(0)
_id_pool: Iterator[str] = iter(())


def _reseed_ids() -> None:  # a forked child must not repeat its parent's ids
    global _ID_PREFIX, _id_blocks, _id_pool
    _ID_PREFIX, _id_blocks, _id_pool = os.urandom(4).hex(), itertools.count(0), iter(())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def _next_id_block() -> str:
    """Make the next block of ids and return its first.  Why blocks: formatting one id
    cost as much as a tenth of a pair on the bus; a block is formatted by one
    ``bytes.hex`` and cut into ids.  Two threads refilling at once each take a block of
    their own: ids are skipped, never repeated."""
    global _id_pool
    first = (int(_ID_PREFIX, 16) << 32) + ((next(_id_blocks) * _ID_BLOCK) & 0xFFFFFFFF)
    hexed = struct.pack(f">{_ID_BLOCK}Q", *range(first, first + _ID_BLOCK)).hex()
    pool = iter([hexed[i : i + 16] for i in range(0, len(hexed), 16)])
    _id_pool = pool
    return next(pool)


def new_correlation_id() -> str:
    """16 hex chars, unique per pair (and per attempt: every retry is a new pair): a
    random per-process prefix and a counter (cheaper than 8 random bytes per pair)."""
    return next(_id_pool, None) or _next_id_block()


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
