"""The flags of ``orchestrator [run]`` (project, budget, models, run store,
observability) and of ``orchestrator resume`` (the run store, higher caps,
observability)."""

from __future__ import annotations

import argparse

from .errors import OneLineParser


def build_parser(command: str = "run") -> argparse.ArgumentParser:
    """The flags of ``orchestrator [run]``; ``command="models"`` adds ``--json``."""
    p = OneLineParser(
        prog="orchestrator models" if command == "models" else "orchestrator",
        description="Decompose a project into tasks and run them across LLM providers with critique, "
        "scoring, budgets and observable events.",
        epilog="Exit codes: 0 success; 1 partial success, failure, budget exhausted or timed out; "
        "2 bad usage or input; 3 the policies leave the project no model (nothing spent); "
        "130 interrupted. Subcommands: 'orchestrator models' lists the "
        "model catalog; 'orchestrator policy check FILE' validates a policy or project file; "
        "'orchestrator resume ID' goes on with a stopped run; 'orchestrator runs' lists past runs "
        "('runs show ID', 'runs rm ID').",
    )
    run = p.add_argument_group("project")
    run.add_argument("--project", "-p", help="what to build (the project description)")
    run.add_argument(
        "--criteria",
        "-c",
        help="success criteria; Python lines (an assert, or an expression such as "
        "'add(1, 1) == 2') are run as acceptance checks against the code, prose goes to "
        "the evaluator",
    )
    run.add_argument(
        "--file",
        "-f",
        metavar="YAML",
        help="project file (keys: project, criteria, budget_usd, time_seconds, concurrency, "
        "output_dir, tasks, policies, remediation, validators)",
    )
    run.add_argument(
        "--policy",
        metavar="FILE",
        help="policy file (YAML or JSON): global policies and per-task-type / per-task overrides, "
        "applied on top of the project file's; check one with 'orchestrator policy check FILE'",
    )
    run.add_argument("--budget", "-b", type=float, help="max spend in USD (default 8.0)")
    run.add_argument("--time", "-t", type=float, help="max wall-clock seconds (default 5400)")
    run.add_argument("--concurrency", type=int, help="tasks run at once (default 4)")
    run.add_argument("--output-dir", "-o", help="write one file per task and summary.json here")
    run.add_argument("--model", help="use only this catalog model for every role")
    run.add_argument("--local-model", metavar="PATH", help="GGUF file for the embedded local model")
    run.add_argument(
        "--provider-url",
        metavar="URL",
        help="an OpenAI-compatible server (Ollama, vLLM, llama.cpp), e.g. "
        "http://127.0.0.1:11434/v1; needs --model NAME (the server's model name)",
    )
    run.add_argument(
        "--list-models",
        action="store_true",
        help="print the model catalog (prices, context, available or why not) and exit",
    )
    run.add_argument(
        "--catalog",
        metavar="FILE",
        help="your catalog file (TOML): add models, override prices, context windows or "
        "deprecation, reorder routing; default: catalog.toml in the user config directory",
    )
    run.add_argument(
        "--update-prices",
        action="store_true",
        help="fetch the newest genai-prices data before starting (network; also "
        "ORCHESTRATOR_UPDATE_PRICES=1); default: the snapshot bundled with genai-prices",
    )
    if command == "models":
        run.add_argument("--json", action="store_true", help="print the catalog and the routing candidates as JSON")
    run.add_argument("--max-tasks", type=int, help="upper bound of the decomposition (1..15)")
    run.add_argument(
        "--profile",
        choices=("auto", "local", "full"),
        default="auto",
        help="how much machinery a run spends. local: for the embedded 135M model (a request "
        "naming one function/class/file is one task; small plans and token caps; no "
        "review of a draft that passes the criteria's checks). full: decomposition, "
        "generate-critique-revise-evaluate. auto (default): local when the planner is the "
        "embedded model, else full",
    )
    run.add_argument("--cache-dir", help="response cache directory (default: the user cache dir)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr")
    add_state_dir(run)
    add_sandbox(run)
    add_observability(p)
    return p


