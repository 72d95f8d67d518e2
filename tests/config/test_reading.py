"""The loader's first step: what it refuses before any shape is checked (aliases, merge
keys, duplicate keys, deep nesting, big files, anything but a regular file), each as one
line, fast and in bounded memory."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

import pytest

from orchestrator.config import MAX_BYTES, MAX_DEPTH, ConfigError, read_document
from orchestrator.config.reading import parse_text

# nine levels of nine aliases: 387 million strings once expanded (PyYAML would build them all)
ALIAS_BOMB = (
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    + "project: x\ncriteria: *i\n"
)


def _error(text: str, fmt: str = "yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_text(text, fmt)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_alias_bomb_is_refused_at_the_first_alias_fast_and_small():
    assert len(ALIAS_BOMB.encode()) < 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = _error(ALIAS_BOMB)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 5_000_000  # bytes: nothing was expanded
    assert message == "line 2: YAML aliases are not allowed (*a): write the value out"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("a: &x 1\nb: *x\n", "line 2: YAML aliases are not allowed (*x)"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "YAML aliases are not allowed"),
        ("other:\n  <<: {x: 1}\n  y: 2\n", "line 2: YAML merge keys (<<) are not allowed"),
        ("budget_usd: 0.01\nbudget_usd: 500\n", "line 2: duplicate key 'budget_usd' (first on line 1)"),
        ("tasks:\n  - id: a\n    prompt: p\n    prompt: q\n", "line 4: duplicate key 'prompt' (first on line 3)"),
        ("{a: 1, a: 2}", "duplicate key 'a'"),
        ("1: x\n1.0: y\n", "duplicate key 1.0"),  # the same key to Python: one would overwrite the other
    ],
)
def test_yaml_refusals(text, fragment):
    assert fragment in _error(text)


def test_an_anchor_without_an_alias_is_harmless():
    assert parse_text("a: &x 1\nb: 2\n", "yaml") == {"a": 1, "b": 2}


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_nesting_is_capped_at_max_depth(fmt):
    def nested(depth: int) -> str:
        inner = "[" * depth + "1" + "]" * depth
        return f"a = {inner}" if fmt == "toml" else f'{{"a": {inner}}}'

    # the top-level mapping is one level: MAX_DEPTH - 1 lists inside it are the most allowed
    assert parse_text(nested(MAX_DEPTH - 1), fmt)
    assert f"nested deeper than {MAX_DEPTH} levels" in _error(nested(MAX_DEPTH), fmt)


@pytest.mark.parametrize("fmt, depth", [("yaml", 5_000), ("json", 100_000), ("toml", 100_000), ("yaml", 100_000)])
def test_very_deep_documents_are_one_line_not_a_recursion_error(fmt, depth):
    text = ("a = " if fmt == "toml" else '{"a": ') + "[" * depth + "]" * depth + ("" if fmt == "toml" else "}")
    started = time.perf_counter()
    assert "nested deeper than" in _error(text, fmt)
    assert time.perf_counter() - started < 2.0


def test_json_duplicates_nested_and_brackets_inside_strings():
    assert "duplicate key 'budget_usd'" in _error('{"x": {"budget_usd": 0.01, "budget_usd": 500}}', "json")
    text = '{"a": "' + "[" * (MAX_DEPTH * 2) + '"}'  # brackets in a string are not nesting
    assert parse_text(text, "json") == {"a": "[" * (MAX_DEPTH * 2)}
    assert "not valid JSON (line 1" in _error('{"a": [}', "json")


def test_toml_duplicates_are_the_parsers_own_error():
    assert "not valid TOML" in _error("a = 1\na = 2\n", "toml")


def test_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("project: x\n#" + "x" * MAX_BYTES)
    with pytest.raises(ConfigError, match=r"big.yaml: too large: 1,048,5\d\d bytes"):
        read_document(big, what="project")
    exact = tmp_path / "exact.yaml"
    exact.write_text("project: x\n#" + "x" * (MAX_BYTES - 13) + "\n")
    assert os.path.getsize(exact) == MAX_BYTES and read_document(exact, what="project") == {"project": "x"}
    with pytest.raises(ConfigError, match=r"none.yaml: no such policy file$"):
        read_document(tmp_path / "none.yaml", what="policy")
    with pytest.raises(ConfigError, match="is a directory, not a catalog file"):
        read_document(tmp_path, what="catalog")
    with pytest.raises(ConfigError, match=r"not a UTF-8 text file \(byte 13\)"):
        (tmp_path / "latin.yaml").write_bytes(b"project: caf\xe9\n")
        read_document(tmp_path / "latin.yaml", what="project")
    with pytest.raises(ConfigError, match="File name too long"):
        read_document(tmp_path / ("n" * 300), what="project")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "policies.yaml"
    os.mkfifo(fifo)
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(_read(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the reader before failing
        with open(fifo, "w"):
            pass
    assert outcome == [f"{fifo}: is not a regular file (a pipe, socket or device)"]


def _read(path) -> str:
    try:
        read_document(path, what="policy")
    except ConfigError as exc:
        return str(exc)
    return "read"


def test_format_by_suffix_or_forced(tmp_path):
    (tmp_path / "p.json").write_text('{"a": 1}')
    (tmp_path / "p.txt").write_text("a: 1\n")
    assert read_document(tmp_path / "p.json", what="policy") == {"a": 1}
    assert read_document(tmp_path / "p.txt", what="policy") == {"a": 1}
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_document(tmp_path / "p.txt", what="catalog", fmt="toml")
