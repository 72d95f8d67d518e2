"""Planning: split a project into a task DAG with one schema-constrained LLM call, and
make whatever the model answered into a valid DAG.

Sanitising is for model output only: ids are cleaned, unknown and self dependencies
dropped, duplicates renamed, cycles broken, the count clamped; each fix is a note.
When the answer is unusable twice (or once, when a local planner timed out), the
project runs as one task (decomposition_fallback).  Ids that mean nothing (copied from
the schema, mostly digits) become short slugs of the task's prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import events
from ..domain.results import Usage
from ..domain.tasks import Task, TaskType
from ..domain.values import JsonSchema
from ..governance.policy import Policy, PolicyViolationError
from ..llm.catalog import get_model
from ..llm.client import BudgetExceededError, LLMCallError, TimeBudgetExceededError
from ..redaction import redact
from .context import RunContext, StopKind
from .profile import FULL, LOCAL, RunProfile

MAX_TASKS = 15
LOCAL_PLANNER_MAX_TASKS = LOCAL.max_tasks  # a 135M model cannot usefully plan more; keeps local runs short
ID_MAX_CHARS = 40

_ID_CLEAN = re.compile(r"[^a-zA-Z0-9_-]+")
PLANNER_SYSTEM = (
    "You are a software project planner. Split the project into small, concrete tasks. "
    "Answer only with JSON matching the schema."
)


def decomposition_schema(max_tasks: int, simple: bool = False) -> JsonSchema:
    """The answer's shape.  ``simple`` (the local profile): no dependencies, short ids and
    prompts, so a small model's constrained answer stays short and fast."""
    id_length, prompt_length = (24, 200) if simple else (40, 800)
    fields: JsonSchema = {
        "id": {"type": "string", "maxLength": id_length},
        "type": {"type": "string", "enum": [t.value for t in TaskType]},
        "prompt": {"type": "string", "maxLength": prompt_length},
    }
    if not simple:
        fields["depends_on"] = {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 40}}
    item: JsonSchema = {"type": "object", "properties": fields, "required": list(fields)}
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "minItems": 1, "maxItems": max_tasks, "items": item}},
        "required": ["tasks"],
    }


