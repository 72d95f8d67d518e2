"""The sandbox model-written code runs in: acceptance checks and the pytest validator.

Levels, strongest available first (``auto``):

* ``bwrap`` - bubblewrap builds the namespaces (user, pid, mount, net, ipc, uts), a
  read-only root holding only the system directories and Python, a private /dev,
  /proc and size-capped /tmp; no capability, no nested user namespace;
* ``unshare`` - the same view built by util-linux ``unshare`` and the harness itself
  (``mount``, ``pivot_root``, ``mount_setattr``, ``capset`` through ctypes), for
  machines without bubblewrap;
* ``none`` - no isolation at all (only a clean environment, limits and a timeout): the
  user has to ask for it, and is warned.

Wherever it runs, the code gets an environment holding nothing of ours, resource limits
(address space, processes, file size, open files, CPU time), a wall-clock timeout and a
capped capture of its output; its verdict comes back over a pipe only the harness holds
(see :mod:`.harness`, which runs first inside and is the only thing given that pipe).

Where no level works, :func:`resolve` raises :class:`SandboxUnavailable` (one line):
the command line turns it into exit 2 before any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain.errors import OrchestratorError

if TYPE_CHECKING:
    from .harness import Job

__all__ = [
    "LEVELS",
    "SANDBOX_CHOICES",
    "Limits",
    "Sandbox",
    "SandboxRun",
    "SandboxUnavailable",
    "clean_env",
    "current",
    "kill_running",
    "probe",
    "resolve",
    "using",
]

LEVELS = ("bwrap", "unshare", "none")
SANDBOX_CHOICES = ("auto", *LEVELS)
WORKDIR = "/tmp/work"
"""Where the code runs inside a namespaced sandbox (in its private, size-capped /tmp)."""
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
"""The host directories a sandbox sees (read-only), with Python's own directories."""
NOBODY = (65534, 65534)
"""The user and group the code runs as when the orchestrator runs as root."""
START_GRACE_SECONDS = 3.0
"""How much longer than the code's timeout the whole sandbox may take (start, teardown)."""
_HARNESS = Path(__file__).with_name("harness.py")


class SandboxUnavailable(OrchestratorError, ValueError):
    """No isolation level can run here (or not the one asked for): one line saying why."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-process limits of the code (rlimits), the size of its /tmp, and how much of
    its output is kept (head and tail; the middle is dropped and counted)."""

    memory_bytes: int = 1 << 30
    processes: int = 64
    file_bytes: int = 64 << 20
    open_files: int = 256
    tmp_bytes: int = 256 << 20
    output_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class SandboxRun:
    """What one run returned: the harness's records (one per check, or the command's
    ``returncode``), the captured output, whether the deadline passed, and ``error`` when
    the sandbox itself failed (not the code)."""

    records: tuple[dict[str, object], ...]
    output: str
    timed_out: bool
    level: str
    error: str = ""


