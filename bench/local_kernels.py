"""llama.cpp's fast CPU kernels against the safe mode, on this machine.

Two worker processes of the embedded model run side by side: one with llama.cpp's
"extra buffer types" (the AMX and weight-repacking kernels) on, one in the safe mode
(``use_extra_bufts`` off).  Rounds alternate between them so both see the same machine
load; each round generates the same output (temperature 0) for the same prompt.

Printed: tokens/s of each (output tokens over the worker's generation time, prompt
processing included), per round and median, and the ratio safe/fast.  Where the CPU
has AMX the fast worker would crash on its first generation: the bench says so and
measures the safe mode only.

    .venv/bin/python bench/local_kernels.py            # 5 rounds
    .venv/bin/python bench/local_kernels.py --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "Write a long story about a robot who learns to paint, in many short paragraphs."


def main() -> int:
    from orchestrator.llm.providers.cpu_features import KernelChoice, choose_kernels, cpu_flags, cpu_model
    from orchestrator.llm.providers.local import default_model_path, thread_count
    from orchestrator.llm.providers.local_worker import LocalWorker, WorkerCrashed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    path = default_model_path()
    threads = thread_count(path)
    auto = choose_kernels(cpu_flags())
    workers = {"safe": LocalWorker(path, 2048, threads, KernelChoice(True, "bench"))}
    if not auto.safe_mode:
        workers["fast"] = LocalWorker(path, 2048, threads, KernelChoice(False, "bench"))
    payload = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": args.tokens,
        "temperature": 0.0,
        "repeat_penalty": 1.0,
        "schema": None,
        "seed": 1,
    }
    speeds: dict[str, list[float]] = {name: [] for name in workers}
    print(
        f"CPU: {cpu_model()}; automatic choice: {'safe' if auto.safe_mode else 'fast'} ({auto.reason}); "
        f"{threads} thread(s)"
    )
    for worker in workers.values():  # load both and warm up: the first call pays one-time setup
        worker.generate({**payload, "max_tokens": 4}, 120, threading.Event())
    for round_ in range(1, args.rounds + 1):
        line = []
        for name, worker in workers.items():
            try:
                reply = worker.generate(payload, 300, threading.Event())
            except WorkerCrashed as exc:
                print(f"the {name} worker crashed: {exc}")
                return 1
            speed = reply["output_tokens"] / (reply["generation_ms"] / 1000)
            speeds[name].append(speed)
            line.append(f"{name} {reply['output_tokens']} tokens {speed:.1f} tok/s")
        print(f"round {round_}: " + "; ".join(line))
    for worker in workers.values():
        worker.stop()
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    summary = ", ".join(f"{name} {value:.1f} tok/s" for name, value in medians.items())
    if "fast" in medians:
        print(f"local kernels: median {summary}; safe/fast ratio {medians['safe'] / medians['fast']:.2f}")
    else:
        print(f"local kernels: median {summary}; fast kernels not measured (they crash on this CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
