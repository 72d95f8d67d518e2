"""``orchestrator policy check FILE``: validate a policy file or a project file's
``policies``/``remediation``/``validators`` sections without running anything, against
the catalog a run would have (ours plus the user's default catalog file)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from ..config import convert, read_document
from ..domain.errors import ConfigError
from ..domain.tasks import Task, TaskType
from ..governance.config import RunConfig, load_run_config
from ..governance.policy import Policy, PolicyEngine, PolicySet
from ..llm.catalog import CATALOG, LOCAL_MODEL, ROUTING
from .errors import EXIT_OK, EXIT_USAGE, one_line
from .project_file import ProjectFile

USAGE = "usage: orchestrator policy check FILE   (a policy file, YAML or JSON, or a YAML project file)"


def check_file(path: str) -> list[str]:
    """Validate a policy file or a project file's sections; the summary lines.  Raises
    :class:`ConfigError` (one line) on the first problem, or when no catalog model is
    allowed for any task type.  A mapping with a ``project`` key is a project file."""
    data = read_document(path, what="policy")
    project: ProjectFile | None = None
    tasks: list[Task] = []
    if isinstance(data, Mapping) and "project" in data:
        project = convert(data, ProjectFile, source=path)
        tasks = project.task_list() or []
        config = load_run_config(project, path, None, tasks)
        what = "project file"
    else:
        if data is None or data == {} or data == []:
            raise ConfigError("empty policy file: give 'policies', 'task_types' or 'tasks'", source=path)
        config = RunConfig(policies=PolicySet.from_data(data, path))
        what = "policy file"
    pset = config.policies
    lines = [f"{path}: ok ({what}): {pset.describe()}"]
    allowed = _allowed_by_type(pset)
    for ttype, (ok, total) in allowed.items():
        shown = ", ".join(ok[:4]) + (f" (+{len(ok) - 4} more)" if len(ok) > 4 else "")
        lines.append(
            f"  {ttype.value}: {len(ok)} of {total} candidates allowed"
            + (f": {shown}" if ok else " - tasks of this type will fail")
        )
    for task in tasks:
        ok = _allowed(pset.for_task(task), _candidates(task.type))
        if not ok:
            lines.append(f"  task {task.id}: no candidate allowed - it will fail")
    if pset and not any(ok for ok, _ in allowed.values()):
        raise ConfigError(
            "no catalog model satisfies the policies for any task type; a run would stop before spending anything",
            source=path,
        )
    if project is not None:
        lines.append("  remediation: " + "; ".join(config.remediation.describe()))
        changed = sorted(
            {t.value for t in config.validators.by_type} | {f"task {t}" for t in config.validators.by_task}
        )
        lines.append("  validators: " + (f"changed for {', '.join(changed)}" if changed else "defaults"))
    return lines


def _candidates(task_type: TaskType) -> list[str]:
    return [m for m in dict.fromkeys((*ROUTING[task_type], LOCAL_MODEL)) if m in CATALOG]


def _allowed(policies: Sequence[Policy], candidates: Sequence[str]) -> list[str]:
    engine = PolicyEngine()
    return [m for m in candidates if engine.evaluate(m, None, policies).passed]


def _allowed_by_type(pset: PolicySet) -> dict[TaskType, tuple[list[str], int]]:
    out = {}
    for ttype in TaskType:
        candidates = _candidates(ttype)
        out[ttype] = (_allowed(pset.for_type(ttype), candidates), len(candidates))
    return out


def policy_main(argv: Sequence[str]) -> int:
    """``orchestrator policy check FILE``: 0 and a short summary, or 2 and one line."""
    args = list(argv)
    if len(args) != 2 or args[0] != "check" or args[1].startswith("-"):
        if args in (["-h"], ["--help"], ["check", "-h"], ["check", "--help"]):
            print(USAGE)
            print(
                "Validates the file without running anything: exit 0 and a summary, or exit 2 and "
                "one line naming the file, the key and the reason."
            )
            return EXIT_OK
        print(f"orchestrator: error: {USAGE}", file=sys.stderr)
        return EXIT_USAGE
    from ..llm import catalog

    with catalog.preserved():
        try:
            user_file = catalog.default_user_catalog()
            catalog.use_catalog_files([user_file] if user_file.is_file() else [])
            lines = check_file(args[1])
        except ConfigError as exc:
            print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
    print("\n".join(lines))
    return EXIT_OK