def sanitize_tasks(
    raw: object, max_tasks: int = MAX_TASKS, *, rename_meaningless: bool = True
) -> tuple[list[Task], list[str]]:
    """Turn an LLM's decomposition answer into a valid task DAG.

    Drops malformed entries, unknown and self dependencies; renames duplicate ids, and
    ids that mean nothing (copied from the schema, mostly digits) to a slug of the
    task's prompt unless ``rename_meaningless`` is off (ids a user gave); breaks cycles
    (the earliest task of a cycle loses its dependencies on the rest); keeps at most
    ``max_tasks``.  Returns the tasks and notes on what was fixed.
    """
    notes: list[str] = []
    items = raw.get("tasks") if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        return [], ["answer has no task list"]
    tasks: list[Task] = []
    first_id_of: dict[str, str] = {}
    raw_deps: list[list[str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            notes.append(f"entry {index} is not an object: dropped")
            continue
        prompt = redact(str(item.get("prompt") or item.get("description") or "").strip())
        if not prompt:
            notes.append(f"entry {index} has no prompt: dropped")
            continue
        original = redact(str(item.get("id") or ""))
        base = _ID_CLEAN.sub("_", original).strip("_")[:ID_MAX_CHARS]
        if not base or (rename_meaningless and meaningless_id(base)):
            base = slug_from(prompt) or f"task_{index + 1}"
            if original:
                notes.append(f"task id {original[:60]!r} means nothing: renamed {base!r}")
        task_id, n = base, 2
        existing = {t.id for t in tasks}
        while task_id in existing:
            task_id, n = f"{base}_{n}", n + 1
        if task_id != base:
            notes.append(f"duplicate id {original!r} renamed to {task_id!r}")
        first_id_of.setdefault(original, task_id)
        first_id_of.setdefault(base, task_id)
        try:
            task_type = TaskType(str(item.get("type", "")).lower())
        except ValueError:
            task_type = TaskType.COMPLEX_REASONING
            notes.append(f"task {task_id}: unknown type {item.get('type')!r}, using complex_reasoning")
        deps = item.get("depends_on") or []
        raw_deps.append([redact(str(d)) for d in deps] if isinstance(deps, list) else [])
        tasks.append(Task(id=task_id, type=task_type, prompt=prompt))
    if len(tasks) > max_tasks:
        notes.append(f"{len(tasks)} tasks clamped to {max_tasks}")
        tasks, raw_deps = tasks[:max_tasks], raw_deps[:max_tasks]
    ids = {t.id for t in tasks}
    for task, deps in zip(tasks, raw_deps, strict=True):
        clean: list[str] = []
        for dep in deps:
            resolved = first_id_of.get(dep, first_id_of.get(_ID_CLEAN.sub("_", dep).strip("_"), dep))
            if resolved == task.id:
                notes.append(f"task {task.id}: self dependency dropped")
            elif resolved not in ids:
                notes.append(f"task {task.id}: unknown dependency {dep!r} dropped")
            elif resolved not in clean:
                clean.append(resolved)
        task.depends_on = clean
    _break_cycles(tasks, notes)
    return tasks, notes


def _break_cycles(tasks: list[Task], notes: list[str]) -> None:
    remaining = {t.id: t for t in tasks}
    done: set[str] = set()
    while remaining:
        ready = [t for t in remaining.values() if all(d in done for d in t.depends_on)]
        if not ready:
            victim = next(iter(remaining.values()))  # earliest in list order
            dropped = [d for d in victim.depends_on if d in remaining]
            victim.depends_on = [d for d in victim.depends_on if d not in remaining]
            notes.append(f"cycle broken: {victim.id} no longer depends on {', '.join(dropped)}")
            continue
        for t in ready:
            done.add(t.id)
            del remaining[t.id]


# ---------------------------------------------------------------------------------------
# Readable task ids
# ---------------------------------------------------------------------------------------

_SCHEMA_WORDS = frozenset(
    {
        "id",
        "ids",
        "task",
        "tasks",
        "task_id",
        "taskid",
        "type",
        "task_type",
        "prompt",
        "depends_on",
        "string",
        "name",
        "example",
        "null",
        "none",
        "object",
        "array",
        "value",
        "key",
        "short",
        "short_id",
    }
) | frozenset(t.value for t in TaskType)
_SLUG_STOPWORDS = frozenset(
    """
    a an the and or of to for in on with by from as at into that which this these those it its is are be
    should must will can please write create implement make build add develop produce generate return
    returns returning python function functions method class code program script simple small given
    using use takes take two numbers value values new your my our so then also
""".split()
)


def meaningless_id(task_id: str) -> bool:
    """An id that says nothing about its task: empty, copied from the schema or its
    example (``task_type``, ``string``, ``01_23456789_task_type``), or mostly digits."""
    lowered = task_id.lower().strip("_-")
    if not lowered or lowered in _SCHEMA_WORDS:
        return True
    if re.search(r"\d{4,}", lowered) or not re.search(r"[a-z]", lowered):
        return True
    return any(word in lowered for word in ("task_type", "depends_on", "string", "example"))


def slug_from(text: str, max_chars: int = 30) -> str:
    """A short readable id from a task's prompt: the one function, class or file it
    names (``add``), else its first few meaningful words (``rate_limiter_tests``)."""
    target = single_target(text)
    if target is not None and target.name:
        name = re.sub(r"\.py$", "", target.name)
        slug = _ID_CLEAN.sub("_", name).strip("_").lower()
        if slug:
            return slug[:max_chars].strip("_")
    words = [w for w in re.findall(r"[a-z][a-z0-9]*", text.lower()) if w not in _SLUG_STOPWORDS]
    slug = ""
    for word in words[:4]:
        candidate = f"{slug}_{word}" if slug else word
        if len(candidate) > max_chars:
            break
        slug = candidate
    return slug


@dataclass(frozen=True, slots=True)
class Target:
    """The one deliverable a request names: ``kind`` function, class or file; ``name``
    empty when it is not named (``a function that adds two numbers``)."""

    kind: str
    name: str


_NOT_A_NAME = frozenset(
    """
    that which to for in of with and or the a an named called returning returns taking takes using is
    should will can which where whose it this
""".split()
)
_KIND_WORDS = {
    "function": "function",
    "func": "function",
    "def": "function",
    "class": "class",
    "file": "file",
    "module": "file",
    "script": "file",
}
_PLURALS = re.compile(r"\b(functions|classes|files|modules|scripts)\b", re.I)
_NAMED = re.compile(
    r"\b(function|func|def|class|file|module|script)\s+(?:named\s+|called\s+)?"
    r"`?([A-Za-z_][\w.]*)`?",
    re.I,
)
_UNNAMED = re.compile(r"\b(?:a|an|one|the|single)\s+(?:[\w-]+\s+){0,2}?(function|class|file|module|script)\b", re.I)
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")
_FILE = re.compile(r"(?<![\w./-])([\w-]+\.(?:py|md|txt|json|yaml|yml|toml|csv|js|ts|html|css|sql|sh))\b")


def single_target(description: str) -> Target | None:
    """The one function, class or file a request names, or None when it names none or
    several (``functions add and mul``, ``add(a, b) and mul(a, b)``)."""
    if _PLURALS.search(description):
        return None
    named: dict[str, str] = {}  # name -> kind
    unnamed: set[str] = set()
    for kind_word, name in _NAMED.findall(description):
        kind = _KIND_WORDS[kind_word.lower()]
        if name.lower() in _NOT_A_NAME:
            unnamed.add(kind)
            continue
        named.setdefault(name.rstrip("."), kind)
    for name in _CALL.findall(description):
        if name.lower() not in _NOT_A_NAME and name not in named:
            named[name] = "function"
    for name in _FILE.findall(description):
        named.setdefault(name, "file")
    for kind_word in _UNNAMED.findall(description):
        unnamed.add(_KIND_WORDS[kind_word.lower()])
    # a class's methods are part of it: "class Stack with push() and pop()" is one class
    classes = [n for n, k in named.items() if k == "class"]
    if classes:
        named = {n: k for n, k in named.items() if k != "function"}
    if len(named) == 1:
        name, kind = next(iter(named.items()))
        if unnamed - {kind}:
            return None
        return Target(kind, name)
    if not named and len(unnamed) == 1 and len(_UNNAMED.findall(description)) == 1:
        return Target(next(iter(unnamed)), "")
    return None


def guess_task_type(text: str) -> TaskType:
    lowered = text.lower()
    if any(w in lowered for w in ("function", "python", "code", "implement", "class ", "script", "api")):
        return TaskType.CODE_GENERATION
    if "summar" in lowered:
        return TaskType.SUMMARIZATION
    if any(w in lowered for w in ("extract", "json", "csv")):
        return TaskType.DATA_EXTRACTION
    if any(w in lowered for w in ("story", "poem", "essay", "write a blog")):
        return TaskType.CREATIVE_WRITING
    return TaskType.COMPLEX_REASONING


def parse_json_answer(text: str) -> object | None:
    """The JSON object in an answer (bare, fenced, or embedded in prose), or None."""
    text = text.strip()
    candidates = [text]
    fenced = re.findall(r"```(?:json)?\s*\n(.*?)```", text, re.DOTALL)
    candidates.extend(fenced)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            parsed: object = json.loads(candidate)
            return parsed
        except ValueError:
            continue
    return None


@dataclass
class Plan:
    """The planner's result: the tasks, notes on what was fixed, and why planning
    stopped early (money or time) when it did."""

    tasks: list[Task]
    notes: list[str] = field(default_factory=list)
    stop_reason: StopKind | None = None
    usage: Usage = field(default_factory=Usage)
    """The decomposition calls (they belong to no task)."""


class Planner:
    """Decomposes a project on the first usable planner model that passes the project's
    policies; a planner that is out for the run hands over to the next one."""

    def __init__(self, ctx: RunContext, max_tasks: int | None = None) -> None:
        self.ctx = ctx
        self.max_tasks = max_tasks

    def _compliant(self, planners: Sequence[str], policies: Sequence[Policy]) -> str:
        if not policies:  # the planner gets the project description: the global policies apply
            return planners[0]
        results = []
        for candidate in planners:
            results.append(self.ctx.policy_engine.check(candidate, self.ctx.profile(candidate), policies))
            if results[-1].passed:
                return candidate
        raise PolicyViolationError.for_candidates(None, policies, results, "project (decomposition)")

    def choose(self) -> str:
        """The planner: the first usable candidate that passes the project's policies."""
        planners = self.ctx.router.planner_candidates()
        if not planners:
            raise RuntimeError("no usable model: set a provider key or install the 'local' extra")
        return self._compliant(planners, self.ctx.policies.for_project())

    def one_task(self, description: str, criteria: str, profile: RunProfile) -> Plan | None:
        """The local profile's shortcut: a request naming one function, class or file is
        one task, planned without a model call (a small model splits it into parts that
        each fail on their own)."""
        if not profile.one_task_for_one_target:
            return None
        target = single_target(description)
        if target is None:
            return None
        task_type = (
            TaskType.CODE_GENERATION
            if target.kind in ("function", "class") or target.name.endswith(".py")
            else guess_task_type(description)
        )
        task = Task(
            id=slug_from(description) or "task_1",
            type=task_type,
            prompt=description,
            max_output_tokens=profile.single_target_max_tokens,
        )
        what = f"{target.kind} {target.name}".strip()
        return Plan([task], [f"{profile.name} profile: the request names one {what}: one task, no decomposition call"])

    async def decompose(
        self, description: str, criteria: str, planner: str | None = None, profile: RunProfile = FULL
    ) -> Plan:
        ctx = self.ctx
        planners = ctx.router.planner_candidates()
        if not planners:
            raise RuntimeError("no usable model: set a provider key or install the 'local' extra")
        policies = ctx.policies.for_project()
        planner = planner or self._compliant(planners, policies)
        max_tasks = self.max_tasks or profile.max_tasks
        schema = decomposition_schema(max_tasks, simple=profile.simple_schema)
        if profile.simple_schema:
            prompt = (
                f"Project: {description}\nSuccess criteria: {criteria}\n\n"
                f"Split the project into 1 to {max_tasks} tasks (1 when it is small). Each task has "
                "an id of one or two words naming what it makes, a type and a prompt saying what to "
                "produce."
            )
        else:
            prompt = (
                f"Project: {description}\nSuccess criteria: {criteria}\n\n"
                f"Return between 1 and {max_tasks} tasks. Each task has a short id, a type "
                f"(one of {', '.join(t.value for t in TaskType)}), a prompt that says exactly what to "
                "produce for this project, and depends_on: the ids of tasks whose output it needs."
            )
        reason = ""
        usage = Usage()
        for variant in range(2):
            try:
                response = await ctx.client.call(
                    planner,
                    prompt,
                    system=PLANNER_SYSTEM,
                    max_tokens=min(profile.decompose_max_tokens, get_model(planner).max_output_tokens),
                    temperature=0.2 if variant == 0 else 0.5,
                    json_schema=schema,
                    call_type="decompose",
                    variant=variant,
                    bypass_cache=variant > 0,
                    timeout=profile.decompose_timeout,
                )
            except BudgetExceededError as exc:
                return Plan([], [f"decomposition not affordable: {exc}"], "budget", usage)
            except TimeBudgetExceededError as exc:
                return Plan([], [f"decomposition not affordable: {exc}"], "time", usage)
            except LLMCallError as exc:
                usage.book(calls=exc.attempts)
                reason = f"decomposition call failed: {exc}"
                if exc.error_type == "TimeoutError" and not profile.retry_decomposition_after_timeout:
                    break  # the same CPU would take as long again
                planner = self._next_planner(planners, planner, policies)
                continue
            usage.book(
                calls=max(1, response.attempts),
                input_tokens=response.input_tokens,
                output_tokens=response.output_tokens,
                cost_usd=response.cost_usd,
                cached=response.cached,
            )
            tasks, notes = sanitize_tasks(parse_json_answer(response.text), max_tasks)
            if tasks:
                return Plan(tasks, notes, usage=usage)
            reason = "; ".join(notes) or "no usable task in the answer"
        fallback = Task(
            id="task_1", type=guess_task_type(description), prompt=f"{description}\nSuccess criteria: {criteria}"
        )
        events.emit(events.decomposition_fallback, reason=events.ModelText(reason[:300]))
        return Plan([fallback], [f"decomposition unusable ({reason}); running the project as one task"], usage=usage)

    def _next_planner(self, planners: Sequence[str], planner: str, policies: Sequence[Policy]) -> str:
        """``planner`` while the client still sends to it; once it is out for the run (a
        rejected key, an unknown model, repeated failures), the next usable candidate that
        passes the project's policies, so one dead provider does not cost the plan."""
        client = self.ctx.client
        if client.is_usable(planner):
            return planner
        for candidate in planners[planners.index(planner) + 1 :]:
            if client.is_usable(candidate) and (
                not policies or self.ctx.policy_engine.check(candidate, self.ctx.profile(candidate), policies).passed
            ):
                return candidate
        return planner
