"""Deterministic validators: the hard gate an output passes before it is scored.

A validator is a function ``(output, task, **options) -> ValidationResult``; a failure
scores the round 0 whatever the evaluator would have said, because an LLM judge cannot be
trusted to notice that code does not parse or that its tests fail.

Built in:

* ``not_empty`` - the answer has non-blank text.
* ``python_syntax`` - the answer's Python code (fenced blocks, or the bare text) parses.
* ``json`` - the answer is JSON; ``schema`` (optional) is a JSON schema it must match.
* ``length`` - ``min_chars``/``max_chars``/``min_words``/``max_words``.
* ``ruff`` - ``ruff check`` finds nothing (rules ``select``, default the fatal set
  ``E9,F63,F7,F82``: syntax errors, undefined names); passes with a note when ruff is not
  installed.
* ``pytest`` - runs the tests the answer contains (code blocks defining ``test_*``),
  or, when it has none, an import smoke test of its code, in the run's sandbox
  (:mod:`.sandbox`: no network, no view of the host but the system and Python, an
  environment holding nothing of ours, limits), killed at ``timeout`` seconds.

Each task type has default validators (:data:`DEFAULT_VALIDATORS`); a
:class:`ValidatorConfig` (the project file's ``validators`` key) changes them per task
type or per task.  The cheap validators run first; the expensive ones (``pytest``,
``ruff``) only when every cheap one passed.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from msgspec import UNSET, Meta, Struct, UnsetType

from ..config import convert as load_data
from ..config import key_text
from ..config.fields import Name
from ..domain.errors import ConfigError, join_key, unknown
from ..domain.tasks import Task, TaskType
from .sandbox import Sandbox, SandboxUnavailable, clean_env
from .sandbox import current as current_sandbox

__all__ = [
    "ValidationResult",
    "ValidatorSpec",
    "ValidatorConfig",
    "VALIDATORS",
    "DEFAULT_VALIDATORS",
    "extract_code",
    "extract_json_text",
    "python_syntax",
    "json_valid",
    "not_empty",
    "length",
    "ruff_check",
    "pytest_check",
    "run_validators",
    "validators_for",
    "validator_names",
    "register_validator",
    "ConfigError",
]


@dataclass(frozen=True, slots=True)
class ValidationResult:
    validator: str
    passed: bool
    message: str = ""


Validator = Callable[..., ValidationResult]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(output: str, languages: tuple[str, ...] = ("python", "py", "")) -> str:
    """The fenced code blocks of the wanted languages joined, or the whole text when the
    answer has no fences (models often answer with bare code)."""
    blocks = [body for lang, body in _FENCE.findall(output) if lang.lower() in languages]
    return "\n\n".join(blocks) if blocks else output


def code_blocks(output: str, languages: tuple[str, ...] = ("python", "py", "")) -> list[str]:
    """The fenced blocks one by one, or ``[output]`` when the answer has no fences."""
    blocks = [body for lang, body in _FENCE.findall(output) if lang.lower() in languages]
    return blocks if blocks else [output]


def extract_json_text(output: str) -> str:
    blocks = [body for lang, body in _FENCE.findall(output) if lang.lower() in ("json", "")]
    return blocks[0] if blocks else output.strip()


# ---------------------------------------------------------------------------------------
# Cheap validators
# ---------------------------------------------------------------------------------------


def python_syntax(output: str, task: Task | None = None) -> ValidationResult:
    code = extract_code(output)
    if not code.strip():
        return ValidationResult("python_syntax", False, "no code in the answer")
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return ValidationResult("python_syntax", False, f"line {exc.lineno}: {exc.msg}")
    return ValidationResult("python_syntax", True)


def json_valid(
    output: str, task: Task | None = None, *, schema: Mapping[str, object] | None = None
) -> ValidationResult:
    try:
        data = json.loads(extract_json_text(output))
    except ValueError as exc:
        return ValidationResult("json", False, f"invalid JSON: {exc}")
    if schema is not None:
        import jsonschema

        validator_cls = jsonschema.validators.validator_for(schema)
        error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return ValidationResult("json", False, f"schema: {where}: {error.message[:300]}")
    return ValidationResult("json", True)


def not_empty(output: str, task: Task | None = None) -> ValidationResult:
    ok = bool(output.strip())
    return ValidationResult("not_empty", ok, "" if ok else "empty answer")


def length(
    output: str,
    task: Task | None = None,
    *,
    min_chars: int | None = None,
    max_chars: int | None = None,
    min_words: int | None = None,
    max_words: int | None = None,
) -> ValidationResult:
    chars, words = len(output.strip()), len(output.split())
    for value, limit, what, cmp in (
        (chars, min_chars, "characters", "fewer"),
        (chars, max_chars, "characters", "more"),
        (words, min_words, "words", "fewer"),
        (words, max_words, "words", "more"),
    ):
        if limit is None:
            continue
        if (cmp == "fewer" and value < limit) or (cmp == "more" and value > limit):
            key = f"{'min' if cmp == 'fewer' else 'max'}_{'chars' if what == 'characters' else 'words'}"
            return ValidationResult("length", False, f"answer has {value} {what}, {cmp} than {key} {limit}")
    return ValidationResult("length", True)


# ---------------------------------------------------------------------------------------
# Subprocess validators: ruff and pytest
# ---------------------------------------------------------------------------------------


def _ruff_executable() -> str | None:
    sibling = Path(sys.executable).with_name("ruff")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which("ruff")
    if found:
        return found
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

        return str(find_ruff_bin())
    except Exception:  # noqa: BLE001 - not installed, or an unexpected layout
        return None


RUFF_DEFAULT_SELECT = ("E9", "F63", "F7", "F82")


def ruff_check(
    output: str, task: Task | None = None, *, select: Iterable[str] | str = RUFF_DEFAULT_SELECT, timeout: float = 30.0
) -> ValidationResult:
    exe = _ruff_executable()
    if exe is None:
        return ValidationResult("ruff", True, "skipped: ruff is not installed")
    code = extract_code(output)
    if not code.strip():
        return ValidationResult("ruff", False, "no code in the answer")
    rules = select if isinstance(select, str) else ",".join(select)
    cmd = [
        exe,
        "check",
        "--isolated",
        "--no-cache",
        "--output-format",
        "concise",
        "--select",
        rules,
        "--stdin-filename",
        "solution.py",
        "-",
    ]
    try:
        proc = subprocess.run(
            cmd, input=code, capture_output=True, text=True, timeout=timeout, env=clean_env(tempfile.gettempdir())
        )
    except subprocess.TimeoutExpired:
        return ValidationResult("ruff", False, f"ruff timed out after {timeout:g}s")
    if proc.returncode == 0:
        return ValidationResult("ruff", True)
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("solution.py:")]
    if not lines:
        return ValidationResult("ruff", False, f"ruff failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    more = f" (+{len(lines) - 3} more)" if len(lines) > 3 else ""
    return ValidationResult("ruff", False, "; ".join(ln.removeprefix("solution.py:") for ln in lines[:3]) + more)


def _defines_tests(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            return True
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            return True
    return False


def _imported_modules(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def plan_test_files(output: str) -> tuple[dict[str, str], list[str]]:
    """The files the pytest validator writes: the answer's non-test code as
    ``solution.py``, each block defining tests as ``test_task_<n>.py``, and, for a module
    the tests import that is neither written nor installed, a copy of the solution under
    that name (a model often writes ``from rate_limiter import ...``).  Returns the files
    and the test file names.  Blocks that do not parse go to the solution (so the smoke
    test reports the error)."""
    import importlib.util

    code, tests = [], []
    for block in code_blocks(output):
        if not block.strip():
            continue
        try:
            tree = ast.parse(block)
        except SyntaxError:
            code.append(block)
            continue
        if _defines_tests(tree):
            tests.append((block, tree))
        else:
            code.append(block)
    files: dict[str, str] = {}
    if code:
        files["solution.py"] = "\n\n".join(code)
    test_names = []
    for index, (block, _) in enumerate(tests, 1):
        name = "test_solution.py" if len(tests) == 1 else f"test_task_{index}.py"
        files[name] = block
        test_names.append(name)
    if "solution.py" in files:
        for _, tree in tests:
            for module in sorted(_imported_modules(tree)):
                if (
                    f"{module}.py" in files
                    or module in sys.stdlib_module_names
                    or not module.isidentifier()
                    or module.startswith("test")
                ):
                    continue
                try:
                    installed = importlib.util.find_spec(module) is not None
                except (ImportError, ValueError):
                    installed = False
                if not installed:
                    files[f"{module}.py"] = files["solution.py"]
    return files, test_names


def _pytest_summary(text: str) -> str:
    lines = [ln.rstrip() for ln in text.splitlines()]
    failures = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    tail = next((ln.strip("= ").strip() for ln in reversed(lines) if ln.strip()), "")
    parts = [tail] + failures[:3]
    if len(failures) > 3:
        parts.append(f"+{len(failures) - 3} more")
    message = ": ".join(parts[:1]) + ("; " + "; ".join(parts[1:]) if len(parts) > 1 else "")
    if not failures:
        errors = [ln.strip() for ln in lines if ln.startswith("E ")]
        if errors:
            message += f"; {errors[0][:200]}"
    return message[:600]


def pytest_check(
    output: str, task: Task | None = None, *, timeout: float = 60.0, smoke: bool = True, sandbox: Sandbox | None = None
) -> ValidationResult:
    """Run the answer's tests (or import its code) in ``sandbox`` (default: the run's,
    see :func:`~.sandbox.current`)."""
    files, tests = plan_test_files(output)
    if not files:
        return ValidationResult("pytest", False, "no code in the answer")
    if not tests and not smoke:
        return ValidationResult("pytest", True, "no tests in the answer")
    import importlib.util

    if tests and importlib.util.find_spec("pytest") is None:
        return ValidationResult("pytest", True, "skipped: pytest is not installed")
    if tests:
        files["pytest.ini"] = "[pytest]\n"
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--no-header",
            "-p",
            "no:cacheprovider",
            "--tb=short",
            "-x",
            *tests,
        ]
    else:
        argv = [sys.executable, "-c", "import solution"]
    try:
        box = sandbox or current_sandbox()
    except SandboxUnavailable as exc:
        return ValidationResult("pytest", False, str(exc))
    run = box.run("command", files, timeout=timeout, argv=argv)
    returncode = run.records[0].get("returncode") if run.records else None
    if run.timed_out:
        return ValidationResult("pytest", False, f"timed out after {timeout:g}s (killed)")
    if run.error or returncode is None:
        return ValidationResult("pytest", False, run.error or "the sandbox returned no result")
    if not tests:
        if returncode == 0:
            return ValidationResult("pytest", True, "import smoke test passed (the answer has no tests)")
        last = next((ln.strip() for ln in reversed(run.output.splitlines()) if ln.strip()), "")
        return ValidationResult("pytest", False, f"importing the code failed: {last[:300]}")
    if returncode == 0:
        return ValidationResult("pytest", True, _pytest_summary(run.output))
    if returncode == 5:
        return ValidationResult("pytest", True, "no tests collected")
    return ValidationResult("pytest", False, _pytest_summary(run.output) or f"pytest exit code {returncode}")


# ---------------------------------------------------------------------------------------
# Registry, specs and configuration
# ---------------------------------------------------------------------------------------


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"must be a finite number > 0, got {value!r}")
    return float(value)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _json_schema(value: object) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a JSON schema object, got {value!r}"[:200])
    import jsonschema

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.exceptions.SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None
    return dict(value)


def _rules(value: object) -> str:
    items = value.split(",") if isinstance(value, str) else value
    if (
        not isinstance(items, list | tuple)
        or not items
        or not all(isinstance(i, str) and re.fullmatch(r"[A-Z]+[0-9]*", i.strip()) for i in items)
    ):
        raise ValueError(f"must be ruff rule codes such as E9 or F821, got {value!r}")
    return ",".join(i.strip() for i in items)


@dataclass(frozen=True)
class _Entry:
    func: Validator
    options: Mapping[str, Callable[[Any], Any]]
    expensive: bool = False


_REGISTRY: dict[str, _Entry] = {
    "not_empty": _Entry(not_empty, {}),
    "python_syntax": _Entry(python_syntax, {}),
    "json": _Entry(json_valid, {"schema": _json_schema}),
    "length": _Entry(length, {"min_chars": _count, "max_chars": _count, "min_words": _count, "max_words": _count}),
    "ruff": _Entry(ruff_check, {"select": _rules, "timeout": _positive_number}, expensive=True),
    "pytest": _Entry(pytest_check, {"timeout": _positive_number, "smoke": _boolean}, expensive=True),
}

# name -> function with default options (kept for callers of the first version)
VALIDATORS: dict[str, Validator] = {name: e.func for name, e in _REGISTRY.items()}


def validator_names() -> list[str]:
    return list(_REGISTRY)


def register_validator(
    name: str, func: Validator, *, options: Mapping[str, Callable[[Any], Any]] | None = None, expensive: bool = False
) -> None:
    """Add a validator ``func(output, task, **options) -> ValidationResult``; each option
    maps to a converter that returns the value or raises ``ValueError``."""
    _REGISTRY[name] = _Entry(func, dict(options or {}), expensive)
    VALIDATORS[name] = func


@dataclass(frozen=True)
class ValidatorSpec:
    """A validator by name with its options, e.g. ``ValidatorSpec("pytest", {"timeout": 30.0})``.
    Construction checks the name and every option (each option's converter must accept
    its value); :meth:`of` also converts them (``select: [F]`` to ``"F"``)."""

    name: str
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _options(self.name, self.options)

    @classmethod
    def of(cls, name: str, options: Mapping[str, object] | None = None) -> ValidatorSpec:
        return cls(name, _options(name, options or {}))

    @property
    def expensive(self) -> bool:
        return _REGISTRY[self.name].expensive

    def __call__(self, output: str, task: Task | None = None) -> ValidationResult:
        return _REGISTRY[self.name].func(output, task, **self.options)


def _options(name: str, options: Mapping[str, object]) -> dict[str, object]:
    """The options converted by the validator's converters; :class:`ConfigError` keyed
    ``name.option`` for an unknown name or option or a value a converter refuses."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(unknown("validator", name, _REGISTRY))
    clean = {}
    for key, value in options.items():
        convert = entry.options.get(key)
        if convert is None:
            known = list(entry.options) or ["(none)"]
            raise ConfigError(unknown(f"option of {name}", key, known), key=f"{name}.{key}")
        try:
            clean[key] = convert(value)
        except ValueError as exc:
            raise ConfigError(str(exc), key=f"{name}.{key}") from None
    if name == "length":
        for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
            lo, hi = clean.get(low), clean.get(high)
            if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                raise ConfigError(f"{low} {lo} is more than {high} {hi}", key=f"length.{low}")
    return clean