def add_sandbox(group: argparse._ActionsContainer, resume: bool = False) -> None:
    from ..governance.sandbox import SANDBOX_CHOICES

    default = "the run's own choice" if resume else "auto"
    group.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default=None,
        help="where model-written code and acceptance checks run: bwrap (bubblewrap namespaces), "
        "unshare (the same, built with util-linux unshare), auto (bwrap, else unshare; a run "
        "refuses to start when neither works), none (NO isolation: the code can read your "
        f"files and environment, reach the network and kill the run); default: {default}",
    )


def add_state_dir(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        help="run store directory (default: $ORCHESTRATOR_STATE_DIR, else the user data dir, "
        "e.g. ~/.local/share/multi-llm-orchestrator)",
    )


def build_resume_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="orchestrator resume",
        description="Go on with a stopped run from its last checkpoint: completed and degraded tasks keep "
        "their results, every other task runs; the budget and the time cap go on from what the "
        "earlier attempts used.",
        epilog="Exit codes as for a run; 0 with a message when the run had already finished; 2 for an unknown "
        "id, a run another process is running now, or an unreadable store.",
    )
    p.add_argument(
        "project_id", metavar="PROJECT_ID", help="the id a run printed when it started (see 'orchestrator runs')"
    )
    run = p.add_argument_group("run")
    add_state_dir(run)
    run.add_argument("--budget", "-b", type=float, help="raise the spend cap to USD (default: the original cap)")
    run.add_argument(
        "--time",
        "-t",
        type=float,
        help="raise the wall-clock cap to SECONDS, counted over all attempts (default: the original)",
    )
    run.add_argument("--output-dir", "-o", help="write results here instead of the original run's output dir")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging on stderr")
    add_sandbox(run, resume=True)
    add_observability(p)
    return p


def add_observability(p: argparse.ArgumentParser) -> None:
    obs = p.add_argument_group("observability")
    obs.add_argument(
        "--tracing",
        action="store_true",
        help="OpenTelemetry tracing (needs the 'tracing' extra); without --otlp-endpoint the span "
        "tree is printed after the summary",
    )
    obs.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export spans over OTLP to this collector, e.g. http://127.0.0.1:4317 (implies --tracing)",
    )
    obs.add_argument(
        "--otlp-protocol",
        choices=("grpc", "http/protobuf"),
        help="OTLP protocol (default: OTEL_EXPORTER_OTLP_PROTOCOL, else from the URL)",
    )
    obs.add_argument(
        "--service-name",
        help="service.name resource attribute (default: OTEL_SERVICE_NAME, else multi-llm-orchestrator)",
    )
    obs.add_argument(
        "--otlp-timeout",
        metavar="SECONDS",
        help="deadline of one export, in seconds (default: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT or "
        "OTEL_EXPORTER_OTLP_TIMEOUT in milliseconds, else 10); the final flush waits for it "
        "plus a second, at most 30 s",
    )
    obs.add_argument("--sample-rate", type=float, help="trace sampling ratio 0..1 (default 1.0)")
    obs.add_argument(
        "--capture-content", action="store_true", help="record prompt and completion text in spans (off by default)"
    )
    obs.add_argument(
        "--metrics",
        action="store_true",
        help="also export OpenTelemetry metrics (tokens, durations, cost, tasks) to the OTLP endpoint",
    )
    obs.add_argument(
        "--observer",
        action="append",
        default=[],
        metavar="SPEC",
        help="subscribe an observer: package.module:factory or an entry-point name of the "
        "'orchestrator.observers' group (repeatable)",
    )
    obs.add_argument("--events-jsonl", metavar="FILE", help="write every event as a JSON line to FILE")
    obs.add_argument(
        "--report",
        metavar="FILE",
        help="at the end (also after Ctrl-C or a failure) write the run's report to FILE: one "
        "self-contained HTML file (see 'orchestrator report')",
    )
    obs.add_argument("--quiet", "-q", action="store_true", help="no live progress display")