def clean_env(home: str, pythonpath: str | None = None) -> dict[str, str]:
    """The whole environment of code we run: nothing of ours (no key, proxy or setting)."""
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home if home != WORKDIR else "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "NO_COLOR": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def layout() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """What a namespaced sandbox sees of the host, read-only: ``(symlinks, binds)``, each
    ``(link, target)`` / ``(source, destination)``.  The system directories, then Python's
    prefixes and site-packages where they lie elsewhere (a venv, pyenv under $HOME); the
    rest of the host (home directories, /tmp, /run and its sockets, /var) is not there."""
    symlinks: list[tuple[str, str]] = []
    binds: list[tuple[str, str]] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            symlinks.append((d, os.readlink(d)))
        elif os.path.isdir(d):
            binds.append((d, d))
    covered = [dest for _, dest in binds]
    for path in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *site.getsitepackages()):
        real = os.path.realpath(path)
        for dest in dict.fromkeys((path, real)):
            if os.path.isdir(real) and not _under(dest, covered):
                binds.append((real, dest))
                covered.append(dest)
    return symlinks, binds


def _parents(paths: Sequence[str]) -> list[str]:
    """The directories above ``paths`` (not ``/``), each once, parents first."""
    out: dict[str, None] = {}
    for path in paths:
        parts = Path(path).parts[1:-1]
        for i in range(1, len(parts) + 1):
            out["/" + "/".join(parts[:i])] = None
    return list(out)


@functools.lru_cache(maxsize=1)
def _harness_source() -> str:
    return _HARNESS.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Sandbox:
    """One isolation level, with its limits.  ``search_path`` is where ``bwrap`` and
    ``unshare`` are looked for (``PATH`` when None): a seam to simulate a machine without
    them."""

    level: str
    limits: Limits = field(default_factory=Limits)
    search_path: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown sandbox level {self.level!r} (known: {', '.join(LEVELS)})")

    @property
    def isolated(self) -> bool:
        return self.level != "none"

    def _prefix(self, job: Job) -> list[str]:
        """The command that enters the sandbox, before ``python -I -c <harness>``.  Run as
        root, no user namespace is made (root needs none) and the harness turns into
        ``NOBODY`` once the sandbox is built."""
        if self.level == "none":
            return []
        exe = shutil.which(self.level, path=self.search_path)
        if exe is None:
            raise FileNotFoundError(f"{self.level} is not installed")
        root = os.geteuid() == 0
        job["become"] = list(NOBODY) if root else None
        symlinks, binds = layout()
        if self.level == "unshare":
            job["setup"] = {
                "symlinks": symlinks,
                "binds": binds,
                "tmp_bytes": self.limits.tmp_bytes,
                "userns": not root,
            }
            user = [] if root else ["--user", "--map-root-user"]
            return [
                exe,
                *user,
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
                "--net",
                "--ipc",
                "--uts",
                "--propagation",
                "private",
                "--",
            ]
        argv = [
            exe,
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
        ]
        argv += (
            ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if root else ["--unshare-user", "--disable-userns"]
        )
        argv += ["--die-with-parent", "--new-session", "--as-pid-1"]
        # the sandbox's own /tmp before the binds: one below /tmp (a venv there) lands on it
        argv += ["--size", str(self.limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
        for link, target in symlinks:
            argv += ["--symlink", target, link]
        for parent in _parents([dest for _, dest in binds]):  # bwrap would make them 0700: not for NOBODY
            argv += ["--perms", "0755", "--dir", parent]
        for source, dest in binds:
            argv += ["--ro-bind", source, dest]
        argv += [
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--remount-ro",
            "/dev",
            "--size",
            str(1 << 20),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/",
            "--chdir",
            "/",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--",
        ]
        return argv

    def run(
        self,
        mode: str,
        files: Mapping[str, str],
        *,
        timeout: float,
        argv: Sequence[str] = (),
        count: int = 0,
        test_file: str = "",
    ) -> SandboxRun:
        """Run the harness in ``mode`` (``checks``, ``command`` or ``ping``) on ``files``
        (written into the code's work dir), for at most ``timeout`` seconds of the code's
        time.  Never raises for what the code does; a sandbox that cannot start is a
        :class:`SandboxRun` with ``error``."""
        with contextlib.ExitStack() as stack:
            if self.isolated:
                workdir = WORKDIR
            else:
                workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="orchestrator-sandbox-"))
            job: Job = {
                "mode": mode,
                "files": dict(files),
                "timeout": timeout,
                "argv": list(argv),
                "count": count,
                "test_file": test_file,
                "workdir": workdir,
                "pid_namespace": self.isolated,
                "env": clean_env(workdir, workdir),
                "limits": {
                    "memory_bytes": self.limits.memory_bytes,
                    "processes": self.limits.processes,
                    "file_bytes": self.limits.file_bytes,
                    "open_files": self.limits.open_files,
                    "cpu_seconds": max(1, int(timeout) + 1),
                },
            }
            try:
                prefix = self._prefix(job)
            except FileNotFoundError as exc:
                return SandboxRun((), "", False, self.level, str(exc))
            return self._execute([*prefix, sys.executable, "-I", "-c", _harness_source()], job, timeout)

    def _execute(self, command: list[str], job: Job, timeout: float) -> SandboxRun:
        read_end, write_end = os.pipe()
        job["result_fd"] = write_end
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_end)
            return SandboxRun((), "", False, self.level, f"cannot start the sandbox: {exc.strerror or exc}")
        finally:
            os.close(write_end)
        _RUNNING.add(proc)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            for fd in (proc.stdout.fileno(), read_end):  # fewer wake-ups for loud code
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
            with contextlib.suppress(BrokenPipeError):  # one line; stdin stays open: the harness's lifeline
                proc.stdin.write(json.dumps(job).encode() + b"\n")
                proc.stdin.flush()
            output, results, killed = _collect(
                proc,
                proc.stdout.fileno(),
                read_end,
                time.monotonic() + timeout + START_GRACE_SECONDS,
                self.limits.output_bytes,
            )
        finally:
            os.close(read_end)
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            _RUNNING.discard(proc)
            if proc.poll() is None:
                _kill(proc)
            proc.wait()
        records = []
        for line in results.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        error = next((str(r["error"]) for r in records if "error" in r and "index" not in r), "")
        if not records and not killed:
            last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
            if proc.returncode is not None and proc.returncode < 0:  # kill_running(): an interrupted run
                error = f"the sandbox was stopped (signal {-proc.returncode})"
            else:
                error = f"the sandbox failed to start (exit status {proc.returncode}): {last[:300] or 'no output'}"
        timed_out = killed or any(
            r.get("error_type") == "Timeout" or ("returncode" in r and r["returncode"] is None) for r in records
        )
        return SandboxRun(
            tuple(r for r in records if "error" not in r or "index" in r), output, timed_out, self.level, error
        )


def _collect(
    proc: subprocess.Popen[bytes], out_fd: int, result_fd: int, deadline: float, cap: int
) -> tuple[str, str, bool]:
    """Read the output (keeping its head and tail, ``cap`` bytes in all) and the result
    channel until both end; kill the sandbox at ``deadline``.  Returns (output, results,
    killed)."""
    head, tail, dropped = bytearray(), bytearray(), 0
    results = bytearray()
    half = cap // 2
    killed = False
    with selectors.DefaultSelector() as sel:
        sel.register(out_fd, selectors.EVENT_READ, "out")
        sel.register(result_fd, selectors.EVENT_READ, "result")
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0 and not killed:
                _kill(proc)
                killed = True
                deadline = time.monotonic() + 2.0  # what is still buffered
                continue
            if left <= 0:
                break
            for key, _ in sel.select(left):
                data = os.read(key.fd, 1 << 20)
                if not data:
                    sel.unregister(key.fd)
                elif key.data == "result":
                    if len(results) < cap:
                        results += data
                elif len(head) < half:
                    take = half - len(head)
                    head += data[:take]
                    tail += data[take:]
                else:
                    tail += data
                if len(tail) > half:
                    dropped += len(tail) - half
                    del tail[: len(tail) - half]
    text = head.decode("utf-8", "replace")
    if dropped:
        text += f"\n[... {dropped} bytes of output dropped ...]\n"
    return text + tail.decode("utf-8", "replace"), results.decode("utf-8", "replace"), killed


# ---------------------------------------------------------------------------------------
# Choosing a level
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def probe(level: str, search_path: str | None = None) -> str | None:
    """None when ``level`` works here and holds (checked from inside: pid 1 of its own pid
    namespace, alone in it, a read-only root, no network interface but loopback, no
    capability, not root of the host); else why not, in a few words."""
    if level == "none":
        return None
    run = Sandbox(level, search_path=search_path).run("ping", {}, timeout=10)
    if run.error:
        return run.error
    facts = run.records[0] if run.records else {}
    problems = [
        what
        for what, ok in (
            ("not pid 1 of its own pid namespace", facts.get("pid") == 1),
            ("other processes are visible", facts.get("processes") == [1]),
            ("the root is writable", facts.get("root_writable") is False),
            ("network interfaces other than loopback", facts.get("interfaces") == ["lo"]),
            ("capabilities left", facts.get("capabilities") == 0),
            # run as root, no user namespace is made: the uid seen inside is the host's
            ("the code would run as root", os.geteuid() != 0 or facts.get("host_uid") not in (0, None)),
        )
        if not ok
    ]
    return f"the sandbox does not hold: {', '.join(problems)}" if problems else None


def resolve(choice: str = "auto", *, search_path: str | None = None, limits: Limits | None = None) -> Sandbox:
    """The sandbox for ``choice`` (``auto``: bwrap, else unshare), probed (once per
    level and search path).  Raises :class:`SandboxUnavailable` when it cannot run here."""
    if choice not in SANDBOX_CHOICES:
        raise SandboxUnavailable(f"unknown sandbox {choice!r} (known: {', '.join(SANDBOX_CHOICES)})")
    if search_path is None:  # explicit, so the probes' cache follows a changed PATH
        search_path = os.environ.get("PATH", os.defpath)
    extra = {"limits": limits} if limits is not None else {}
    if choice != "auto":
        why = probe(choice, search_path)
        if why is not None:
            raise SandboxUnavailable(f"sandbox {choice} cannot run here: {why}")
        return Sandbox(choice, search_path=search_path, **extra)
    reasons = []
    for level in ("bwrap", "unshare"):
        why = probe(level, search_path)
        if why is None:
            return Sandbox(level, search_path=search_path, **extra)
        reasons.append(f"{level}: {why}")
    raise SandboxUnavailable(
        f"no sandbox for model-written code here ({'; '.join(reasons)}); install bubblewrap (e.g. apt-get install "
        "bubblewrap), or pass --sandbox none to run that code without isolation"
    )


_CURRENT: ContextVar[Sandbox | None] = ContextVar("orchestrator_sandbox", default=None)


def current() -> Sandbox:
    """The sandbox of the run in progress (see :func:`using`), else the best one here."""
    return _CURRENT.get() or resolve("auto")


@contextlib.contextmanager
def using(sandbox: Sandbox) -> Iterator[Sandbox]:
    """Run checks and validators in ``sandbox`` within this block (threads started with
    ``asyncio.to_thread`` inside it see it too)."""
    token = _CURRENT.set(sandbox)
    try:
        yield sandbox
    finally:
        _CURRENT.reset(token)


# Sandboxes run in their own session (so a timeout can kill them whole), which also means
# a Ctrl-C on the terminal does not reach them: an interrupted run kills them itself.
_RUNNING: set[subprocess.Popen[bytes]] = set()


def kill_running() -> int:
    """Kill every sandbox still running (an interrupted run); how many."""
    procs = list(_RUNNING)
    for proc in procs:
        if proc.poll() is None:
            _kill(proc)
    return len(procs)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """End the sandbox: close the harness's lifeline (it kills everything in its pid
    namespace and exits, which ends the namespace), and kill the outer process."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
    _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
