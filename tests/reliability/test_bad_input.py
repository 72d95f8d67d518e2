"""Every bad input is refused before any work: through the real command line, in a
subprocess, each row must exit 2 with exactly one line on stderr, no traceback, and
leave nothing written (no output directory, cache, events file or anything else).

Rows that need an unwritable or unreadable path run the command without any capability
when the tests run as root (root may otherwise write anywhere, so a mode bit alone would
prove nothing): ``setpriv --bounding-set=-all``, which leaves root's file access to the
mode bits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LONG = "lorem ipsum dolor sit amet " * 3000  # ~80 KB: about 30k tokens, over SmolLM2's 8192


@dataclass
class Row:
    name: str
    argv: list[str]
    fragment: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    unprivileged: bool = False
    defaults: bool = True  # add --cache-dir, -o and --events-jsonl inside the row's directory


def _yaml(body: str) -> dict[str, str | bytes]:
    return {"p.yaml": body}


def _task(extra: str, prompt: str = "say hi") -> dict[str, str | bytes]:
    return _yaml(f"project: x\ntasks:\n  - id: a\n    prompt: {prompt}\n{extra}")


def _two(a_extra: str, b_extra: str = "") -> dict[str, str | bytes]:
    return _yaml(f"project: x\ntasks:\n  - id: a\n    prompt: p\n{a_extra}  - id: b\n    prompt: q\n{b_extra}")


def _mkdir(*names: str, mode: int | None = None) -> Callable[[Path], None]:
    def make(base: Path) -> None:
        for name in names:
            (base / name).mkdir(parents=True, exist_ok=True)
            if mode is not None:
                (base / name).chmod(mode)

    return make


def _unreadable_cache(base: Path) -> None:
    (base / "oldcache").mkdir()
    db = base / "oldcache" / "responses.sqlite3"
    db.write_bytes(b"")
    db.chmod(0)


def _fifo(name: str) -> Callable[[Path], None]:
    def make(base: Path) -> None:
        os.mkfifo(base / name)

    return make


LONG_NAME = "n" * 300  # over the 255 bytes a file name may have
# nine levels of nine aliases, under 1 KB: 387 million strings once expanded
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _deep(depth: int, json: bool = False) -> str:
    inner = "[" * depth + "]" * depth
    return f'{{"policies": {inner}}}' if json else f"policies: {inner}\n"


F = ["-f", "{d}/p.yaml"]
ROWS = [
    # -- numbers from flags
    Row("budget-nan", ["-p", "x", "--budget", "nan"], "--budget must be a number >= 0, got nan"),
    Row("budget-inf", ["-p", "x", "--budget", "inf"], "not a finite number"),
    Row("budget-1e309", ["-p", "x", "--budget", "1e309"], "not a finite number"),
    Row("budget-negative", ["-p", "x", "--budget", "-1"], "--budget must be a number >= 0"),
    Row("budget-text", ["-p", "x", "--budget", "abc"], "invalid float value"),
    Row("time-nan", ["-p", "x", "--time", "nan"], "--time must be a number > 0"),
    Row("time-zero", ["-p", "x", "--time", "0"], "--time must be a number > 0"),
    Row("time-inf", ["-p", "x", "--time", "inf"], "not a finite number"),
    Row("concurrency-zero", ["-p", "x", "--concurrency", "0"], "--concurrency must be a whole number >= 1"),
    Row("concurrency-fraction", ["-p", "x", "--concurrency", "2.7"], "invalid int value"),
    Row("max-tasks-zero", ["-p", "x", "--max-tasks", "0"], "--max-tasks must be between 1 and 15"),
    Row("max-tasks-40", ["-p", "x", "--max-tasks", "40"], "--max-tasks must be between 1 and 15"),
    Row("sample-rate-nan", ["-p", "x", "--sample-rate", "nan"], "--sample-rate"),
    Row("sample-rate-1.5", ["-p", "x", "--sample-rate", "1.5"], "--sample-rate"),
    Row("otlp-timeout-nan", ["-p", "x", "--otlp-timeout", "nan"], "--otlp-timeout"),
    Row("otlp-endpoint-no-scheme", ["-p", "x", "--otlp-endpoint", "localhost:4317"], "--otlp-endpoint"),
    Row("otlp-protocol", ["-p", "x", "--otlp-protocol", "udp"], "invalid choice"),
    Row("unknown-flag", ["-p", "x", "--bogus"], "unrecognized arguments"),
    Row("service-name-blank", ["-p", "x", "--service-name", " "], "--service-name must not be empty"),
    Row("observer-missing", ["-p", "x", "--observer", "no_such_module_xyz:f"], "no_such_module_xyz"),
    Row(
        "observer-misspelled-handler",
        ["-p", "x", "--observer", "my_observer:SlowCalls"],
        "--observer my_observer:SlowCalls: SlowCalls.on_llm_call_finshed matches no signal: "
        "did you mean on_llm_call_finished?",
        files={
            "my_observer.py": "from orchestrator.observers import Observer\n\n"
            "class SlowCalls(Observer):\n"
            "    def on_llm_call_finshed(self, p):\n        print(p.model)\n"
        },
    ),
    # -- models
    Row("model-unknown", ["-p", "x", "--model", "no-such-model"], "unknown model"),
    Row("local-model-missing", ["-p", "x", "--local-model", "{d}/none.gguf"], "no such file"),
    Row(
        "local-model-not-gguf",
        ["-p", "x", "--local-model", "{d}/model.gguf"],
        "is not a GGUF model file",
        files={"model.gguf": b"PK\x03\x04 this is a zip, not a model"},
    ),
    Row("local-model-directory", ["-p", "x", "--local-model", "{d}/models"], "not a file", setup=_mkdir("models")),
    Row("provider-url-without-model", ["-p", "x", "--provider-url", "http://127.0.0.1:9/v1"], "needs --model"),
    # -- text
    Row("project-invalid-utf8", ["-p", "caf\udce9"], "--project is not valid UTF-8"),
    Row("criteria-invalid-utf8", ["-p", "x", "-c", "\udcff"], "--criteria is not valid UTF-8"),
    Row("project-blank", ["-p", "   "], "no project given"),
    Row("project-too-long", ["-p", LONG], "the prompt is too long"),
    # -- where results, cache and events go
    Row(
        "output-dir-is-a-file",
        ["-p", "x", "-o", "{d}/taken"],
        "exists and is not a directory",
        files={"taken": "a file"},
        defaults=False,
    ),
    Row(
        "output-dir-under-a-file",
        ["-p", "x", "-o", "{d}/taken/out"],
        "not writable",
        files={"taken": "a file"},
        defaults=False,
    ),
    # (run as root without capabilities, where no sandbox can be built: the row opts out of it)
    Row(
        "output-dir-read-only",
        ["-p", "x", "-o", "{d}/ro/out", "--no-cache", "--sandbox", "none"],
        "not writable",
        setup=_mkdir("ro", mode=0o555),
        unprivileged=True,
        defaults=False,
    ),
    Row("sandbox-unknown", ["-p", "x", "--sandbox", "docker"], "argument --sandbox: invalid choice: 'docker'"),
    Row(
        "sandbox-none-available",
        ["-p", "x", "--no-cache"],
        "no sandbox for model-written code here",
        unprivileged=True,
        defaults=False,
    ),
    Row(
        "cache-corrupt",
        ["-p", "x", "--cache-dir", "{d}/oldcache"],
        "file is not a database",
        files={"oldcache/responses.sqlite3": b"this is not sqlite" * 10},
        defaults=False,
    ),
    Row(
        "cache-dir-is-a-file",
        ["-p", "x", "--cache-dir", "{d}/taken"],
        "is not a directory",
        files={"taken": "a file"},
        defaults=False,
    ),
    Row(
        "cache-file-is-a-directory",
        ["-p", "x", "--cache-dir", "{d}/oldcache"],
        "is not a file",
        setup=_mkdir("oldcache/responses.sqlite3"),
        defaults=False,
    ),
    Row(
        "cache-unreadable",
        ["-p", "x", "--cache-dir", "{d}/oldcache"],
        "not readable",
        setup=_unreadable_cache,
        unprivileged=True,
        defaults=False,
    ),
    Row(
        "events-jsonl-directory",
        ["-p", "x", "--events-jsonl", "{d}/evdir"],
        "is a directory",
        setup=_mkdir("evdir"),
        defaults=False,
    ),
    Row(
        "events-jsonl-missing-dir",
        ["-p", "x", "--events-jsonl", "{d}/nodir/e.jsonl"],
        "no such directory",
        defaults=False,
    ),
    # -- every path checked before anything is created
    Row(
        "output-dir-name-too-long",
        ["-p", "x", "-o", f"{{d}}/{LONG_NAME}"],
        "a name in it is too long (300 bytes",
        defaults=False,
    ),
    Row(
        "events-jsonl-fifo",
        ["-p", "x", "--events-jsonl", "{d}/fifo", "-o", "{d}/out"],
        "--events-jsonl {d}/fifo: is not a regular file (a pipe or socket)",
        setup=_fifo("fifo"),
        defaults=False,
    ),
    Row(
        "events-jsonl-name-too-long",
        ["-p", "x", "--events-jsonl", f"{{d}}/{LONG_NAME}", "-o", "{d}/out"],
        "a name in it is too long",
        defaults=False,
    ),
    Row(
        "state-dir-is-a-file",
        ["-p", "x", "--state-dir", "{d}/taken"],
        "--state-dir {d}/taken: exists and is not a directory",
        files={"taken": "a file"},
    ),
    Row("state-dir-name-too-long", ["-p", "x", "--state-dir", f"{{d}}/{LONG_NAME}"], "a name in it is too long"),
    Row(
        "cache-dir-name-too-long",
        ["-p", "x", "--cache-dir", f"{{d}}/{LONG_NAME}", "-o", "{d}/out"],
        "a name in it is too long",
        defaults=False,
    ),
    Row("local-model-fifo", ["-p", "x", "--local-model", "{d}/fifo"], "is not a regular file", setup=_fifo("fifo")),
    Row(
        "resume-output-dir-name-too-long",
        ["resume", "proj-0123456789ab", "-o", f"{{d}}/{LONG_NAME}", "--state-dir", "{d}/state"],
        "a name in it is too long",
        defaults=False,
    ),
    Row(
        "resume-state-dir-is-a-file",
        ["resume", "proj-0123456789ab", "--state-dir", "{d}/taken"],
        "exists and is not a directory",
        files={"taken": "a file"},
        defaults=False,
    ),
    Row(
        "resume-events-jsonl-fifo",
        ["resume", "proj-0123456789ab", "--events-jsonl", "{d}/fifo", "--state-dir", "{d}/state"],
        "is not a regular file",
        setup=_fifo("fifo"),
        defaults=False,
    ),
    # -- policy and catalog files
    Row("policy-missing", ["-p", "x", "--policy", "{d}/none.yaml"], "none.yaml"),
    Row(
        "policy-nan",
        ["-p", "x", "--policy", "{d}/pol.yaml"],
        "must be a finite number > 0",
        files={"pol.yaml": "policies:\n  - name: spend\n    max_cost_per_call_usd: .nan\n"},
    ),
    Row(
        "policy-inf",
        ["-p", "x", "--policy", "{d}/pol.yaml"],
        "must be a finite number > 0",
        files={"pol.yaml": "policies:\n  - name: spend\n    max_cost_per_task_usd: .inf\n"},
    ),
    Row(
        "policy-unknown-key",
        ["-p", "x", "--policy", "{d}/pol.yaml"],
        "did you mean 'blocked_providers'",
        files={"pol.yaml": "policies:\n  - name: p\n    blocked_provider: [kimi]\n"},
    ),
    Row(
        "catalog-bad-price",
        ["-p", "x", "--catalog", "{d}/cat.toml"],
        "must be a number >= 0",
        files={"cat.toml": '[models."gpt-6.1-sol"]\nprice = { input = "cheap", output = 1 }\n'},
    ),
    # -- what the loader refuses before parsing further: aliases, duplicate keys, depth, size, non-files
    Row(
        "policy-duplicate-key-json",
        ["-p", "x", "--policy", "{d}/pol.json"],
        "pol.json: duplicate key 'policies'",
        files={"pol.json": '{"policies": [{"name": "a", "blocked_providers": ["kimi"]}], "policies": []}'},
    ),
    Row(
        "policy-duplicate-key-yaml",
        ["-p", "x", "--policy", "{d}/pol.yaml"],
        "pol.yaml: line 4: duplicate key 'max_cost_per_call_usd' (first on line 3)",
        files={"pol.yaml": "policies:\n  - name: a\n    max_cost_per_call_usd: 0.01\n    max_cost_per_call_usd: 500\n"},
    ),
    Row(
        "policy-100000-deep-yaml",
        ["-p", "x", "--policy", "{d}/pol.yaml"],
        "nested deeper than 64 levels",
        files={"pol.yaml": _deep(100_000)},
    ),
    Row(
        "policy-100000-deep-json",
        ["-p", "x", "--policy", "{d}/pol.json"],
        "nested deeper than 64 levels",
        files={"pol.json": _deep(100_000, json=True)},
    ),
    Row(
        "policy-alias",
        ["-p", "x", "--policy", "{d}/pol.yaml"],
        "YAML aliases are not allowed",
        files={"pol.yaml": "base: &b [kimi]\npolicies:\n  - name: a\n    blocked_providers: *b\n"},
    ),
    Row("policy-fifo", ["-p", "x", "--policy", "{d}/fifo"], "fifo: is not a regular file", setup=_fifo("fifo")),
    Row(
        "policy-directory",
        ["-p", "x", "--policy", "{d}/pols"],
        "pols: is a directory, not a policy file",
        setup=_mkdir("pols"),
    ),
    Row("catalog-fifo", ["-p", "x", "--catalog", "{d}/fifo"], "fifo: is not a regular file", setup=_fifo("fifo")),
    Row("catalog-name-too-long", ["-p", "x", "--catalog", f"{{d}}/{LONG_NAME}"], "File name too long"),
    Row(
        "file-alias-bomb-criteria",
        F,
        "line 2: YAML aliases are not allowed (*a)",
        files=_yaml(BOMB + "project: x\ncriteria: *i\n"),
    ),
    Row("file-alias-bomb-project", F, "YAML aliases are not allowed", files=_yaml(BOMB + "project: *i\n")),
    Row(
        "file-alias-bomb-depends-on",
        F,
        "YAML aliases are not allowed",
        files=_yaml(BOMB + "project: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: *i\n"),
    ),
    Row(
        "file-duplicate-budget",
        F,
        "p.yaml: line 3: duplicate key 'budget_usd' (first on line 2)",
        files=_yaml("project: x\nbudget_usd: 0.01\nbudget_usd: 500\n"),
    ),
    Row(
        "file-5000-deep",
        F,
        "p.yaml: line 2: nested deeper than 64 levels",
        files=_yaml("project: x\ntasks: " + "[" * 5000 + "]" * 5000 + "\n"),
    ),
    Row("file-too-large", F, "too large", files=_yaml("project: x\n#" + "x" * 1_100_000 + "\n")),
    Row("file-fifo", ["-f", "{d}/fifo"], "fifo: is not a regular file", setup=_fifo("fifo")),
    Row("file-directory", ["-f", "{d}/proj"], "proj: is a directory, not a project file", setup=_mkdir("proj")),
    # -- the project file itself
    Row("file-missing", ["-f", "{d}/none.yaml"], "no such project file"),
    Row("file-nul-byte", F, "unacceptable character #x00", files=_yaml("project: x\x00y\n")),
    Row("file-not-utf8", F, "not a UTF-8 text file", files={"p.yaml": b"project: caf\xe9\n"}),
    Row("file-bad-yaml", F, "not valid YAML", files=_yaml("project: [unclosed\n")),
    Row("file-a-list", F, "must be a mapping with at least 'project'", files=_yaml("- a\n- b\n")),
    Row("file-unknown-key", F, "did you mean 'budget_usd'", files=_yaml("project: x\nbudjet_usd: 3\n")),
    Row(
        "file-budget-nan",
        F,
        "budget_usd: must be a finite number >= 0, got nan",
        files=_yaml("project: x\nbudget_usd: .nan\n"),
    ),
    Row("file-budget-inf", F, "not a finite number", files=_yaml("project: x\nbudget_usd: .inf\n")),
    Row("file-budget-text", F, "budget_usd: must be a finite number", files=_yaml("project: x\nbudget_usd: lots\n")),
    Row(
        "file-time-negative",
        F,
        "time_seconds: must be a finite number > 0",
        files=_yaml("project: x\ntime_seconds: -5\n"),
    ),
    Row(
        "file-concurrency-fraction",
        F,
        "concurrency: must be a whole number >= 1, got 2.7",
        files=_yaml("project: x\nconcurrency: 2.7\n"),
    ),
    Row(
        "file-concurrency-bool",
        F,
        "concurrency: must be a whole number >= 1, got True",
        files=_yaml("project: x\nconcurrency: true\n"),
    ),
    Row(
        "file-output-dir-number", F, "output_dir: must be a directory path", files=_yaml("project: x\noutput_dir: 5\n")
    ),
    Row("file-project-list", F, "project: must be a non-empty string", files=_yaml("project: [a, b]\n")),
    Row("file-project-nul-escape", F, "contains a NUL byte", files=_yaml('project: "a\\0b"\n')),
    Row("tasks-mapping", F, "tasks: must be a non-empty list", files=_yaml("project: x\ntasks: {a: 1}\n")),
    Row("tasks-empty", F, "tasks: must be a non-empty list", files=_yaml("project: x\ntasks: []\n")),
    Row("task-not-mapping", F, "tasks[0]: must be a mapping", files=_yaml("project: x\ntasks: [5]\n")),
    Row(
        "task-no-prompt",
        F,
        "tasks[0].prompt: is required: a non-empty string",
        files=_yaml("project: x\ntasks:\n  - id: a\n"),
    ),
    Row("task-prompt-number", F, "tasks[0].prompt: must be a non-empty string", files=_task("", prompt="5")),
    Row(
        "task-id-number",
        F,
        "tasks[0].id: must be a non-empty name (no surrounding blanks), got 5 (quote numbers: '5')",
        files=_yaml("project: x\ntasks:\n  - id: 5\n    prompt: p\n"),
    ),
    Row(
        "task-depends-on-number",
        F,
        "tasks[0].depends_on: must be a list of task ids",
        files=_task("    depends_on: 5\n"),
    ),
    Row(
        "task-depends-on-string",
        F,
        "tasks[0].depends_on: must be a list of task ids (strings), e.g. [a, b], got 'ab'",
        files=_task("    depends_on: ab\n"),
    ),
    Row(
        "task-depends-on-numbers",
        F,
        "tasks[0].depends_on[0]: must be a non-empty name",
        files=_task("    depends_on: [1]\n"),
    ),
    Row(
        "task-threshold-text",
        F,
        "tasks[0].acceptance_threshold: must be a number between 0 and 1, got 'high'",
        files=_task("    acceptance_threshold: high\n"),
    ),
    Row(
        "task-threshold-5",
        F,
        "tasks[0].acceptance_threshold: must be a number between 0 and 1, got 5",
        files=_task("    acceptance_threshold: 5\n"),
    ),
    Row("task-threshold-nan", F, "tasks[0].acceptance_threshold", files=_task("    acceptance_threshold: .nan\n")),
    Row("task-threshold-bool", F, "tasks[0].acceptance_threshold", files=_task("    acceptance_threshold: yes\n")),
    Row(
        "task-iterations-negative",
        F,
        "tasks[0].max_iterations: must be a whole number >= 1, got -3",
        files=_task("    max_iterations: -3\n"),
    ),
    Row(
        "task-iterations-text",
        F,
        "tasks[0].max_iterations: must be a whole number >= 1, got 'many'",
        files=_task("    max_iterations: many\n"),
    ),
    Row(
        "task-iterations-fraction",
        F,
        "tasks[0].max_iterations: must be a whole number >= 1, got 2.5",
        files=_task("    max_iterations: 2.5\n"),
    ),
    Row("task-output-tokens-zero", F, "tasks[0].max_output_tokens", files=_task("    max_output_tokens: 0\n")),
    Row(
        "task-unknown-key",
        F,
        "tasks[0].promt: unknown key 'promt' (did you mean 'prompt'?",
        files=_task("    promt: q\n"),
    ),
    Row("task-unknown-type", F, "tasks[0].type: unknown task type 'poetry'", files=_task("    type: poetry\n")),
    Row("task-cycle", F, "dependency cycle: a -> b -> a", files=_two("    depends_on: [b]\n", "    depends_on: [a]\n")),
    Row("task-self-dependency", F, "task 'a' depends on itself", files=_task("    depends_on: [a]\n")),
    Row(
        "task-unknown-dependency",
        F,
        "task 'a' depends on 'c', which is not a task",
        files=_task("    depends_on: [c]\n"),
    ),
    Row(
        "task-duplicate-id",
        F,
        "duplicate task id 'a'",
        files=_yaml("project: x\ntasks:\n  - id: a\n    prompt: p\n  - id: a\n    prompt: q\n"),
    ),
    Row("task-prompt-too-long", F, "tasks.a.prompt: the prompt is too long", files=_task("", prompt=LONG)),
    Row(
        "remediation-inf",
        F,
        "remediation.degrade_step: must be a finite number >= 0",
        files=_yaml("project: x\nremediation:\n  degrade_step: .inf\n"),
    ),
    Row(
        "remediation-nan",
        F,
        "remediation.retry_delay_seconds: must be a finite number >= 0",
        files=_yaml("project: x\nremediation:\n  retry_delay_seconds: .nan\n"),
    ),
    Row(
        "validator-timeout-inf",
        F,
        "must be a finite number > 0",
        files=_yaml("project: x\nvalidators:\n  code_generation: [{pytest: {timeout: .inf}}]\n"),
    ),
]


def _snapshot(base: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for path in sorted(base.rglob("*")):
        try:
            info = path.lstat()
        except OSError:
            continue
        out[str(path.relative_to(base))] = (info.st_size, info.st_mtime_ns)
    return out


@pytest.fixture
def workdir():
    """The row's directory, removed afterwards whatever its modes."""
    base = Path(tempfile.mkdtemp(prefix="orchestrator-bad-input-"))
    yield base
    for path in [base, *base.rglob("*")]:
        try:
            path.chmod(0o755 if path.is_dir() else 0o644)
        except OSError:
            pass
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_bad_input_is_refused_up_front(row: Row, workdir: Path):
    for name, content in row.files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{d}", str(workdir)), encoding="utf-8")
    if row.setup is not None:
        row.setup(workdir)
    argv = [a.replace("{d}", str(workdir)) for a in row.argv]
    if row.defaults:
        argv += ["--cache-dir", f"{workdir}/cache", "-o", f"{workdir}/out", "--events-jsonl", f"{workdir}/e.jsonl"]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")}
    env.update(
        HOME=str(workdir / "home"),
        XDG_CACHE_HOME=str(workdir / "xdg-cache"),
        XDG_CONFIG_HOME=str(workdir / "xdg-config"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if row.unprivileged and os.geteuid() == 0 else []
    before = _snapshot(workdir)
    proc = subprocess.run(
        [*drop, sys.executable, "-m", "orchestrator", *argv], capture_output=True, timeout=120, cwd=workdir, env=env
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout[-500:])
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("orchestrator: error: ") and "Traceback" not in err, err
    assert row.fragment.replace("{d}", str(workdir)) in lines[0], lines[0]
    assert proc.stdout == b""
    assert _snapshot(workdir) == before, "something was written"


def test_the_alias_bomb_is_refused_by_the_command_line_in_bounded_time_and_memory(tmp_path, capsys):
    """Before the loader, PyYAML expanded this 1 KB file until memory ran out (a
    ``MemoryError`` traceback after 40-60 s); now the first alias is refused."""
    import time
    import tracemalloc

    from orchestrator import cli

    path = tmp_path / "p.yaml"
    path.write_text(BOMB + "project: x\ncriteria: *i\n", encoding="utf-8")
    assert path.stat().st_size < 1024
    assert cli.main(["-p", "x", "--budget", "nan"]) == 2  # the command's imports, outside the measurement
    capsys.readouterr()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        code = cli.main(["-f", str(path), "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 20_000_000
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"orchestrator: error: {path}: line 2: YAML aliases are not allowed (*a): write the value out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]
