"""Only public OpenTelemetry names: a private one (``_RUNTIME_CONTEXT``, a ``_internal``
module, an exporter's ``_preferred_temporality``) may change in any SDK release."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"


def _private_otel_uses(tree: ast.AST) -> list[str]:
    found = []
    otel_names: set[str] = set()  # local names bound to OpenTelemetry modules or objects
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry"):
            if any(part.startswith("_") for part in (node.module or "").split(".")):
                found.append(f"from {node.module} import ...")
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"from {node.module} import {alias.name}")
                otel_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("opentelemetry"):
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        found.append(f"import {alias.name}")
                    otel_names.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in otel_names:
                found.append(f"{base.id}...{node.attr}")
    return found


def test_no_private_opentelemetry_name_is_used():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        uses = _private_otel_uses(ast.parse(path.read_text(), str(path)))
        if uses:
            offenders[str(path.relative_to(PACKAGE.parent))] = uses
    assert offenders == {}


def test_the_checker_finds_private_uses():
    code = (
        "from opentelemetry.context import _RUNTIME_CONTEXT\n"
        "from opentelemetry.semconv._incubating.attributes import gen_ai_attributes\n"
        "from opentelemetry.sdk.trace import sampling\n"
        "sampling._get_from_env_or_default()\n"
    )
    assert len(_private_otel_uses(ast.parse(code))) == 3


def test_our_gen_ai_keys_match_the_semantic_conventions_package():
    """The GenAI keys are constants of ours (the package has them only in ``_incubating``);
    they must still be the official ones.  A test may read the private module."""
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

    from orchestrator import attributes as attr

    names = [n for n in dir(attr) if n.startswith("GEN_AI_") and n != "GEN_AI_PROVIDER_NAMES"]
    assert len(names) >= 17
    for name in names:
        official = getattr(gen_ai_attributes, name, None) or getattr(gen_ai_metrics, name)
        assert getattr(attr, name) == official, name
