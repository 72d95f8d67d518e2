"""Checks made before a run starts, after the flags and files were read: whatever can
be found out without loading a model or sending a call is found out here, so a bad
input costs one line on stderr and exit 2 instead of a paid-for run that fails late.

* every path a flag names is checked before anything is created
  (:func:`.paths.check_paths`);
* the output directory is created and a file written to it and removed;
* the response cache can be opened (read-only check; nothing is written);
* every prompt the run must send first (the decomposition, or each given task) fits
  the context window of at least one candidate model;
* the sandbox for model-written code works here (or the user said ``--sandbox none``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .project_file import RunOptions

if TYPE_CHECKING:
    from ..llm.client import UnifiedClient

MIN_ANSWER_TOKENS = 16
"""Room a prompt must leave in a context window for an answer."""


def prepare_output_dir(output_dir: str | None, what: str = "--output-dir") -> None:
    """Create ``output_dir`` (0700 when made) and prove it is writable (a probe file,
    removed at once).  A symbolic link given as the directory is refused: the results are
    written only into a directory named as itself (see :class:`orchestrator.files.OutputDir`)."""
    if not output_dir:
        return
    from ..files import OutputDir, UnsafePathError

    path = Path(output_dir)
    if path.is_symlink():
        target = os.readlink(path)
        raise UsageError(f"{what} {output_dir}: is a symbolic link (to {target}); give the directory itself")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {output_dir}: exists and is not a directory")
    try:
        with OutputDir(path) as out:
            out.probe()
            out.check("summary.json")  # a link planted where the summary goes: refused now, not after the run
    except UnsafePathError as exc:
        raise UsageError(f"{what} {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"{what} {output_dir}: not writable ({exc.strerror or exc})") from None


def check_cache(args: argparse.Namespace) -> None:
    """The response cache can be opened (unless ``--no-cache``); one line otherwise."""
    if args.no_cache:
        return
    from ..llm.cache import CacheError, check_cache_dir

    try:
        check_cache_dir(args.cache_dir)
    except CacheError as exc:
        raise UsageError(f"--cache-dir: {exc}") from None


def check_prompts_fit(opts: RunOptions, args: argparse.Namespace, client: UnifiedClient) -> None:
    """Every first prompt of the run fits some candidate's window; else one line naming
    the input, its size and the largest window there was.  What is measured is a part
    of what will be sent (the project, criteria, task prompt and system prompt), so a
    prompt refused here could never have been sent."""
    from ..domain.tasks import TaskType
    from ..engine.planning import PLANNER_SYSTEM
    from ..engine.prompts import system_prompt
    from ..llm.routing import Router

    router = Router(client, args.model)
    brief = f"Project: {opts.project}\nSuccess criteria: {opts.criteria}"
    if opts.tasks:
        for task in opts.tasks:
            where = f"{args.file}: tasks.{task.id}.prompt" if args.file else f"task {task.id}"
            _check_fits(where, (system_prompt(task.type), brief, task.prompt), router.candidates(task.type), client)
    else:
        where = "--project/--criteria" if args.project is not None else f"{args.file}: project/criteria"
        _check_fits(where, (PLANNER_SYSTEM, brief), router.planner_candidates(), client)
        # a task of any type starts from the project brief too
        _check_fits(where, (brief,), [m for t in TaskType for m in router.candidates(t)], client)


def _check_fits(where: str, texts: tuple[str, ...], candidates: list[str], client: UnifiedClient) -> None:
    from ..llm.catalog import get_model
    from ..llm.costing import least_input_tokens, worst_case_input_tokens

    if not candidates:
        return  # no usable model is reported elsewhere (check_model_choice)
    upper = worst_case_input_tokens("", "".join(texts))
    counted = least_input_tokens(*texts)
    for name in dict.fromkeys(candidates):
        window = get_model(name).context_window
        if upper + MIN_ANSWER_TOKENS <= window:
            return  # certainly fits: no need to count
        exact = _exact_tokens(name, texts, client)
        tokens = least_input_tokens(*texts) if exact is None else exact
        counted = max(counted, tokens)
        if tokens + MIN_ANSWER_TOKENS <= window:
            return
    largest = max(candidates, key=lambda m: get_model(m).context_window)
    raise UsageError(
        f"{where}: the prompt is too long: at least {counted} tokens, and no candidate model's "
        f"context window holds it with room for an answer (largest: {largest}, "
        f"{get_model(largest).context_window} tokens)"
    )


def _exact_tokens(model: str, texts: tuple[str, ...], client: UnifiedClient) -> int | None:
    """The local model's own count (its tokenizer, no weights); None for remote models."""
    from ..llm.catalog import get_model
    from ..llm.providers.base import ProviderError
    from ..llm.providers.local import LocalProvider, count_tokens_offline

    provider = client.provider_for(get_model(model))
    if not isinstance(provider, LocalProvider):
        return None
    try:
        return sum(count_tokens_offline(provider.model_path, t) for t in texts)
    except ProviderError:
        return None


NO_SANDBOX_WARNING = (
    "--sandbox none: model-written code and acceptance checks will run WITHOUT isolation: "
    "they can read your files and environment (API keys included), reach the network and "
    "kill this run"
)


def check_sandbox(args: argparse.Namespace) -> list[str]:
    """Resolve ``--sandbox`` (default auto) into ``args.resolved_sandbox``, probing it
    from inside; where it cannot run, one line (exit 2) before any work.  Returns the
    warnings to print (loud when the code will run without isolation)."""
    from ..governance.sandbox import SandboxUnavailable, resolve

    choice = getattr(args, "sandbox", None) or "auto"
    try:
        args.resolved_sandbox = resolve(choice)
    except SandboxUnavailable as exc:
        raise UsageError(str(exc)) from None
    return [] if args.resolved_sandbox.isolated else [NO_SANDBOX_WARNING]
