"""Which CPU features matter to llama.cpp here, and whether its fast kernels are safe.

llama.cpp picks "extra buffer types" for the weights when the CPU has them: the AMX
kernels on Intel Xeons with AMX, and weight-repacking kernels (AVX2/AVX-512, ARM).  On
CPUs with AMX the kernels built by ``pip install llama-cpp-python`` 0.3.x crash
(SIGSEGV in decode) on any prompt of two or more tokens, and give wrong results with
Q4_0/Q4_1 weights (ggml-org/llama.cpp issue 20824, PR 16315).  So: where the CPU has
AMX, the worker starts in the *safe mode* (``use_extra_bufts`` off); everywhere else
the fast kernels stay on, and a crash in them switches to the safe mode for the rest of
the process (see :mod:`.local_worker`).

The flags come from ``/proc/cpuinfo`` (Linux) and from llama.cpp's own system info
(what its build uses), so a test can fake either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPUINFO_ENV = "ORCHESTRATOR_CPUINFO"
"""Read CPU flags from this file instead of ``/proc/cpuinfo`` (tests fake a CPU with it)."""
SAFE_MODE_ENV = "ORCHESTRATOR_LOCAL_SAFE_MODE"
"""``auto`` (default), ``on`` (never use the extra buffer types) or ``off`` (always use them)."""
SAFE_MODE_CHOICES = ("auto", "on", "off")

RISKY_FLAGS = ("amx_int8", "amx_tile", "amx_bf16")
"""/proc/cpuinfo flags of the kernels known to crash."""
RISKY_SYSTEM_INFO = ("AMX_INT8 = 1",)
"""The same, as llama.cpp's ``llama_print_system_info()`` says it."""
SHOWN_FLAGS = (
    "avx",
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "f16c",
    "fma",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "sve",
)
"""The flags ``orchestrator doctor`` lists: the ones llama.cpp's CPU kernels are chosen by."""


def cpuinfo_path() -> Path:
    return Path(os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo")


def cpu_flags(path: Path | None = None) -> frozenset[str]:
    """The CPU's feature flags (the first ``flags``/``Features`` line); empty when unknown."""
    try:
        text = (path or cpuinfo_path()).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(path: Path | None = None) -> str:
    try:
        text = (path or cpuinfo_path()).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()
    return "unknown"


@dataclass(frozen=True, slots=True)
class KernelChoice:
    """Whether the worker may use llama.cpp's extra buffer types, and why."""

    safe_mode: bool
    reason: str


def safe_mode_setting() -> str:
    """``ORCHESTRATOR_LOCAL_SAFE_MODE``, normalised (``auto`` when unset or not a choice:
    the CLI refuses a bad value before a run, see :func:`setting_problem`)."""
    value = os.environ.get(SAFE_MODE_ENV, "auto").strip().lower() or "auto"
    return value if value in SAFE_MODE_CHOICES else "auto"


def choose_kernels(flags: frozenset[str], system_info: str = "", setting: str | None = None) -> KernelChoice:
    """The safe mode is on where the user asked for it, or where the CPU (or llama.cpp's
    build) has the AMX kernels; off elsewhere, or where the user insists."""
    setting = setting if setting is not None else safe_mode_setting()
    if setting == "on":
        return KernelChoice(True, f"{SAFE_MODE_ENV}=on")
    if setting == "off":
        return KernelChoice(False, f"{SAFE_MODE_ENV}=off")
    risky = [flag for flag in RISKY_FLAGS if flag in flags]
    if risky:
        return KernelChoice(True, f"the CPU has {', '.join(risky)} (llama.cpp's AMX kernels crash on it)")
    if any(marker in system_info for marker in RISKY_SYSTEM_INFO):
        return KernelChoice(True, "llama.cpp was built with its AMX kernels, which crash")
    return KernelChoice(False, "no CPU feature with known-bad kernels")


def setting_problem(value: str | None = None) -> str | None:
    """Why ``ORCHESTRATOR_LOCAL_SAFE_MODE`` is not a valid setting (None when it is)."""
    value = (value if value is not None else os.environ.get(SAFE_MODE_ENV, "auto")).strip().lower() or "auto"
    if value in SAFE_MODE_CHOICES:
        return None
    return f"{SAFE_MODE_ENV} must be one of {', '.join(SAFE_MODE_CHOICES)}, not {value!r}"
