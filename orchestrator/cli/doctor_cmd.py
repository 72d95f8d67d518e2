"""``orchestrator doctor``: one screen that says what this install is and whether the
default run can work here - for the user, or pasted into a bug report (``--json``).

Exit 0 when everything the default run needs works; 1 otherwise, with the failing
lines first.  What the default run needs: this package, a usable model (the embedded
one when no provider key is set: its file, and one real generation in its worker), a
usable state dir and cache dir, a catalog file that loads, and - when one is set - an
OTLP endpoint that accepts a connection (spans sent nowhere are lost silently).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from . import doctor_checks as checks
from .errors import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, OneLineParser, UsageError, one_line

MARKS = {checks.FAIL: "FAIL", checks.WARN: "warn", checks.OK: "ok", checks.INFO: "-"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="orchestrator doctor", description="What this install is, and whether the default run works here."
    )
    parser.add_argument("--json", action="store_true", help="the same, as JSON (for bug reports)")
    parser.add_argument("--local-model", metavar="PATH", help="check this GGUF file instead of the embedded one")
    parser.add_argument("--state-dir", metavar="DIR", help="the run store directory to check")
    parser.add_argument("--cache-dir", metavar="DIR", help="the response cache directory to check")
    parser.add_argument("--catalog", metavar="FILE", help="the catalog file to check")
    parser.add_argument("--otlp-endpoint", metavar="URL", help="the OTLP endpoint to check (default: OTEL_* variables)")
    parser.add_argument("--no-self-test", action="store_true", help="skip the local model's test generation")
    return parser


def gather(args: argparse.Namespace) -> list[checks.Finding]:
    findings = checks.versions() + checks.cpu()
    keys, remote = checks.provider_keys()
    findings += checks.local_model(args.local_model, not args.no_self_test, needed=not remote)
    findings += keys
    findings += checks.state_dir(args.state_dir) + checks.cache_dir(args.cache_dir)
    findings += checks.catalog_file(args.catalog) + checks.otlp_endpoint(args.otlp_endpoint)
    findings += checks.sandbox()
    return findings


def doctor_main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    findings = gather(args)
    failing = [f for f in findings if f.status == checks.FAIL]
    ordered = failing + [f for f in findings if f.status != checks.FAIL]
    code = EXIT_RUN_FAILED if failing else EXIT_OK
    if args.json:
        print(json.dumps({"ok": not failing, "exit_code": code, "findings": [asdict(f) for f in ordered]}, indent=2))
        return code
    width = max(len(f.name) for f in ordered)
    for finding in ordered:
        print(f"{MARKS[finding.status]:<4}  {finding.name:<{width}}  {finding.detail}")
    verdict = (
        f"{len(failing)} problem{'s' if len(failing) != 1 else ''}: the default run cannot work here"
        if failing
        else "the default run can work here"
    )
    print(f"doctor: {verdict}")
    return code
