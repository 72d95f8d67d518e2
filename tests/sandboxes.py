"""The sandbox levels this machine offers, for tests parametrized over each of them, and
a look at the host's processes from outside any sandbox."""

from __future__ import annotations

import os

import pytest

from orchestrator.governance.sandbox import Sandbox, probe

OFFERED = [level for level in ("bwrap", "unshare") if probe(level) is None]
"""The isolation levels that work here (CI installs bubblewrap; unshare works where user
namespaces are allowed).  ``tests/security/test_levels.py`` fails when it is empty, or
when bwrap is installed but missing from it, so no run goes green testing nothing."""

BOXES = [pytest.param(Sandbox(level), id=level) for level in OFFERED]


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (zombies count as gone)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found
