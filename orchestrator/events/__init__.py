"""The event bus: every signal the orchestrator emits, their payloads, and the emit helpers.

Emitters (engine, client, policy engine, remediation engine) import only this package.
Observers subscribe to the signals here; nothing in this package knows about them or
about OpenTelemetry.

One module per job:

* :mod:`.bus` - :class:`BusSignal`: strong connections, delivery, receivers isolated from
  each other's exceptions; whether anything listens at all;
* :mod:`.context` - the caller's project, task and enclosing pair (context variables),
  correlation ids, the batch a run belongs to;
* :mod:`.payloads` - one immutable ``msgspec`` struct per signal;
* :mod:`.signals` - the catalogue: every signal with its payload type and doc;
* :mod:`.pairs` - the ``traced_*`` helpers that send start/finish pairs;
* :mod:`.points` - :func:`emit` for point events, typed by the signal's payload.

Design notes (why, not what):

* Signals come in start/finish pairs. The ``traced_*`` helpers send the pair from the
  same asyncio task, and the finish exactly once, also on error or cancellation, so an
  observer can keep per-pair state keyed by ``correlation_id`` and trust it will be
  released.
* With no receiver connected anywhere on the bus, every helper returns one shared
  do-nothing handle: no payload is built, no context variable touched.
"""

from __future__ import annotations

from . import payloads as _payloads
from . import signals as _signals
from .bus import BusSignal, PairReceiver, is_active
from .bus import PairFailure as PairFailure
from .context import BatchScope as BatchScope
from .context import EventContext as EventContext
from .context import batch_scope, current_batch, current_ids, new_correlation_id
from .pairs import (
    PairContext,
    traced_batch,
    traced_llm_call,
    traced_policy_check,
    traced_project,
    traced_remediation,
    traced_task,
)
from .pairs import PairHandle as PairHandle
from .payloads import *  # noqa: F403 - every payload class, as payloads.__all__ lists them
from .payloads import AttributeValue as AttributeValue
from .payloads import Scalar as Scalar
from .points import emit
from .signals import *  # noqa: F403 - every signal and the catalogue's tables, as signals.__all__ lists them

__all__ = [
    "BusSignal",
    "PairReceiver",
    "PairContext",
    "emit",
    "is_active",
    "current_ids",
    "new_correlation_id",
    "traced_project",
    "traced_task",
    "traced_llm_call",
    "traced_policy_check",
    "traced_remediation",
    "traced_batch",
    "batch_scope",
    "current_batch",
]
__all__ += _payloads.__all__  # so a new payload or signal is declared in one module, not here too
__all__ += _signals.__all__
