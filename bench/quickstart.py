"""The quick start, timed: README's first command on the embedded model, N times, each on a
fresh cache, against the model's own speed measured in the same run.

Each run is the real CLI in a subprocess (``orchestrator -p "Write a Python function add(a,
b) that returns a + b" -c "add(1, 1) == 2" --tracing``, plus a fresh ``--cache-dir``, an
``--output-dir`` and ``--events-jsonl`` to read what it did).  Printed per run: wall time,
LLM calls, input/output tokens, the project status, the acceptance checks.

The baseline: one plain llama-cpp-python call of the same GGUF, with the same thread
count, generating exactly the run's output tokens (end of text suppressed), timed right
after the run so both see the same machine load.  The ratio - the run's wall time over
that call's time - says how far the orchestration (process start, model load, planning,
the sandboxed checks, the summary and span tree) is from the model's own speed.

The worker's cost: the embedded model runs in a worker process, so a run pays a
process start, the llama_cpp import and the model load there instead of in its own
process.  Measured apart, N times: a fresh worker from spawn to its first token, against
the plain in-process load of the same GGUF (the CLI starts the worker before the run, so
most of it overlaps with the run's own start).

The machine's load is printed too (the 1-minute load average and how idle the CPUs were
during the runs, from /proc/stat): on a shared machine the figures move with it.

    .venv/bin/python bench/quickstart.py            # 3 runs
    .venv/bin/python bench/quickstart.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROJECT = "Write a Python function add(a, b) that returns a + b"
CRITERIA = "add(1, 1) == 2"


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def run_once(workdir: Path) -> dict:
    cache, out, jsonl = workdir / "cache", workdir / "out", workdir / "events.jsonl"
    argv = [
        sys.executable,
        "-m",
        "orchestrator",
        "-p",
        PROJECT,
        "-c",
        CRITERIA,
        "--tracing",
        "--cache-dir",
        str(cache),
        "-o",
        str(out),
        "--events-jsonl",
        str(jsonl),
        "-q",
    ]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    wall = time.perf_counter() - started
    calls = [e for e in map(json.loads, jsonl.read_text().splitlines()) if e["signal"] == "llm_call_finished"]
    summary = json.loads((out / "summary.json").read_text())
    checks = [c for r in summary["results"].values() for c in r.get("checks", [])]
    return {
        "wall": wall,
        "exit": proc.returncode,
        "status": summary["status"],
        "tasks": len(summary["tasks"]),
        "calls": len(calls),
        "tokens_in": sum(c["attributes"].get("llm.tokens_in", 0) for c in calls),
        "tokens_out": sum(c["attributes"].get("llm.tokens_out", 0) for c in calls),
        "checks": f"{sum(1 for c in checks if c['passed'])}/{len(checks)}",
    }


class PlainModel:
    """The same GGUF in llama-cpp-python, as a user would call it directly."""

    def __init__(self) -> None:
        from llama_cpp import Llama

        from orchestrator.llm.providers.local import default_model_path, thread_count

        path = default_model_path()
        threads = thread_count(path)
        started = time.perf_counter()
        self.llm = Llama(model_path=str(path), n_ctx=8192, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.load_seconds = time.perf_counter() - started
        self.threads = threads
        self.generate(8)  # the first call pays one-time setup; the run's model pays it too, once

    def generate(self, tokens: int) -> float:
        """Seconds to generate exactly ``tokens`` tokens in one call."""
        eos = self.llm.token_eos()
        started = time.perf_counter()
        out = self.llm.create_completion("def add(a, b):", max_tokens=tokens, temperature=0.3, logit_bias={eos: -1e9})
        seconds = time.perf_counter() - started
        got = out["usage"]["completion_tokens"]
        if got != tokens:
            raise RuntimeError(f"baseline generated {got} tokens, wanted {tokens}")
        return seconds


def worker_ready_seconds() -> float:
    """A fresh worker process of the embedded model: spawn, import, load, one token."""
    import threading

    from orchestrator.llm.providers.local import default_model_path, thread_count
    from orchestrator.llm.providers.local_worker import LocalWorker

    path = default_model_path()
    worker = LocalWorker(path, 8192, thread_count(path))
    started = time.perf_counter()
    worker.start()
    reply = worker.generate(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "temperature": 0.0, "schema": None},
        60,
        threading.Event(),
    )
    seconds = time.perf_counter() - started - reply["generation_ms"] / 1000
    worker.stop()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = PlainModel()
    print(f"plain llama-cpp-python: load {model.load_seconds:.2f}s, {model.threads} thread(s)")
    runs, ratios = [], []
    load_before = os.getloadavg()[0]
    cpu_before = cpu_times()
    for index in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
            run = run_once(Path(tmp))
        baseline = model.generate(max(1, run["tokens_out"]))
        ratio = run["wall"] / baseline
        runs.append(run)
        ratios.append(ratio)
        print(
            f"run {index}: {run['wall']:.1f}s wall, exit {run['exit']}, {run['status']}, {run['tasks']} task(s), "
            f"{run['calls']} LLM call(s), {run['tokens_in']}/{run['tokens_out']} tokens, "
            f"checks {run['checks']}; plain generation of {run['tokens_out']} tokens {baseline:.2f}s; "
            f"ratio {ratio:.1f}"
        )
    cpu_after = cpu_times()
    busy = ""
    if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
        share = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
        busy = f", CPUs {share:.0%} busy during the runs (this bench included)"
    readies = [worker_ready_seconds() for _ in range(max(3, args.runs))]
    print(
        f"worker process: ready in median {statistics.median(readies):.2f}s (process start, import, load; "
        f"max {max(readies):.2f}s) vs in-process load {model.load_seconds:.2f}s: "
        f"cost {statistics.median(readies) - model.load_seconds:+.2f}s, started before the run"
    )
    walls = [r["wall"] for r in runs]
    outcomes = ", ".join(
        f"{s} x{n}"
        for s, n in sorted({s: sum(1 for r in runs if r["status"] == s) for s in {r["status"] for r in runs}}.items())
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after{busy}"
    )
    print(
        f"quickstart: median {statistics.median(walls):.1f}s wall (max {max(walls):.1f}s) over {len(runs)} "
        f"runs on fresh caches; outcomes: {outcomes}; wall / plain generation of the same output tokens: "
        f"median ratio {statistics.median(ratios):.1f}"
    )
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
