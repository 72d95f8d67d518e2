"""What the engine says to models: system prompts per task type, the task prompt with
its dependencies' outputs, and the critique, revise and evaluation prompts."""

from __future__ import annotations

from collections.abc import Mapping

from ..domain.tasks import Task, TaskType
from ..domain.values import JsonSchema
from ..llm.catalog import ModelInfo

EVALUATION_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "reasons": {"type": "string", "maxLength": 300},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["reasons", "score"],
}

SYSTEM_PROMPTS: dict[TaskType, str] = {
    TaskType.CODE_GENERATION: "You are an expert Python developer. Answer with complete, runnable code "
    "in one ```python block.",
    TaskType.CODE_REVIEW: "You are a senior code reviewer. Be specific and actionable.",
    TaskType.COMPLEX_REASONING: "You are a careful analyst. Reason step by step and state the conclusion.",
    TaskType.CREATIVE_WRITING: "You are a skilled writer.",
    TaskType.DATA_EXTRACTION: "You extract data precisely. Answer with valid JSON only.",
    TaskType.SUMMARIZATION: "You write faithful, concise summaries.",
    TaskType.EVALUATION: "You are an impartial evaluator.",
}
CRITIC_SYSTEM = "You are a strict, precise reviewer."
EVALUATOR_SYSTEM = "You are an exacting evaluator."


def system_prompt(task_type: TaskType) -> str:
    return SYSTEM_PROMPTS.get(task_type, SYSTEM_PROMPTS[TaskType.COMPLEX_REASONING])


def task_prompt(
    task: Task, context: Mapping[str, str], info: ModelInfo, max_tokens: int, project_brief: str = ""
) -> str:
    """The task's prompt, grounded in the project and preceded by its dependencies'
    outputs, truncated to what fits the model's window after the prompt and the answer."""
    prompt = task.prompt
    if project_brief and prompt.strip() and prompt.strip() in project_brief:
        prompt = project_brief  # the task is the whole project (one task): say it once
    elif project_brief and project_brief not in prompt:
        # a task prompt from a weak planner can be vague; the project keeps it grounded
        prompt = f"{project_brief}\n\nYour part: {prompt}"
    if not context:
        return prompt
    # room for context, in characters (about 3 per token), after the prompt and answer
    room_tokens = info.context_window - max_tokens - len(prompt.encode()) // 2 - 600
    room_chars = max(0, room_tokens * 3)
    per_dep = room_chars // max(1, len(context))
    parts = []
    for dep_id, output in context.items():
        text = output if len(output) <= per_dep else output[:per_dep] + "\n[...truncated]"
        parts.append(f"### Output of {dep_id}\n{text}")
    return "Context from earlier tasks:\n" + "\n\n".join(parts) + f"\n\n### Your task\n{prompt}"


def critique_prompt(task: Task, draft: str, feedback: str) -> str:
    return (
        f"Task:\n{task.prompt}\n\nAnswer to review:\n{draft}\n\n"
        + (f"Earlier evaluation: {feedback}\n\n" if feedback else "")
        + "List the concrete problems of this answer and how to fix them. Be brief."
    )


def revise_prompt(prompt: str, draft: str, critique: str, instruction: str) -> str:
    extra = f"{instruction}\n\n" if instruction else ""
    return (
        f"{prompt}\n\nYour previous answer:\n{draft}\n\nReview:\n{critique}\n\n"
        f"{extra}Write the improved, complete answer."
    )


def evaluation_prompt(task: Task, output: str, criteria: str = "") -> str:
    """``criteria``: the prose criteria (the executable ones are run, not judged)."""
    wanted = f"Criteria:\n{criteria}\n\n" if criteria else ""
    return (
        f"Task:\n{task.prompt}\n\n{wanted}Answer:\n{output}\n\n"
        "Does the answer solve the task correctly and completely? Answer in JSON: first "
        "your reasons in one or two sentences, then a score from 0 (wrong) to 1 (perfect)."
    )
