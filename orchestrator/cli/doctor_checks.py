"""What ``orchestrator doctor`` asks each part about itself.

Each function returns :class:`Finding`s: ``ok``, ``info`` (a fact), ``warn`` (works,
but worth knowing) or ``fail`` (what the default run needs does not work).  Nothing
here writes a file: directories that do not exist yet are reported as "created on the
first run", stores and caches are opened read-only.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    status: str
    detail: str
    data: Mapping[str, object] = field(default_factory=dict)
    """JSON-ready facts for `doctor --json`."""


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> list[Finding]:
    from ..llm.pricing import price_data_summary

    found = [
        Finding(
            "python",
            INFO,
            f"{platform.python_version()} ({sys.executable})",
            {"version": platform.python_version(), "executable": sys.executable},
        )
    ]
    for label, package, needed in (
        ("orchestrator", "multi-llm-orchestrator", True),
        ("llama-cpp-python", "llama-cpp-python", False),
        ("opentelemetry-sdk", "opentelemetry-sdk", False),
    ):
        version = _version(package)
        found.append(
            Finding(
                label, INFO if version else (FAIL if needed else WARN), version or "not installed", {"version": version}
            )
        )
    prices = price_data_summary()
    found.append(Finding("price data", INFO, prices["label"], prices))
    return found


def cpu() -> list[Finding]:
    from ..llm.providers.cpu_features import SHOWN_FLAGS, choose_kernels, cpu_flags, cpu_model, setting_problem

    flags = cpu_flags()
    shown = [flag for flag in SHOWN_FLAGS if flag in flags]
    system_info = ""
    try:
        import llama_cpp

        system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except ImportError:
        pass
    choice = choose_kernels(flags, system_info)
    found = [
        Finding(
            "cpu",
            INFO,
            f"{cpu_model()}, {os.cpu_count()} cores; {' '.join(shown) or 'no listed flags'}",
            {"model": cpu_model(), "cores": os.cpu_count(), "flags": shown, "llama_cpp": system_info},
        ),
        Finding(
            "safe mode",
            INFO,
            f"{'on' if choice.safe_mode else 'off'}: {choice.reason}",
            {"on": choice.safe_mode, "reason": choice.reason},
        ),
    ]
    problem = setting_problem()
    if problem:
        found.append(Finding("safe mode setting", FAIL, problem))
    return found


def provider_keys() -> tuple[list[Finding], bool]:
    """The key variables that are set, by name only; and whether any remote provider has one."""
    from ..llm.providers.anthropic import AnthropicProvider
    from ..llm.providers.google import GoogleProvider
    from ..llm.providers.openai_compat import PRESETS
    from ..llm.providers.secrets import load_dotenv

    load_dotenv()  # as a run does: ./.env fills unset variables
    names = [name for preset in PRESETS.values() for name in preset.key_envs]
    names += [*AnthropicProvider.key_envs, *GoogleProvider.key_envs]
    present = [name for name in dict.fromkeys(names) if os.environ.get(name, "").strip()]
    detail = ", ".join(present) if present else "none set: every role goes to the embedded model"
    return [Finding("provider keys", INFO, detail, {"set": present})], bool(present)


def local_model(model_path: str | None, self_test: bool, needed: bool) -> list[Finding]:
    """The embedded model's file, and one short generation in its worker process."""
    from ..llm.providers.base import ProviderError
    from ..llm.providers.local import LocalProvider

    severity = FAIL if needed else WARN
    provider = LocalProvider(model_path)
    available, why = provider.availability("")
    if not available:
        return [Finding("local model", severity, why)]
    path = provider.model_path
    found = [Finding("local model", OK, str(path), {"path": str(path), "bytes": path.stat().st_size})]
    if not self_test:
        return found
    worker = provider.worker()
    try:
        reply = provider.self_test()
    except ProviderError as exc:
        found.append(Finding("self-test", severity, f"{exc.error_type}: {exc}", {"crashes": worker.crashes}))
        return found
    ready = worker.ready or {}
    speed = reply.get("tokens_per_second")
    detail = (
        f"{reply['output_tokens']} tokens in {reply['generation_ms'] / 1000:.2f}s"
        f"{f' ({speed} tokens/s)' if speed else ''} in worker pid {ready.get('pid')}, model loaded in "
        f"{float(ready.get('load_ms', 0)) / 1000:.2f}s, fast kernels {'off' if worker.safe_mode else 'on'}"
    )
    status = OK
    if worker.crashes:
        status = WARN
        detail += f"; the worker crashed first ({', '.join(worker.crashes)}) and was restarted"
    found.append(
        Finding(
            "self-test",
            status,
            detail,
            {
                "output_tokens": reply["output_tokens"],
                "generation_ms": reply["generation_ms"],
                "tokens_per_second": speed,
                "load_ms": ready.get("load_ms"),
                "pid": ready.get("pid"),
                "safe_mode": worker.safe_mode,
                "use_extra_bufts": ready.get("use_extra_bufts"),
                "crashes": list(worker.crashes),
            },
        )
    )
    return found