def _specs(*names: str) -> tuple[ValidatorSpec, ...]:
    return tuple(ValidatorSpec(n) for n in names)


DEFAULT_VALIDATORS: dict[TaskType, tuple[ValidatorSpec, ...]] = {
    TaskType.CODE_GENERATION: _specs("not_empty", "python_syntax", "pytest"),
    TaskType.CODE_REVIEW: _specs("not_empty"),
    TaskType.COMPLEX_REASONING: _specs("not_empty"),
    TaskType.CREATIVE_WRITING: _specs("not_empty"),
    TaskType.DATA_EXTRACTION: _specs("not_empty", "json"),
    TaskType.SUMMARIZATION: _specs("not_empty"),
    TaskType.EVALUATION: _specs("not_empty"),
}


@dataclass(frozen=True)
class ValidatorConfig:
    """Validators per task type (a given type replaces its defaults; types not given
    keep theirs) and per task id (replaces its type's list).  From file-shaped data:
    :meth:`from_data`."""

    by_type: Mapping[TaskType, tuple[ValidatorSpec, ...]] = field(default_factory=dict)
    by_task: Mapping[str, tuple[ValidatorSpec, ...]] = field(default_factory=dict)

    def for_task(self, task: Task) -> tuple[ValidatorSpec, ...]:
        if task.id in self.by_task:
            return tuple(self.by_task[task.id])
        if task.type in self.by_type:
            return tuple(self.by_type[task.type])
        return DEFAULT_VALIDATORS.get(task.type, _specs("not_empty"))

    @classmethod
    def coerce(cls, value: object, source: str = "validators") -> ValidatorConfig:
        if value is None:
            return cls()
        if isinstance(value, ValidatorConfig):
            return value
        return cls.from_data(value, source)

    @classmethod
    def from_data(cls, data: object, source: str = "") -> ValidatorConfig:
        """``{code_generation: [python_syntax, {pytest: {timeout: 30}}], tasks: {t1: [json]}}``."""
        if data is None:
            return cls()
        shape: ValidatorsFile = load_data(data, ValidatorsFile, source=source)
        return shape.config()


