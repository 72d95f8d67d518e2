"""Deterministic validators: the hard gate an output passes before it is scored.

A validator is a plain function ``(output, task) -> ValidationResult``; a failure scores
the round 0 whatever the evaluator would have said, because an LLM judge cannot be
trusted to notice that code does not parse.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from .models import Task, TaskType


@dataclass(frozen=True, slots=True)
class ValidationResult:
    validator: str
    passed: bool
    message: str = ""


Validator = Callable[[str, Task], ValidationResult]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(output: str, languages: tuple[str, ...] = ("python", "py", "")) -> str:
    """The fenced code blocks of the wanted languages joined, or the whole text when the
    answer has no fences (models often answer with bare code)."""
    blocks = [body for lang, body in _FENCE.findall(output) if lang.lower() in languages]
    return "\n\n".join(blocks) if blocks else output


def extract_json_text(output: str) -> str:
    blocks = [body for lang, body in _FENCE.findall(output) if lang.lower() in ("json", "")]
    return blocks[0] if blocks else output.strip()


def python_syntax(output: str, task: Task | None = None) -> ValidationResult:
    code = extract_code(output)
    if not code.strip():
        return ValidationResult("python_syntax", False, "no code in the answer")
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return ValidationResult("python_syntax", False, f"line {exc.lineno}: {exc.msg}")
    return ValidationResult("python_syntax", True)


def json_valid(output: str, task: Task | None = None) -> ValidationResult:
    try:
        json.loads(extract_json_text(output))
    except ValueError as exc:
        return ValidationResult("json", False, f"invalid JSON: {exc}")
    return ValidationResult("json", True)


def not_empty(output: str, task: Task | None = None) -> ValidationResult:
    ok = bool(output.strip())
    return ValidationResult("not_empty", ok, "" if ok else "empty answer")


VALIDATORS: dict[str, Validator] = {
    "python_syntax": python_syntax,
    "json": json_valid,
    "not_empty": not_empty,
}

DEFAULT_VALIDATORS: dict[TaskType, tuple[str, ...]] = {
    TaskType.CODE_GENERATION: ("not_empty", "python_syntax"),
    TaskType.DATA_EXTRACTION: ("not_empty", "json"),
}


def validators_for(task: Task) -> list[Validator]:
    return [VALIDATORS[name] for name in DEFAULT_VALIDATORS.get(task.type, ("not_empty",))]


def run_validators(output: str, task: Task) -> list[ValidationResult]:
    """Every validator of the task's type, in order; all results are returned."""
    return [validator(output, task) for validator in validators_for(task)]
