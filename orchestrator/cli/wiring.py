"""Wiring: building the client, the engine and the provider adapters from the flags.

The only place where parts are put together (the engine never builds its own
providers from flags, the observers never see the engine).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..domain.errors import ConfigError
from .errors import UsageError
from .project_file import RunOptions

if TYPE_CHECKING:
    from ..domain.budget import Budget
    from ..engine.checkpoints import CheckpointStore
    from ..engine.orchestrator import Orchestrator
    from ..llm.client import UnifiedClient
    from ..llm.providers.base import Provider


def build_orchestrator(
    opts: RunOptions,
    args: argparse.Namespace,
    *,
    store: CheckpointStore | None = None,
    run_settings: Mapping[str, object] | None = None,
    budget: Budget | None = None,
) -> Orchestrator:
    """The engine of one run.  ``budget``: the run's own (a batch's project gets one that
    shares the batch ledger), else one of the options' caps."""
    from ..domain.budget import Budget
    from ..engine import Orchestrator
    from ..governance.config import RunConfig
    from ..llm.cache import ResponseCache
    from ..llm.client import UnifiedClient

    cache = None if args.no_cache else ResponseCache(args.cache_dir)
    client = UnifiedClient(build_providers(args), cache=cache, concurrency=max(opts.concurrency, 1) * 2)
    orch = Orchestrator(
        budget=budget or Budget(opts.budget_usd, opts.time_seconds),
        client=client,
        concurrency=opts.concurrency,
        only_model=args.model,
        max_tasks=args.max_tasks,
        project_tasks=opts.tasks,
        profile=getattr(args, "profile", "auto") or "auto",
        store=store,
        run_settings=run_settings,
        sandbox=getattr(args, "resolved_sandbox", None) or getattr(args, "sandbox", None) or "auto",
        **(opts.config or RunConfig()).engine_kwargs(),
    )
    return orch


def setup_catalog(args: argparse.Namespace) -> list[str]:
    """The user's catalog file (``--catalog FILE``, else the default location if it
    exists) on top of ours, then, when asked, the newest price data.  A bad file raises
    :class:`ConfigError` (one line, exit 2); a failed price update is only a warning (the
    bundled prices stay).  Returns the warning lines."""
    from ..llm import catalog, pricing

    path = getattr(args, "catalog", None)
    if path is None and catalog.default_user_catalog().is_file():
        path = str(catalog.default_user_catalog())
    warnings = catalog.use_catalog_files([path] if path else [])
    if pricing.update_requested(getattr(args, "update_prices", False)):
        try:
            pricing.update_prices()
        except ValueError as exc:
            warnings.append(f"{exc}; using the {pricing.snapshot_label()}")
            return warnings
        try:
            warnings = catalog.reload()
        except ConfigError as exc:  # the fetched data lacks what the catalog needs: keep the bundled
            pricing.use_bundled_prices()
            warnings = catalog.reload()
            warnings.append(
                f"the fetched price data does not fit the catalog ({exc}); using the {pricing.snapshot_label()}"
            )
    return warnings


def build_providers(args: argparse.Namespace) -> dict[str, Provider]:
    from ..llm.providers.registry import default_providers

    return default_providers(args.local_model, server_url=getattr(args, "provider_url", None))


def setup_server(args: argparse.Namespace) -> None:
    """``--provider-url URL --model NAME``: check the URL, reach the server, and put NAME
    in the catalog as a model of the ``server`` provider for this run."""
    if not getattr(args, "provider_url", None):
        return
    from ..llm.catalog import register_model
    from ..llm.providers.registry import check_server_url, probe_server, server_model_info

    if not args.model:
        raise UsageError("--provider-url needs --model NAME (the model name the server serves)")
    args.provider_url = check_server_url(args.provider_url)
    probe_server(args.provider_url)
    register_model(server_model_info(args.model, args.provider_url))


def check_model_choice(args: argparse.Namespace) -> UnifiedClient:
    """``--local-model`` is a GGUF file; ``--model``: known, not deprecated, priced,
    reachable; else one line (exit 2).  Returns the client the checks used (for the
    later checks; the run builds its own)."""
    from ..domain.budget import Budget
    from ..llm.catalog import CATALOG
    from ..llm.client import UnifiedClient
    from ..llm.providers.cpu_features import setting_problem
    from ..llm.providers.local import gguf_problem

    unsafe_setting = setting_problem()
    if unsafe_setting is not None:
        raise UsageError(unsafe_setting)
    if args.local_model:
        problem = gguf_problem(args.local_model)
        if problem is not None:
            raise UsageError(f"--local-model: {problem}")
    client = UnifiedClient(build_providers(args), budget=Budget())  # a run always has a USD budget
    if args.model:
        if args.model not in CATALOG:
            raise UsageError(f"--model: unknown model {args.model!r} (see 'orchestrator models')")
        retired = CATALOG[args.model].retirement()
        if retired is not None:
            raise UsageError(
                f"--model {args.model} is {retired} (to use it anyway, set deprecated = false "
                "for it in your catalog file)"
            )
        ok, why = client.availability(args.model)
        if not ok:
            raise UsageError(f"--model {args.model} is not usable here: {why}")
    elif not any(client.is_usable(name) for name in CATALOG):
        ok, why = client.availability("smollm2-135m")
        raise UsageError(f"no usable model: set a provider API key, or {why}")
    return client


def start_local_model(args: argparse.Namespace, client: UnifiedClient) -> None:
    """Start the embedded model's worker now when the run plans with it (no key set, or
    ``--model`` names it): the model loads in its own process while the observers are set
    up and the run begins, instead of on the first call."""
    from ..llm.catalog import get_model
    from ..llm.providers.local import LocalProvider
    from ..llm.routing import Router

    planners = Router(client, args.model).planner_candidates()
    if planners and get_model(planners[0]).is_local:
        provider = client.provider_for(get_model(planners[0]))
        if isinstance(provider, LocalProvider):
            provider.start()