# -- the file shape (a project file's ``validators`` key) ------------------------------------

ValidatorItem = Annotated[
    str | dict[str, dict[str, object] | None],
    Meta(extra={"expected": "a validator name or a one-key mapping {name: {options}}"}),
]
ValidatorList = Annotated[list[ValidatorItem], Meta(extra={"expected": "a list of validators"})] | None


class ValidatorsFile(Struct, frozen=True, forbid_unknown_fields=True):
    """Lists of validators per task type, and per task id under ``tasks``; a type or task
    not given keeps its defaults, ``null`` or ``[]`` runs none."""

    described_as: ClassVar[str] = "a mapping of task types (and 'tasks') to lists of validators"
    unknown_key_noun: ClassVar[str] = "task type"

    code_generation: ValidatorList | UnsetType = UNSET
    code_review: ValidatorList | UnsetType = UNSET
    complex_reasoning: ValidatorList | UnsetType = UNSET
    creative_writing: ValidatorList | UnsetType = UNSET
    data_extraction: ValidatorList | UnsetType = UNSET
    summarization: ValidatorList | UnsetType = UNSET
    evaluation: ValidatorList | UnsetType = UNSET
    tasks: dict[Name, ValidatorList] | None = None

    def __post_init__(self) -> None:
        self.config()  # the names and options exist and are valid: checked while the file is read

    def config(self) -> ValidatorConfig:
        by_type = {
            t: _parse_specs(getattr(self, t.value), t.value) for t in TaskType if getattr(self, t.value) is not UNSET
        }
        by_task = {
            tid: _parse_specs(items, join_key("tasks", key_text(tid))) for tid, items in (self.tasks or {}).items()
        }
        return ValidatorConfig(by_type, by_task)