def state_dir(directory: str | None) -> list[Finding]:
    from ..state.paths import DB_NAME, default_state_dir

    where = Path(directory).expanduser() if directory else default_state_dir()
    problem = _directory_problem(where)
    if problem:
        return [Finding("state dir", FAIL, f"{where}: {problem}", {"path": str(where)})]
    if not where.exists():
        return [Finding("state dir", OK, f"{where} (created on the first run)", {"path": str(where)})]
    store = where / DB_NAME
    if not store.exists():
        return [Finding("state dir", OK, f"{where} (no runs yet)", {"path": str(where)})]
    try:
        with open(store, "rb") as fh:
            header = fh.read(16)
        if header != b"SQLite format 3\x00":
            raise sqlite3.DatabaseError("not an SQLite database" if header else "the file is empty")
        db = sqlite3.connect(f"file:{quote(str(store))}?mode=ro", uri=True, timeout=5)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            runs = db.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        finally:
            db.close()
    except (OSError, sqlite3.Error) as exc:
        return [Finding("state dir", FAIL, f"{store}: cannot read the run store ({exc})", {"path": str(where)})]
    return [Finding("state dir", OK, f"{where} ({runs} runs)", {"path": str(where), "runs": runs})]


def _directory_problem(where: Path) -> str | None:
    """Why a directory we need cannot be used (None when it is, or can be made)."""
    if where.exists():
        if not where.is_dir():
            return "not a directory"
        if not os.access(where, os.R_OK | os.W_OK | os.X_OK):
            return "not readable and writable by this user"
        return None
    ancestor = where
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot be made: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot be made: {ancestor} is not writable"
    return None


def cache_dir(directory: str | None) -> list[Finding]:
    from ..llm.cache import CacheError, check_cache_dir

    try:
        path = check_cache_dir(directory)
    except CacheError as exc:
        return [Finding("cache dir", FAIL, str(exc))]
    return [Finding("cache dir", OK, str(path.parent), {"path": str(path.parent)})]


def catalog_file(path: str | None) -> list[Finding]:
    from ..domain.errors import ConfigError
    from ..llm import catalog

    chosen = path or (str(catalog.default_user_catalog()) if catalog.default_user_catalog().is_file() else None)
    if chosen is None:
        return [
            Finding(
                "catalog",
                OK,
                f"the shipped catalog ({len(catalog.CATALOG)} models); no user file at "
                f"{catalog.default_user_catalog()}",
                {"files": catalog.catalog_files()},
            )
        ]
    with catalog.preserved():
        try:
            catalog.use_catalog_files([chosen])
        except (ConfigError, OSError) as exc:
            return [Finding("catalog", FAIL, f"{chosen}: {exc}", {"files": [chosen]})]
        models = len(catalog.CATALOG)
    return [Finding("catalog", OK, f"{chosen} on the shipped catalog ({models} models)", {"files": [chosen]})]


def otlp_endpoint(flag: str | None) -> list[Finding]:
    """The endpoint a ``--tracing`` run would export to, and whether it takes a connection."""
    from ..otel.config import TracingConfig, resolve_config

    try:
        resolved = resolve_config(TracingConfig(enabled=True, otlp_endpoint=flag))
    except ValueError as exc:
        return [Finding("otlp endpoint", FAIL, str(exc))]
    if resolved.endpoint is None:
        return [Finding("otlp endpoint", INFO, "none: --tracing prints the span tree", {"endpoint": None})]
    where = f"{resolved.endpoint} ({resolved.protocol}, from {resolved.endpoint_source})"
    parts = urlsplit(resolved.endpoint if "//" in resolved.endpoint else f"//{resolved.endpoint}")
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 4317 if resolved.protocol == "grpc" else 4318)
    data = {"endpoint": resolved.endpoint, "protocol": resolved.protocol, "source": resolved.endpoint_source}
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return [
            Finding(
                "otlp endpoint",
                FAIL,
                f"{where}: no connection to {host}:{port} ({reason}); spans would be dropped",
                {**data, "reachable": False},
            )
        ]
    return [Finding("otlp endpoint", OK, f"{where}: accepts connections", {**data, "reachable": True})]


def sandbox() -> list[Finding]:
    """Which isolation levels work here (each probed from inside); without one, the
    default run refuses to execute model-written code."""
    from ..governance.sandbox import probe

    search = os.environ.get("PATH", os.defpath)
    levels = {level: probe(level, search) for level in ("bwrap", "unshare")}
    works = [level for level, why in levels.items() if why is None]
    data = {"levels": {level: why or "works" for level, why in levels.items()}, "auto": works[0] if works else None}
    detail = "; ".join(f"{level}: {why or 'works'}" for level, why in levels.items())
    if not works:
        return [
            Finding(
                "sandbox",
                FAIL,
                f"no level works ({detail}); runs refuse to execute model-written code unless --sandbox none",
                data,
            )
        ]
    return [Finding("sandbox", OK, f"{works[0]} (auto); {detail}", data)]
