"""The catalogue (``orchestrator/events/signals.py``), the payload classes and the docs'
events catalogue table agree: the table lists exactly the bus's signals, pairs as pairs,
each with exactly its payload's own fields.

The table is read from README.md or from the docs pages (``docs/**/*.md``), wherever it is:
a table whose header starts ``| signal | sent when | payload``.  In its payload column,
text in parentheses is commentary; ``start:`` and ``finish:`` introduce the fields only a
pair's start or finish payload has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator import events

ROOT = Path(__file__).resolve().parents[2]
HEADER = "| signal | sent when | payload"
FIELD = re.compile(r"`([a-z_][a-z0-9_]*)`")
COMMON = set(events.Event.__struct_fields__)
START_BASE = set(events.PairStart.__struct_fields__)
FINISH_BASE = set(events.PairFinish.__struct_fields__)
POINT_BASE = set(events.PointEvent.__struct_fields__)  # the common fields and task_id


def _tables() -> dict[str, list[str]]:
    """Path -> the catalogue table's rows, for every page holding one."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = {}
    for page in pages:
        if not page.is_file():
            continue
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.startswith(HEADER):
                rows = []
                for row in lines[i + 2 :]:
                    if not row.startswith("|"):
                        break
                    rows.append(row)
                found[str(page.relative_to(ROOT))] = rows
    return found


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split(" | ")]


def _without_parentheses(text: str) -> str:
    out, depth = [], 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _segments(payload_cell: str) -> dict[str, set[str]]:
    """The fields a row lists: ``both`` (before any marker), ``start`` and ``finish``."""
    text = _without_parentheses(payload_cell)
    out = {"both": set(), "start": set(), "finish": set()}
    for part, chunk in zip(
        ["both", *re.findall(r"\b(start|finish):", text)], re.split(r"\b(?:start|finish):", text), strict=True
    ):
        out[part] |= set(FIELD.findall(chunk))
    return out


def problems(rows: list[str]) -> list[str]:
    """What disagrees between the table's rows and the catalogue (empty: they agree)."""
    found: list[str] = []
    seen: list[str] = []
    pairs = {start.name: finish for start, finish in events.PAIRS}
    for row in rows:
        cells = _cells(row)
        if len(cells) < 3:
            found.append(f"a row with {len(cells)} cells: {row[:60]}")
            continue
        names = FIELD.findall(cells[0])
        seen += names
        if not cells[1]:
            found.append(f"{names}: says nothing about when it is sent")
        listed = _segments(cells[2])
        unknown = [n for n in names if n not in events.SIGNALS_BY_NAME]
        if unknown:
            found.append(f"no such signal: {unknown}")
            continue
        if len(names) == 2:
            start, finish = (events.SIGNALS_BY_NAME[n] for n in names)
            if pairs.get(start.name) is not finish:
                found.append(f"{names} is not a start/finish pair")
                continue
            start_own = set(start.payload_type.__struct_fields__) - START_BASE
            finish_own = set(finish.payload_type.__struct_fields__) - FINISH_BASE
            want = {"both": start_own & finish_own, "start": start_own - finish_own, "finish": finish_own - start_own}
            for part in ("both", "start", "finish"):
                if listed[part] != want[part]:
                    found.append(
                        f"{names[0]}/{names[1]} ({part}): lists {sorted(listed[part])}, "
                        f"the payloads have {sorted(want[part])}"
                    )
        elif len(names) == 1:
            signal = events.SIGNALS_BY_NAME[names[0]]
            if signal not in events.POINT_SIGNALS:
                found.append(f"{names[0]} is half of a pair: list it with its partner")
                continue
            own = set(signal.payload_type.__struct_fields__) - POINT_BASE
            shown = (listed["both"] | listed["start"] | listed["finish"]) - {"task_id"}  # task_id: every point event's
            if shown != own:
                found.append(f"{names[0]}: lists {sorted(shown)}, {signal.payload_type.__name__} has {sorted(own)}")
        else:
            found.append(f"a row names {len(names)} signals: {names}")
    every = [s.name for s in events.ALL_SIGNALS]
    if sorted(seen) != sorted(every):
        found.append(
            f"missing: {sorted(set(every) - set(seen))}, extra or repeated: "
            f"{sorted(n for n in set(seen) if seen.count(n) > 1 or n not in every)}"
        )
    return found


def test_the_docs_hold_the_catalogue_table():
    assert _tables(), f"no table starting {HEADER!r} in README.md or docs/"


@pytest.mark.parametrize("page", sorted(_tables()))
def test_the_table_lists_every_signal_with_its_payload_fields(page):
    assert problems(_tables()[page]) == []


def test_the_check_finds_a_wrong_field_a_missing_signal_and_a_broken_pair():
    """The check above can fail: each change to a correct table is reported."""
    rows = next(iter(_tables().values()))
    wrong_field = [r.replace("`fraction`", "`fracton`") for r in rows]
    assert any("budget_warning" in p for p in problems(wrong_field))
    dropped = [r for r in rows if not r.startswith("| `cache_hit`")]
    assert any("missing: ['cache_hit']" in p for p in problems(dropped))
    swapped = [r.replace("| `task_started` / `task_finished`", "| `task_started` / `policy_checked`") for r in rows]
    assert any("not a start/finish pair" in p for p in problems(swapped))
    no_finish_marker = [r.replace("finish: `completion`", "`completion`") for r in rows]  # now start-only
    assert any("llm_call_started/llm_call_finished (start)" in p for p in problems(no_finish_marker))