def _parse_specs(items: list[str | dict[str, dict[str, object] | None]] | None, key: str) -> tuple[ValidatorSpec, ...]:
    out = []
    for index, item in enumerate(items or ()):
        try:
            if isinstance(item, str):
                out.append(ValidatorSpec.of(item))
            elif len(item) == 1:
                ((name, options),) = item.items()
                out.append(ValidatorSpec.of(name, options))
            else:
                raise ConfigError(
                    f"a validator is a name or a one-key mapping {{name: {{options}}}}, got {item!r}"[:200]
                )
        except ConfigError as exc:
            raise exc.within(f"{key}[{index}]") from None
    return tuple(out)


def validators_for(task: Task, config: ValidatorConfig | None = None) -> tuple[ValidatorSpec, ...]:
    return (config or _DEFAULT_CONFIG).for_task(task)


_DEFAULT_CONFIG = ValidatorConfig()


def run_validators(
    output: str, task: Task, config: ValidatorConfig | None = None, *, skip: Iterable[str] = ()
) -> list[ValidationResult]:
    """The task's validators in order, cheap ones first; the expensive ones (pytest,
    ruff) run only when every cheap one passed.  Validators named in ``skip`` do not run.
    Returns the results of those that ran."""
    skipped = set(skip)
    specs = [s for s in validators_for(task, config) if s.name not in skipped]
    results = [spec(output, task) for spec in specs if not spec.expensive]
    if all(r.passed for r in results):
        results += [spec(output, task) for spec in specs if spec.expensive]
    return results
