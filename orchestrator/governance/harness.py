"""The program that runs first inside the sandbox: it sets the sandbox up (at the
``unshare`` level), runs the model-written code in child processes, and reports their
verdicts to the orchestrator over a pipe that no child can write.

Not imported by the orchestrator: :mod:`.sandbox` reads this file and runs it as
``python -I -c <this source>`` (standard library only; pytest when installed), with the
job as JSON on stdin.  Why a separate trusted process: a verdict produced in the process
that ran the checked code can be rewritten by that code (an ``atexit`` hook rewriting a
results file was enough).  Here the verdict channel (``result_fd``) is held only by this
process, which never imports the checked code; children get it closed before anything
runs; this process is not dumpable, so a child cannot reopen it through
``/proc/<pid>/fd``; and it is pid 1 of the sandbox's pid namespace, so a child cannot
kill it (pid 1 ignores signals it has no handler for).  Each acceptance check runs in
its own child, whose report carries a nonce; after each child ends, every other process
in the sandbox is killed (``setsid`` daemons included) before the next one starts.

Modes: ``ping`` (the probe: report what the sandbox looks like from inside),
``checks`` (one pytest run per acceptance check), ``command`` (one command, e.g. the
pytest validator; its exit status is the verdict).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, NotRequired, TypedDict

if TYPE_CHECKING:
    import pluggy
    import pytest

_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC = 2, 4, 4096, 16384
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 1
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE, _PR_CAPBSET_READ, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 4, 23, 24, 38
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_REPORT_CAP = 64 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


# The job the orchestrator sends (one JSON line on stdin; :mod:`.sandbox` builds it) and the
# records the harness sends back on the verdict channel.  Shapes only: this file runs alone
# (``python -I -c``), so it imports nothing of the orchestrator.


class JobLimits(TypedDict):
    memory_bytes: int
    processes: int
    file_bytes: int
    open_files: int
    cpu_seconds: int


class UnshareSetup(TypedDict):
    """What the ``unshare`` level builds itself (bwrap is told by its arguments)."""

    symlinks: list[tuple[str, str]]
    binds: list[tuple[str, str]]
    tmp_bytes: int
    userns: bool


class Job(TypedDict):
    mode: str
    files: dict[str, str]
    timeout: float
    argv: list[str]
    count: int
    test_file: str
    workdir: str
    pid_namespace: bool
    env: dict[str, str]
    limits: JobLimits
    result_fd: NotRequired[int]
    become: NotRequired[list[int] | None]
    setup: NotRequired[UnshareSetup]


class Verdict(TypedDict):
    """One check's result as the check's child reports it (``nonce`` added on the wire)."""

    passed: bool
    error_type: str | None
    error: str


class IndexedVerdict(Verdict):
    index: int


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _bytes(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)), f"mount {target}")


def _read_only(path: str) -> None:
    """``path`` and every mount below it read-only."""
    attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY)
    _check(
        _libc.syscall(
            _SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), _AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
        ),
        f"read-only {path}",
    )


def _writable(path: str) -> None:
    """The mount at ``path`` writable again, and only it: the mounts below stay read-only."""
    attr = _MountAttr(attr_clr=_MOUNT_ATTR_RDONLY)
    _check(
        _libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), 0, ctypes.byref(attr), ctypes.sizeof(attr)),
        f"writable {path}",
    )


# ---------------------------------------------------------------------------------------
# The unshare level: build the file system view and drop privileges (bwrap does this itself)
# ---------------------------------------------------------------------------------------


def _under_tmp(path: str) -> bool:
    return path == "/tmp" or path.startswith("/tmp/")


def _setup_unshare(setup: UnshareSetup) -> None:
    """In fresh mount, pid, net, ipc and uts namespaces (and a user namespace unless we are
    root) made by ``unshare``, with this process as pid 1: a new root holding only the
    allowed host paths, read-only; a private /dev with the harmless devices; the pid
    namespace's /proc; a size-capped writable /tmp; loopback up.  :func:`_lock_down`
    follows, so nothing below can undo any of it."""
    if setup["userns"]:  # our own user namespace's limit: no nested one to regain privileges in
        with open("/proc/sys/user/max_user_namespaces", "w", encoding="ascii") as f:
            f.write("0")
    root = "/tmp"  # a private tmpfs over the host's /tmp in this mount namespace, soon the new root
    # what is bound from under the host's /tmp (a venv there) is held open first: the
    # staging tmpfs is about to hide it, and a bind from the descriptor still reaches it
    held = {source: os.open(source, os.O_PATH) for source, _ in setup["binds"] if _under_tmp(source)}
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    for link, target in setup["symlinks"]:
        os.makedirs(os.path.dirname(root + link), exist_ok=True)
        os.symlink(target, root + link)
    # the sandbox's own /tmp first, so that binds below /tmp land on it, not under it
    os.makedirs(root + "/tmp")
    _mount("tmpfs", root + "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={setup['tmp_bytes']},mode=1777")
    for source, path in setup["binds"]:
        dest = root + path
        origin = f"/proc/self/fd/{held[source]}" if source in held else source
        if os.path.isdir(origin):
            os.makedirs(dest, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            open(dest, "w").close()
        _mount(origin, dest, None, _MS_BIND | _MS_REC)
    for fd in held.values():
        os.close(fd)
    os.makedirs(root + "/dev")
    _mount("tmpfs", root + "/dev", "tmpfs", _MS_NOSUID, "size=64k,mode=755")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{root}/dev/{name}", "w").close()
        _mount(f"/dev/{name}", f"{root}/dev/{name}", None, _MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/proc")
    _mount("/proc", root + "/proc", None, _MS_BIND | _MS_REC)  # unshare --mount-proc: this pid namespace's
    for name in ("dev/shm", ".old"):
        os.makedirs(f"{root}/{name}")
    arch = os.uname().machine
    if arch not in _SYS_PIVOT_ROOT:
        raise OSError(f"pivot_root: unsupported architecture {arch}")
    _check(_libc.syscall(_SYS_PIVOT_ROOT[arch], root.encode(), f"{root}/.old".encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", 2), "detach the old root")  # MNT_DETACH
    os.rmdir("/.old")
    _read_only("/")
    _writable("/tmp")  # the sandbox's /tmp; what is bound below it (a venv) stays read-only
    _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=1777")
    _loopback_up()


def _loopback_up() -> None:
    """As bwrap does: the namespace's own loopback works (a test may serve on it); the
    host's stays out of reach."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s.fileno(), siocgifflags, req + b"\0" * 14)[:18])[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sh", b"lo", flags | iff_up) + b"\0" * 14)


