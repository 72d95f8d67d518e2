"""The pytest sandbox: run generated code with no network, a clean environment, and a
hard timeout that kills the whole process group.

Why each layer:

* an empty network namespace (``unshare -rn``: only a loopback interface, down) is
  what really holds; generated code can bypass any Python-level guard via ``_socket``;
* a ``sitecustomize`` that makes Python's socket connects, sends and name lookups raise
  is kept as a second layer, and is all there is where namespaces are not available;
* the environment holds no API key, proxy or user setting (only ``PATH``, ``LANG``, a
  temporary ``HOME`` and a few Python flags);
* the timeout kills the process group, so a child that forks does not outlive it.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..domain.errors import unknown

__all__ = ["IsolatedRun", "clean_env", "run_isolated", "network_namespace_available", "ISOLATION_MODES"]


_GUARD_SOURCE = textwrap.dedent('''\
    """Written by the orchestrator's pytest validator: no network from Python code."""
    import errno as _errno
    import socket as _socket

    _MESSAGE = "network access is disabled in the orchestrator's pytest validator"
    _INET = {_socket.AF_INET, getattr(_socket, "AF_INET6", _socket.AF_INET)}


    def _deny(*args, **kwargs):
        raise PermissionError(_errno.EACCES, _MESSAGE)


    def _guard(name):
        original = getattr(_socket.socket, name)

        def guarded(self, *args, **kwargs):
            if self.family in _INET:
                _deny()
            return original(self, *args, **kwargs)

        guarded.__name__ = name
        setattr(_socket.socket, name, guarded)


    for _name in ("connect", "connect_ex", "sendto", "sendmsg"):
        _guard(_name)
    for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "create_connection"):
        setattr(_socket, _name, _deny)
    ''')


@functools.lru_cache(maxsize=1)
def _namespace_prefix() -> tuple[str, ...] | None:
    """``unshare`` arguments that run a command in a new, empty network namespace (only a
    loopback interface, down), or None where Linux namespaces are not available."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for prefix in ((exe, "-rn"), (exe, "-n")):
        try:
            probe = subprocess.run([*prefix, sys.executable, "-S", "-c", "pass"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def network_namespace_available() -> bool:
    """True when subprocesses can be put in an empty network namespace (``unshare``)."""
    return _namespace_prefix() is not None


def clean_env(home: str, pythonpath: str | None = None) -> dict[str, str]:
    """No API key, proxy or user setting reaches generated code."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "TMPDIR": home,
           "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "NO_COLOR": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


@dataclass(frozen=True, slots=True)
class IsolatedRun:
    returncode: int | None
    output: str
    timed_out: bool
    isolation: str  # "namespace+guard", "guard" or "none"


def run_isolated(argv: list[str], workdir: str, *, timeout: float, isolation: str = "auto") -> IsolatedRun:
    """Run ``argv`` in ``workdir`` with no network and a clean environment; kill its
    whole process group at ``timeout`` seconds.

    ``isolation``: ``auto`` - an empty network namespace (``unshare -rn``) when
    available, always plus a ``sitecustomize`` that makes Python's socket connects,
    sends and name lookups raise; ``namespace`` - require the namespace; ``guard`` - the
    Python guard only; ``none`` - no network restriction (opt-in escape hatch).
    """
    if isolation not in ISOLATION_MODES:
        raise ValueError(unknown("isolation", isolation, ISOLATION_MODES))
    guard_dir = None
    label = "none"
    prefix: tuple[str, ...] = ()
    if isolation != "none":
        guard_dir = Path(workdir) / ".netguard"
        guard_dir.mkdir(exist_ok=True)
        (guard_dir / "sitecustomize.py").write_text(_GUARD_SOURCE, encoding="utf-8")
        label = "guard"
        if isolation in ("auto", "namespace"):
            ns = _namespace_prefix()
            if ns is not None:
                prefix, label = ns, "namespace+guard"
            elif isolation == "namespace":
                return IsolatedRun(None, "network namespace isolation is not available here (unshare -rn failed)",
                                   False, "none")
    pythonpath = os.pathsep.join(p for p in (str(guard_dir) if guard_dir else "", workdir) if p)
    env = clean_env(workdir, pythonpath)
    proc = subprocess.Popen([*prefix, *argv], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    _RUNNING.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return IsolatedRun(proc.returncode, out.decode("utf-8", "replace"), False, label)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild escaped the group and holds the pipe
            out = b""
            proc.kill()
        return IsolatedRun(None, (out or b"").decode("utf-8", "replace"), True, label)
    finally:
        _RUNNING.discard(proc)
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()


# Sandboxed processes run in their own session (so a timeout can kill the whole group),
# which also means a Ctrl-C on the terminal does not reach them: an interrupted run kills
# them itself, so the threads waiting for them return at once.
_RUNNING: set[subprocess.Popen[bytes]] = set()


def kill_running() -> int:
    """Kill every sandboxed process group still running (an interrupted run); how many."""
    procs = list(_RUNNING)
    for proc in procs:
        if proc.poll() is None:
            _kill_group(proc)
    return len(procs)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


ISOLATION_MODES = ("auto", "namespace", "guard", "none")
