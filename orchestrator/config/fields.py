"""Field types shared by the file shapes: the constraints a value must meet, declared once,
and the words an error uses for them.

A constraint is a ``msgspec.Meta`` on an ``Annotated`` type; ``Meta(extra={...})`` may
carry two words for error lines (read by :mod:`.convert`):

* ``expected``: what the value must be, e.g. ``"a list of names"``
  (``must be a list of names, got 'us'``);
* ``noun``: what an unknown choice is called, e.g. ``"mode"``
  (``unknown mode 'strict' (known: hard, soft, monitor)``).

Numbers are finite: ``le``/``ge`` at the largest float refuse infinity (NaN fails every
comparison), so no cap or deadline can silently mean "never".
"""

from __future__ import annotations

import sys
from typing import Annotated

from msgspec import Meta

__all__ = ["FINITE", "Name", "Names", "OptionalNames", "Text", "Count", "Fraction", "NonNegative", "Positive"]

FINITE = sys.float_info.max
"""The bound that makes a float field finite (infinity is above it)."""

NAME_PATTERN = r"(?s)^\S(?:.*\S)?$"
"""Not empty, no surrounding blanks."""

Name = Annotated[str, Meta(pattern=NAME_PATTERN, extra={"expected": "a non-empty name (no surrounding blanks)"})]
Names = Annotated[tuple[Name, ...], Meta(extra={"expected": "a list of names"})]
OptionalNames = Names | None
Text = Annotated[str, Meta(pattern=r"\S", extra={"expected": "a non-empty string"})]
"""Text with something in it (a prompt, a project description)."""
Count = Annotated[int, Meta(ge=1)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
NonNegative = Annotated[float, Meta(ge=0, le=FINITE)]
Positive = Annotated[float, Meta(gt=0, le=FINITE)]
