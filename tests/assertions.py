"""Assertions shared by tests of several packages."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator import events


def assert_pairs_balanced(recorded: Iterable[events.Event]) -> None:
    """Every start has exactly one finish, and a pair closes before its parent closes."""
    open_: dict[str, events.Event] = {}
    closed: set[str] = set()
    for p in recorded:
        if isinstance(p, events.PairStart):
            assert p.correlation_id not in open_ and p.correlation_id not in closed
            if p.parent_id is not None:
                assert p.parent_id in open_, "a pair started under a closed parent"
            open_[p.correlation_id] = p
        elif isinstance(p, events.PairFinish):
            assert p.correlation_id in open_, "finish without start (or twice)"
            children = [c for c in open_.values() if c.parent_id == p.correlation_id]
            assert not children, "a parent finished before its children"
            del open_[p.correlation_id]
            closed.add(p.correlation_id)
    assert not open_


def assert_one_line_error(stderr: str, *fragments: str) -> str:
    """What a command printed on bad input: one line of ``orchestrator: error: ...``, no
    traceback, holding every fragment.  Returns the line."""
    line = stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, stderr
    assert line.startswith("orchestrator: error:"), line
    for fragment in fragments:
        assert fragment in line, line
    return line
