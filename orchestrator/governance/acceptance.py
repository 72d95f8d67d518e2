"""Executable acceptance criteria: the parts of the user's criteria that are Python become
checks run against the code a task produced, in the sandbox (:mod:`.sandbox`).

Why: a 135M model cannot grade its own work (it scores 0-0.5 whatever the answer), and
even a strong evaluator is a guess where the user already wrote the test.  A criterion
such as ``add(1, 1) == 2`` is ground truth; prose such as "fast and readable" still goes
to the LLM evaluator.

What counts as a check (decided with :mod:`ast` only; nothing is executed here):

* an ``assert`` statement (``assert add(1, 1) == 2``);
* an expression that compares something other than bare names (``add(1, 1) == 2``,
  ``is_prime(7) is True``), a boolean combination or negation of such, or a call whose
  arguments are all literals (``is_prime(7)``).  Bare names and words (``fast``,
  ``fast and correct``, ``it is fast``, ``works (mostly)``) stay prose.

Criteria are read line by line; a line that is not Python as a whole is split on ``;``
and each part judged alone; Python quoted in backticks inside prose counts too.

How they run: the task's code (its fenced blocks, each up to a line that does not parse,
with top-level bare expressions and asserts left out, as ``if __name__ == "__main__"``
would leave out demo calls) is written as ``solution.py``; each check becomes one test function of
``test_acceptance.py`` (built as an AST, so criteria cannot inject statements); the
sandbox's harness runs each test in its own process under pytest and reports its
outcome and exception type over a channel the checked code cannot write.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..domain.results import CheckRecord
from .sandbox import Sandbox, SandboxUnavailable, current
from .validators import code_blocks

__all__ = ["Check", "Criteria", "CheckResult", "CheckReport", "parse_criteria", "run_checks", "checked_code"]

_BUILTINS = frozenset(dir(builtins))
_BACKTICKS = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True, slots=True)
class Check:
    """One executable criterion: ``source`` as the user wrote it, and the names it uses
    that are not builtins (what the task's code must define)."""

    source: str
    names: frozenset[str]

    def test_statement(self) -> ast.stmt:
        """The check as an ``assert`` statement (an ``assert`` check as written)."""
        node = ast.parse(self.source).body[0]
        if isinstance(node, ast.Assert):
            return node
        assert isinstance(node, ast.Expr)
        return ast.Assert(test=node.value, msg=None)


@dataclass(frozen=True, slots=True)
class Criteria:
    """The user's criteria split into checks and prose (prose is for the evaluator)."""

    checks: tuple[Check, ...] = ()
    prose: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check.  ``error_type`` is the exception's kind
    (``AssertionError``, ``NameError``, ``Timeout``...) and safe to show anywhere;
    ``error`` is the detail (it may quote values the model's code produced), for the
    revision prompt and the run's summary only, never for spans or events."""

    check: str
    passed: bool
    error_type: str | None = None
    error: str = ""

    def to_dict(self) -> CheckRecord:
        return {"check": self.check, "passed": self.passed, "error_type": self.error_type, "error": self.error}


@dataclass(frozen=True, slots=True)
class CheckReport:
    results: tuple[CheckResult, ...]
    note: str = ""
    """What was left out of the checked code (blocks that did not parse)."""

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        """One line without model-written text: the failed checks and their error kinds."""
        if self.passed:
            return f"all {len(self.results)} acceptance checks passed"
        failed = self.failed
        shown = "; ".join(f"{r.check} ({r.error_type})" for r in failed[:3])
        more = f"; +{len(failed) - 3} more" if len(failed) > 3 else ""
        return f"{len(failed)} of {len(self.results)} acceptance checks failed: {shown}{more}"

    def critique(self) -> str:
        """The failing checks and their errors, as a review for the next revision."""
        if self.passed:
            return ""
        lines = ["The code was run against the acceptance checks and these failed:"]
        for r in self.failed:
            lines.append(f"- `{r.check}` failed: {r.error or r.error_type}")
        if self.note:
            lines.append(self.note)
        lines.append("Fix the code so that every check passes. Keep the names the checks use.")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


def _is_literal(node: ast.expr) -> bool:
    """A constant, or a container/unary minus of constants (``-1``, ``[1, 2]``, ``(1, 'a')``)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _is_literal(node.operand)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    return False


def _is_check_expression(node: ast.expr) -> bool:
    if isinstance(node, ast.Compare):
        # names alone ("it is fast", "speed in limits") are prose that happens to parse
        return not all(isinstance(n, ast.Name) for n in (node.left, *node.comparators))
    if isinstance(node, ast.BoolOp):
        return all(_is_check_expression(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _is_check_expression(node.operand)
    if isinstance(node, ast.Call):
        args = [*node.args, *(k.value for k in node.keywords)]
        return bool(args) and all(_is_literal(a) for a in args) and isinstance(node.func, ast.Name | ast.Attribute)
    return False


def _names(node: ast.AST) -> frozenset[str]:
    bound = {n.arg for n in ast.walk(node) if isinstance(n, ast.arg)}  # lambda / comprehension args
    bound |= {
        t.id
        for n in ast.walk(node)
        if isinstance(n, ast.comprehension)
        for t in ast.walk(n.target)
        if isinstance(t, ast.Name)
    }
    return frozenset(
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in _BUILTINS and n.id not in bound
    )


def _checks_in(text: str) -> list[Check] | None:
    """The checks ``text`` is made of, or None when it is not (only) Python checks."""
    text = text.strip().rstrip(".,")
    if not text:
        return None
    try:
        module = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError):
        return None
    found: list[Check] = []
    for stmt in module.body:
        if isinstance(stmt, ast.Assert):
            pass
        elif not (isinstance(stmt, ast.Expr) and _is_check_expression(stmt.value)):
            return None
        source = ast.get_source_segment(text, stmt) or ast.unparse(stmt)
        found.append(Check(source.strip(), _names(stmt)))
    return found or None


def parse_criteria(text: str) -> Criteria:
    """Split ``text`` into executable checks and prose.  Pure parsing: nothing runs."""
    checks: list[Check] = []
    prose: list[str] = []
    for line in (text or "").splitlines():
        stripped = line.strip().lstrip("-*•").strip()
        if not stripped:
            continue
        whole = _checks_in(stripped)
        if whole is not None:
            checks.extend(whole)
            continue
        kept: list[str] = []
        for part in stripped.split(";") if ";" in stripped else [stripped]:
            found = _checks_in(part)
            if found is not None:
                checks.extend(found)
                continue
            quoted = [c for q in _BACKTICKS.findall(part) for c in (_checks_in(q) or [])]
            checks.extend(quoted)
            kept.append(part.strip())
        rest = "; ".join(p for p in kept if p)
        if rest:
            prose.append(rest)
    unique: dict[str, Check] = {}
    for check in checks:
        unique.setdefault(check.source, check)
    return Criteria(tuple(unique.values()), "\n".join(prose))


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


def _parse_prefix(block: str) -> tuple[ast.Module | None, int | None]:
    """The block parsed, or its longest head of lines that parses (a small model often
    ends good code with a line of prose); with the line number where parsing failed."""
    lines = textwrap.dedent(block).splitlines()
    failed_at: int | None = None
    end = len(lines)
    while end > 0:
        try:
            return ast.parse("\n".join(lines[:end])), failed_at
        except SyntaxError as exc:
            failed_at = failed_at or exc.lineno or end
            end = min(end - 1, (exc.lineno or end) - 1)
        except ValueError:  # a null byte
            return None, 1
    return None, failed_at


def checked_code(output: str, prelude: Iterable[str] = ()) -> tuple[str, str]:
    """The module the checks import: the ``prelude`` code (the task's dependencies') and
    the answer's fenced blocks, each cut before a line that does not parse, with
    top-level bare expressions and asserts left out (demo calls such as
    ``print(add(10))`` and the model's own asserts are not the user's checks).  Returns
    the code and a note on what was left out."""
    kept: list[str] = []
    cut: list[str] = []
    for block in [*prelude, *code_blocks(output)]:
        if not block.strip():
            continue
        tree, failed_at = _parse_prefix(block)
        if failed_at is not None:
            cut.append(f"line {failed_at}")
        if tree is None:
            continue
        tree.body = [
            s
            for s in tree.body
            if not isinstance(s, ast.Assert) and not (isinstance(s, ast.Expr) and not isinstance(s.value, ast.Constant))
        ]
        kept.append(ast.unparse(tree))
    note = (
        (f"(The code did not parse from {', '.join(cut[:3])} of its block(s) on; that part was left out.)")
        if cut
        else ""
    )
    return "\n\n".join(kept), note


_TEST_FILE = "test_acceptance.py"
_SOLUTION_VAR = "__orchestrator_solution__"
_ERROR_VAR = "__orchestrator_import_error__"

_TEST_HEADER = f'''\
"""Written by the orchestrator: the user's acceptance checks, one test each."""
try:
    import solution as {_SOLUTION_VAR}
except BaseException as _exc:  # reported by every check
    {_ERROR_VAR} = _exc
else:
    {_ERROR_VAR} = None
    globals().update({{k: v for k, v in vars({_SOLUTION_VAR}).items() if not k.startswith("__")}})
'''


def _test_module(checks: Sequence[Check]) -> str:
    body: list[ast.stmt] = []
    for index, check in enumerate(checks, 1):
        reraise = ast.If(
            test=ast.Compare(ast.Name(_ERROR_VAR, ast.Load()), [ast.IsNot()], [ast.Constant(None)]),
            body=[ast.Raise(exc=ast.Name(_ERROR_VAR, ast.Load()), cause=None)],
            orelse=[],
        )
        body.append(
            ast.FunctionDef(
                name=f"test_check_{index}",
                args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
                body=[reraise, check.test_statement()],
                decorator_list=[],
                returns=None,
            )
        )
    module = ast.Module(body=body, type_ignores=[])
    return _TEST_HEADER + "\n\n" + ast.unparse(ast.fix_missing_locations(module)) + "\n"


def run_checks(
    output: str,
    checks: Sequence[Check],
    *,
    prelude: Iterable[str] = (),
    timeout: float = 30.0,
    sandbox: Sandbox | None = None,
) -> CheckReport:
    """Run ``checks`` against the code in ``output`` (after ``prelude``) in ``sandbox``
    (default: the run's, see :func:`~.sandbox.current`), each in its own process; a
    check's verdict comes from the sandbox's harness, never from a file the code could
    write."""
    if not checks:
        return CheckReport(())
    code, note = checked_code(output, prelude)
    if not code.strip():
        why = "the answer has no Python code that parses"
        return CheckReport(tuple(CheckResult(c.source, False, "NoCode", why) for c in checks), note)
    try:
        box = sandbox or current()
    except SandboxUnavailable as exc:
        return CheckReport(tuple(CheckResult(c.source, False, "SandboxError", str(exc)[:600]) for c in checks), note)
    files = {"solution.py": code, _TEST_FILE: _test_module(checks), "pytest.ini": "[pytest]\n"}
    run = box.run("checks", files, timeout=timeout, count=len(checks), test_file=_TEST_FILE)
    verdicts = {r.get("index"): r for r in run.records}
    results: list[CheckResult] = []
    for index, check in enumerate(checks, 1):
        entry = verdicts.get(index)
        if entry is None and run.error:
            results.append(CheckResult(check.source, False, "SandboxError", run.error[:600]))
        elif entry is None and run.timed_out:
            results.append(CheckResult(check.source, False, "Timeout", f"timed out after {timeout:g}s (killed)"))
        elif entry is None:
            last = next((ln.strip() for ln in reversed(run.output.splitlines()) if ln.strip()), "")
            results.append(CheckResult(check.source, False, "SandboxError", last[:300] or "no result"))
        elif entry.get("passed") is True:
            results.append(CheckResult(check.source, True))
        elif entry.get("error_type") == "Timeout":
            results.append(CheckResult(check.source, False, "Timeout", f"timed out after {timeout:g}s (killed)"))
        else:
            kind = str(entry.get("error_type") or "Failed")
            detail = " ".join(str(entry.get("error") or kind).split())  # one line for prompts and tables
            results.append(CheckResult(check.source, False, kind[:60], detail[:600]))
    return CheckReport(tuple(results), note)