def _lock_down(become: list[int] | None) -> None:
    """No capability (effective, permitted, inheritable, ambient, bounding) and no new
    privileges on exec.  ``become`` (uid, gid): when the orchestrator is root, the code
    runs as this unprivileged user (the kernel does not apply the process limit to root,
    and root could read what only root may read)."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if _libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) != 1:
            continue  # not in the bounding set (bwrap dropped it already)
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and become is None:
            _check(-1, f"drop capability {cap}")  # (with a user change, the change drops them all)
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    if become is not None:
        for shared in ("/tmp", "/dev/shm"):
            if os.path.isdir(shared) and not os.path.islink(shared):
                os.chmod(shared, 0o1777)
        uid, gid = become
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # two zeroed __user_cap_data_struct
    _check(_libc.capset(ctypes.c_char_p(header), data), "capset")


# ---------------------------------------------------------------------------------------
# Running the code
# ---------------------------------------------------------------------------------------


class Harness:
    def __init__(self, job: Job, lifeline: int) -> None:
        self.job = job
        self.lifeline = lifeline
        self.result_fd = job["result_fd"]
        self.deadline = time.monotonic() + float(job["timeout"])
        self.workdir = job["workdir"]
        self.pid_namespace = job["pid_namespace"]

    def report(self, record: Mapping[str, object]) -> None:
        os.write(self.result_fd, json.dumps(record).encode() + b"\n")

    def prepare_workdir(self) -> None:
        """The job's files, afresh (what a previous check's code wrote is gone)."""
        if os.path.isdir(self.workdir):
            for name in os.listdir(self.workdir):
                path = os.path.join(self.workdir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        os.makedirs(self.workdir, exist_ok=True)
        for name, text in self.job["files"].items():
            with open(os.path.join(self.workdir, name), "w", encoding="utf-8") as f:
                f.write(text)

    def spawn(self, child: Callable[[int], None]) -> tuple[int, int]:
        """Fork a child that runs ``child(report_fd)`` with the limits and the job's
        environment, never holding the verdict channel; returns its pid and the read end
        of its report pipe."""
        self.prepare_workdir()
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 1 << 20)  # fewer wake-ups when a child floods it
        except OSError:
            pass
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(read_end)
                os.close(self.result_fd)
                os.setpgid(0, 0)
                _set_dumpable(True)
                os.chdir(self.workdir)
                _apply_limits(self.job["limits"], pid_namespace=self.pid_namespace)
                os.environ.clear()
                os.environ.update(self.job["env"])
                sys.dont_write_bytecode = True
                child(write_end)
            except BaseException as exc:  # noqa: BLE001 - the child must never return into the harness
                code = 127
                try:
                    os.write(2, f"sandbox: {type(exc).__name__}: {exc}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        os.close(write_end)
        return pid, read_end

    def wait(self, pid: int, read_end: int) -> tuple[bytes, int | None]:
        """The child's report and exit status (None when the deadline passed first); then
        every other process in the sandbox is killed and reaped."""
        pidfd = os.pidfd_open(pid)
        chunks: list[bytes] = []
        size, status, reading = 0, None, True
        while status is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([pidfd, self.lifeline, *([read_end] if reading else [])], [], [], left)
            if self.lifeline in ready and not os.read(self.lifeline, 1):
                self.kill_the_rest(pid)  # the orchestrator is gone: so is everything here
                os._exit(1)
            if read_end in ready:
                data = os.read(read_end, 65536)
                if not data:
                    reading = False
                elif size < _REPORT_CAP:
                    chunks.append(data)
                    size += len(data)
            if pidfd in ready:
                status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        self.kill_the_rest(pid)
        os.close(pidfd)
        if status is not None:  # drain what was written before the end
            os.set_blocking(read_end, False)
            try:
                while size < _REPORT_CAP and (data := os.read(read_end, 65536)):
                    chunks.append(data)
                    size += len(data)
            except (BlockingIOError, OSError):
                pass
        os.close(read_end)
        return b"".join(chunks), status

    def kill_the_rest(self, pid: int) -> None:
        if self.pid_namespace:  # every process but this one (pid 1): setsid daemons included
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while True:
                try:
                    if os.waitpid(-1, 0)[0] <= 0:
                        break
                except ChildProcessError:
                    break
        else:  # no namespace (``--sandbox none``): the child's process group only
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    # -- modes ---------------------------------------------------------------------------
    def ping(self) -> None:
        """What the sandbox looks like from inside (the probe checks it holds)."""
        try:
            with open("/.orchestrator-probe", "w", encoding="ascii"):
                root_writable = True
            os.unlink("/.orchestrator-probe")  # (a sandbox that does not hold must leave no trace)
        except OSError:
            root_writable = False
        with open("/proc/net/dev", encoding="ascii") as f:
            interfaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
        with open("/proc/self/status", encoding="ascii") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        host_uid = os.getuid()
        with open("/proc/self/uid_map", encoding="ascii") as f:
            for line in f:
                inner, outer, count = (int(n) for n in line.split())
                if inner <= os.getuid() < inner + count:
                    host_uid = outer + os.getuid() - inner
        self.report(
            {
                "pid": os.getpid(),
                "root_writable": root_writable,
                "interfaces": interfaces,
                "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                "capabilities": int(status["CapEff"], 16),
                "host_uid": host_uid,
            }
        )

    def command(self) -> None:
        argv = self.job["argv"]

        def run(_report_fd: int) -> None:
            os.execve(argv[0], argv, dict(os.environ))

        pid, read_end = self.spawn(run)
        _, status = self.wait(pid, read_end)
        self.report({"returncode": status})

    def checks(self) -> None:
        try:
            import pytest  # noqa: F401 - imported once here, so each check's child starts fast
        except ImportError:
            pass
        for index in range(1, int(self.job["count"]) + 1):
            nonce = os.urandom(16).hex()
            pid, read_end = self.spawn(functools.partial(_run_check, index, nonce, test_file=self.job["test_file"]))
            raw, status = self.wait(pid, read_end)
            self.report(_verdict(index, nonce, raw, status))
            if status is None:
                return  # the deadline passed: the orchestrator reports the rest as timed out


def _verdict(index: int, nonce: str, raw: bytes, status: int | None) -> IndexedVerdict:
    """One report line carrying this check's nonce, and nothing else, counts; anything
    else (no report, several, a wrong nonce, an early exit) is a failure."""
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if status is None:
        return {"index": index, "passed": False, "error_type": "Timeout", "error": "timed out (killed)"}
    try:
        entries = [json.loads(ln) for ln in lines]
    except ValueError:
        entries = []
    if len(entries) == 1 and isinstance(entries[0], dict) and entries[0].get("nonce") == nonce:
        entry = entries[0]
        error_type = entry.get("error_type")
        return {
            "index": index,
            "passed": entry.get("passed") is True,
            "error_type": error_type if isinstance(error_type, str) else None,
            "error": str(entry.get("error") or "")[:600],
        }
    why = "no result" if not lines else "an unreadable result"
    detail = f"the check's process ended (exit status {status}) with {why}"
    return {"index": index, "passed": False, "error_type": "SandboxError", "error": detail}


def _run_check(index: int, nonce: str, report_fd: int, test_file: str) -> None:
    """In the check's child: run test ``test_check_<index>`` of ``test_file`` and write one
    report line (with pytest's assertion introspection when pytest is installed)."""
    sys.path.insert(0, os.getcwd())
    entry: Verdict = {"passed": False, "error_type": "SandboxError", "error": "the check did not run"}
    try:
        import pytest  # noqa: F401 - only whether it is there
    except ImportError:
        entry = _run_plain(index, test_file)
    else:
        entry = _run_pytest(index, test_file) or entry
    os.write(report_fd, json.dumps({"nonce": nonce, **entry}).encode() + b"\n")
    sys.stdout.flush()
    os._exit(0)  # no atexit hook of the checked code runs after the verdict


def _run_pytest(index: int, test_file: str) -> Verdict | None:
    import pytest

    found: dict[str, Verdict] = {}

    class Outcome:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(
            self, item: pytest.Item, call: pytest.CallInfo[None]
        ) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
            outcome = yield
            report = outcome.get_result()
            if report.when != "call" and not report.failed:
                return
            entry: Verdict = {"passed": report.passed, "error_type": None, "error": ""}
            if call.excinfo is not None:
                crash = getattr(report.longrepr, "reprcrash", None)
                entry["error_type"] = call.excinfo.typename
                entry["error"] = (crash.message if crash is not None else str(call.excinfo.value))[:600]
            found.setdefault("entry", entry)

    pytest.main(
        [
            "-q",
            "--no-header",
            "-p",
            "no:cacheprovider",
            "--tb=short",
            "-o",
            "addopts=",
            f"{test_file}::test_check_{index}",
        ],
        plugins=[Outcome()],
    )
    return found.get("entry")


def _run_plain(index: int, test_file: str) -> Verdict:
    import importlib

    try:
        module = importlib.import_module(test_file.removesuffix(".py"))
        getattr(module, f"test_check_{index}")()
    except BaseException as exc:  # noqa: BLE001 - any failure of the check is its verdict
        kind = type(exc).__name__
        return {"passed": False, "error_type": kind, "error": f"{kind}: {exc}"[:600]}
    return {"passed": True, "error_type": None, "error": ""}


def _set_dumpable(on: bool) -> None:
    _libc.prctl(_PR_SET_DUMPABLE, 1 if on else 0, 0, 0, 0)


def _apply_limits(limits: JobLimits, *, pid_namespace: bool) -> None:
    pairs = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if pid_namespace:  # counted per user namespace: without one it would count all of the user's processes
        pairs.append((resource.RLIMIT_NPROC, limits["processes"]))
    for which, value in pairs:
        resource.setrlimit(which, (value, value))


def _read_job() -> tuple[Job, int]:
    """The job (one JSON line on stdin), and stdin kept as the *lifeline*: the
    orchestrator holds its other end open while it waits for us, so its end of file means
    the orchestrator is gone or the run was interrupted.  (Signals cannot say it alone:
    the kernel may refuse a parent-death signal to a process that changed user.)"""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        data += chunk
    lifeline = os.dup(0)
    os.set_inheritable(lifeline, False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    job: Job = json.loads(data)  # written by .sandbox, the one sender
    return job, lifeline


def main() -> int:
    job, lifeline = _read_job()
    os.set_inheritable(job["result_fd"], False)
    harness = Harness(job, lifeline)
    try:
        if job.get("setup"):
            _setup_unshare(job["setup"])
        if job["pid_namespace"]:
            _lock_down(job.get("become"))
            # die with bwrap or unshare (the process the orchestrator kills): armed again here,
            # since the kernel clears it when the user changes (a kill in the microseconds
            # between is still ended by the harness's own deadline)
            _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")
        _set_dumpable(False)  # no child may open our verdict pipe via /proc/1/fd or ptrace us
        getattr(harness, job["mode"])()
    except Exception as exc:  # noqa: BLE001 - reported on the channel, one line
        harness.report({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
