"""The layout's rules, checked on the source: imports point down the stack and never in a
circle, emitters never reach observers or OpenTelemetry, no class over 300 lines, no
``exec``.  The architecture page (docs/architecture.md) states the same rules: its code map
lists every part, and its layer diagram draws exactly these import rules."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"

# part -> the parts of ours it may import (besides itself); docs/architecture.md says the same
ALLOWED: dict[str, set[str]] = {
    "attributes": set(),
    "redaction": set(),
    "files": set(),
    "domain": set(),
    "config": {"domain"},
    "events": {"attributes", "redaction"},
    "llm": {"config", "domain", "events", "attributes", "redaction", "files"},
    "governance": {"llm", "config", "domain", "events", "attributes", "redaction", "files"},
    "state": {"domain", "events", "attributes", "redaction", "files"},
    "engine": {"governance", "llm", "state", "config", "domain", "events", "attributes", "redaction", "files"},
    "batch": {"engine", "state", "llm", "domain", "events", "attributes", "redaction", "files"},
    "observers": {"events", "attributes", "redaction"},
    "otel": {"observers", "events", "attributes", "redaction"},
    "tracing": {"otel", "events"},
    "pytest_plugin": {"observers"},
    "report": {"attributes", "redaction"},
    "cli": {
        "batch",
        "engine",
        "governance",
        "llm",
        "state",
        "report",
        "config",
        "domain",
        "events",
        "observers",
        "otel",
        "tracing",
        "attributes",
        "redaction",
        "files",
    },
    "__init__": set(),  # lazy exports by name only
    "__main__": {"cli"},
}
EMITTERS = ("batch", "engine", "llm", "governance", "state", "config", "domain", "events")
ERRORS = "orchestrator.domain.errors"
"""The exception root's module: it imports nothing of ours, so every part may import it."""


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module of ours (or outside package) that ``name`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full if full in MODULES else target), node.lineno


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in _imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_no_import_cycle_in_the_package():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: a planted two-module cycle is reported."""
    pkg = tmp_path / "orchestrator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", pkg)
    monkeypatch.setattr(f"{__name__}.MODULES", dict(_modules()))
    with pytest.raises(AssertionError, match="orchestrator.a"):
        test_no_import_cycle_in_the_package()


def test_imports_point_down_the_stack():
    wrong = []
    for name, path in MODULES.items():
        part = _part(name)
        for target, line in _imports(name, path):
            if not target.startswith("orchestrator"):
                continue
            other = _part(target)
            if target == ERRORS or target == f"{ERRORS}.OrchestratorError":
                continue
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {part} imports {other}")
    assert wrong == []


def test_emitters_never_import_observers_or_opentelemetry():
    wrong = []
    for name, path in MODULES.items():
        if _part(name) not in EMITTERS:
            continue
        for target, line in _imports(name, path):
            if target.startswith(("opentelemetry", "orchestrator.observers", "orchestrator.otel")):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {target}")
    assert wrong == []


def test_only_the_ray_backend_imports_ray():
    """Ray is an optional extra: nothing but ``batch/ray_backend.py`` may import it (and
    the package imports without it)."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for name, path in MODULES.items()
        for target, line in _imports(name, path)
        if (target == "ray" or target.startswith(("ray.", "psutil"))) and name != "orchestrator.batch.ray_backend"
    ]
    assert wrong == []


def test_no_class_over_300_lines_and_no_exec():
    long_classes, execs = [], []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (node.end_lineno or node.lineno) - node.lineno + 1 > 300:
                long_classes.append(f"{path.name}:{node.name}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("exec", "eval"):
                execs.append(f"{path.name}:{node.lineno}")
    assert long_classes == [] and execs == []


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"
# drawn in the layer diagram; the command line (it may import all of them) and the leaf modules
# (attributes, redaction, files) are described in its text instead
DRAWN = (
    "batch",
    "engine",
    "report",
    "state",
    "governance",
    "llm",
    "config",
    "domain",
    "events",
    "observers",
    "otel",
    "tracing",
    "pytest_plugin",
)


def _page_section(heading: str) -> str:
    page = ARCHITECTURE.read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in page, f"docs/architecture.md has no '## {heading}' section"
    return page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_every_package_is_in_the_code_map():
    section = _page_section("Code map")
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= len(DRAWN)  # the table is really there, not just mentioned
    for entry in sorted(PACKAGE.iterdir()):
        if entry.name.startswith("__") or entry.suffix not in ("", ".py") or entry.name == "py.typed":
            continue
        if entry.is_dir() and not (entry / "__init__.py").exists():
            continue
        shown = f"{entry.name}/" if entry.is_dir() else entry.name
        assert any(row.startswith(f"| `{shown}` |") for row in rows), f"{shown} missing from the code map"


def test_the_layer_diagram_draws_the_import_rules():
    section = _page_section("Layers")
    diagram = section.split("```mermaid\n", 1)[1].split("```", 1)[0]
    edges = set(re.findall(r"^\s*(\w+) --> (\w+)\s*$", diagram, flags=re.MULTILINE))
    drawn = {(a, b) for a, b in edges if a in DRAWN and b in DRAWN}
    rules = {(part, other) for part in DRAWN for other in ALLOWED[part] if other in DRAWN}
    assert sorted(drawn - rules) == [], "arrows the import rules do not allow"
    assert sorted(rules - drawn) == [], "import rules the diagram does not draw"
    # the command line wires every part in the box (the pytest plugin is outside it)
    assert ("cli", "core") in edges
    assert ALLOWED["cli"] & set(DRAWN) == set(DRAWN) - {"pytest_plugin"}
    for part in DRAWN:
        assert re.search(rf"^\s*{part}\[", diagram, flags=re.MULTILINE), f"{part} is not a node of the diagram"


def test_the_exception_root_imports_nothing_of_ours():
    assert [t for t, _ in _imports(ERRORS, MODULES[ERRORS]) if t.startswith("orchestrator")] == []


def _exception_classes() -> Iterator[type[BaseException]]:
    import importlib

    # run as programs of their own (the sandbox's harness, the worker), never imported here
    programs = {"orchestrator.__main__", "orchestrator.governance.harness"}
    for name in MODULES:
        if name in programs:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an optional extra that is not installed (never one of ours)
            assert not (exc.name or "").startswith("orchestrator"), exc
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name:
                yield value


def test_every_exception_class_derives_from_the_root():
    from orchestrator import OrchestratorError

    found = list(_exception_classes())
    assert len(found) >= 20  # the walk really finds them (ConfigError, ProviderError, UsageError...)
    assert [c.__qualname__ for c in found if not issubclass(c, OrchestratorError)] == []
    # and keeps the standard base callers catch it by
    from orchestrator.domain.errors import ConfigError
    from orchestrator.files import UnsafePathError
    from orchestrator.otel.config import TracingUnavailable

    assert issubclass(ConfigError, ValueError) and issubclass(UnsafePathError, OSError)
    assert issubclass(TracingUnavailable, ImportError)
