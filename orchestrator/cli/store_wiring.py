"""The run store for the command line: opening it from ``--state-dir``, what a run keeps
of its flags, and how ``resume`` gets them back.

Why the flags are kept: ``orchestrator resume ID`` must rebuild the run as it was (the
same project, tasks, models, policies, remediation, validators, cache and output
directory) without the user typing them again, and without depending on the project or
policy file still being there or unchanged.  Paths are kept absolute, so a resume from
another directory writes to the same place.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ..config import read_document
from ..domain.checkpoint import Checkpoint
from ..domain.values import JsonObject
from .errors import UsageError
from .project_file import RunOptions

if TYPE_CHECKING:
    from ..state import RunStore

SECTIONS = ("policies", "remediation", "validators")


def open_store(state_dir: str | None, *, create: bool = True) -> RunStore:
    """The run store (``StoreError``, one line, when it cannot be used).  The read-only
    commands (``runs``, ``runs show``, ``runs rm``, ``resume``) pass ``create=False``:
    where there is no store they find no runs, and make nothing."""
    from ..state import RunStore

    return RunStore(state_dir, create=create)


def resume_hint(project_id: str, state_dir: str | None) -> str:
    where = f" --state-dir {shlex.quote(str(Path(state_dir).expanduser().resolve()))}" if state_dir else ""
    return f"orchestrator resume {project_id}{where}"


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _policy_data(path: str | None) -> object:
    """The policy file's data (already validated by the run's configuration), as read."""
    return read_document(path, what="policy") if path else None


class CliSettings(TypedDict):
    """What a run started from the command line keeps of its flags and files (paths
    absolute), under ``cli`` in its checkpoint's settings; :func:`rebuild` reads it back."""

    project: str
    criteria: str
    budget_usd: float
    time_seconds: float
    concurrency: int
    output_dir: str | None
    tasks: list[JsonObject] | None
    sections: dict[str, object]
    project_file: str | None
    policy_file: str | None
    policy_data: object
    model: str | None
    local_model: str | None
    provider_url: str | None
    max_tasks: int | None
    cache_dir: str | None
    no_cache: bool
    catalog: str | None
    profile: str | None
    sandbox: str | None


def cli_settings(opts: RunOptions, args: argparse.Namespace) -> dict[str, CliSettings]:
    """What a run keeps of its flags and files, JSON-ready, under ``cli``."""
    data = opts.file_data or {}
    return {
        "cli": {
            "project": opts.project,
            "criteria": opts.criteria,
            "budget_usd": opts.budget_usd,
            "time_seconds": opts.time_seconds,
            "concurrency": opts.concurrency,
            "output_dir": _absolute(opts.output_dir),
            "tasks": [t.to_dict() for t in opts.tasks] if opts.tasks else None,
            "sections": {k: data[k] for k in SECTIONS if data.get(k) is not None},
            "project_file": _absolute(args.file),
            "policy_file": _absolute(args.policy),
            "policy_data": _policy_data(args.policy),
            "model": args.model,
            "local_model": _absolute(args.local_model),
            "provider_url": args.provider_url,
            "max_tasks": args.max_tasks,
            "cache_dir": _absolute(args.cache_dir),
            "no_cache": bool(args.no_cache),
            "catalog": _absolute(getattr(args, "catalog", None)),
            "profile": getattr(args, "profile", None),
            "sandbox": getattr(args, "sandbox", None),
        }
    }


def rebuild(cp: Checkpoint, resume_args: argparse.Namespace) -> tuple[RunOptions, argparse.Namespace]:
    """The run's options and flags from its checkpoint, with the resume's own flags
    (observability, ``-o``) on top.  Raises UsageError/ConfigError (one line)."""
    cli = cp.settings.get("cli")
    if not isinstance(cli, dict):
        raise UsageError(
            f"project {cp.project_id} was not started from the command line; "
            "resume it with Orchestrator.resume() in Python"
        )
    from ..domain.tasks import Task, TaskType
    from ..governance.config import load_run_config
    from ..governance.policy import PolicySet

    tasks = None
    if cli.get("tasks"):
        tasks = [
            Task(
                id=t["id"],
                type=TaskType(t["type"]),
                prompt=t["prompt"],
                depends_on=list(t["depends_on"]),
                acceptance_threshold=t.get("acceptance_threshold"),
                max_iterations=t.get("max_iterations"),
                max_output_tokens=t.get("max_output_tokens"),
            )
            for t in cli["tasks"]
        ]
    opts = RunOptions(
        project=cp.description,
        criteria=cp.criteria,
        budget_usd=cp.max_usd,
        time_seconds=cp.max_time_seconds,
        concurrency=int(cli.get("concurrency") or 4),
        output_dir=resume_args.output_dir or cli.get("output_dir"),
        tasks=tasks,
        file_data=dict(cli.get("sections") or {}),
    )
    source = cli.get("project_file") or "project file"
    opts.config = load_run_config(opts.file_data, source, None, tasks)
    if cli.get("policy_data") is not None:
        opts.config = opts.config.with_policies(
            PolicySet.from_data(cli["policy_data"], cli.get("policy_file") or "--policy")
        )
    args = argparse.Namespace(**vars(resume_args))
    for key in ("model", "local_model", "provider_url", "max_tasks", "cache_dir", "no_cache", "catalog", "profile"):
        setattr(args, key, cli.get(key))
    args.update_prices = False  # the prices of this resume: the bundled ones, unless the environment asks
    args.no_cache = bool(args.no_cache)
    args.file, args.policy = cli.get("project_file"), cli.get("policy_file")
    args.sandbox = resume_args.sandbox or cli.get("sandbox")  # the run's own choice unless the resume names one
    return opts, args


TASK_FINISHED = '{"signal": "task_finished"'
"""How a task_finished event's JSON line starts (the recorder writes the signal first)."""


class StoreRecording:
    """Keeps one attempt's events in the run store, so ``orchestrator report ID`` and
    ``orchestrator replay ID`` need only the id: an event recorder (its JSON lines, with
    the content rule: model and prompt text only with ``--capture-content``) feeds the
    store's event log, written with every checkpoint and about once a second between
    them (at once after a task finished).  A store that cannot be written costs the log,
    never the run (one warning)."""

    def __init__(self, store: RunStore, project_id: str, attempt: int, capture_content: bool) -> None:
        from ..observers.recorder import EventRecorder
        from ..state.event_log import EventLog, PeriodicFlush

        self.store = store
        self.log = EventLog(project_id, attempt)
        self.recorder = EventRecorder(keep=False, include_content=capture_content, sink=self._add)
        self.flusher = PeriodicFlush(store.flush_events, on_error=self._warn)
        self._warned = False

    def _add(self, line: str) -> None:
        self.log.add(line)
        if line.startswith(TASK_FINISHED):  # its finish belongs with the checkpoint saved just before
            self.flusher.wake()

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            import sys

            from .errors import one_line

            print(
                f"orchestrator: warning: the event log of {self.log.project_id} is not kept: {one_line(exc)}",
                file=sys.stderr,
            )

    def start(self) -> StoreRecording:
        self.store.attach_event_log(self.log)
        self.recorder.subscribe()
        self.flusher.start()
        return self

    def finish(self) -> None:
        """Stop recording and write what waits (never raises)."""
        from ..domain.checkpoint import StoreError

        self.recorder.unsubscribe()
        self.flusher.stop()
        try:
            self.store.flush_events()
        except StoreError as exc:
            self._warn(exc)
        finally:
            self.store.attach_event_log(None)
