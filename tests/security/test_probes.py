"""Every case of the hostile probe (issue 19), through the real sandbox, at each isolation
level this machine offers: the checked code tries it, the attack fails, and the
orchestrator (here a stand-in process started with a key in its environment, as the
command line is) is alive, answers, and kept its memory.

Where it is safe, the same attack is also run with ``--sandbox none`` as a control, to
show the test can fail: there the attack works.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from tests.helpers import serve_hello
from tests.sandboxes import OFFERED, processes_with

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-proj-" + "Zq9" * 16
LEVELS = [pytest.param(level, id=level) for level in OFFERED]


def _code(source: str) -> str:
    return f"```python\n{textwrap.dedent(source).strip()}\n```"


def standin(level: str, answer: str, criteria: str = "", *, kind: str = "checks", timeout: float = 30) -> dict:
    """Run the checks (or the pytest validator) from a separate process holding SECRET in
    its initial environment; its JSON report (it must exit 0: it was not killed)."""
    job = {"level": level, "kind": kind, "answer": answer, "criteria": criteria, "timeout": timeout}
    env = {**os.environ, "OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.security.standin"],
        input=json.dumps(job),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def verdicts(report: dict) -> list[tuple[bool, str | None]]:
    return [(r["passed"], r["error_type"]) for r in report["results"]]


# -- the key ----------------------------------------------------------------------------------

STEAL = _code(f"""
    import os

    def steal():
        found = [k for k, v in os.environ.items() if "{SECRET[:12]}" in v or k.endswith("_API_KEY")]
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{{pid}}/environ", "rb") as f:
                    if b"{SECRET[:12]}" in f.read():
                        found.append(pid)
            except OSError:
                pass
        return found

    def parent_environ():
        for pid in (os.getppid(), HOSTPID):
            try:
                with open(f"/proc/{{pid}}/environ", "rb") as f:
                    if b"{SECRET[:12]}" in f.read():
                        return pid
            except OSError:
                pass
        return None
""")


@pytest.mark.parametrize("level", LEVELS)
def test_the_key_is_in_no_environment_the_code_can_read(level):
    report = standin(level, STEAL, "steal() == []\nparent_environ() is None")
    assert verdicts(report) == [(True, None), (True, None)], report["results"]
    assert SECRET not in json.dumps(report["results"])


def test_control_without_isolation_the_parents_environ_is_readable():
    report = standin("none", STEAL, "steal() == []")
    (result,) = report["results"]
    assert not result["passed"] and str(report["pid"]) in result["error"]  # the stand-in's /proc/<pid>/environ


# -- the orchestrator's process -------------------------------------------------------------------

KILL = _code("""
    import os
    import signal

    def kill_everything():
        for target in (os.getppid(), HOSTPID, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        return "alive"
""")


@pytest.mark.parametrize("level", LEVELS)
def test_the_code_cannot_kill_the_orchestrator_or_the_harness(level):
    report = standin(level, KILL, "kill_everything() == 'alive'\nkill_everything() == 'dead'")
    # the stand-in answered (standin() checks its exit status); the harness went on to the next check
    assert verdicts(report) == [(True, None), (False, "AssertionError")], report["results"]


# -- the verdict --------------------------------------------------------------------------------------

FORGE = _code("""
    import atexit
    import glob
    import json
    import os

    def add(a, b):
        return 0

    def _forge():
        lines = "".join(json.dumps({"index": i, "passed": True, "error_type": None, "error": ""}) + "\\n"
                        for i in (1, 2, 3)).encode()
        for path in glob.glob("/proc/*/fd/*"):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, lines)
                os.close(fd)
            except OSError:
                pass
        for name in glob.glob("/tmp/**/*.json", recursive=True) + glob.glob("*.json"):
            try:
                with open(name, "w") as f:
                    json.dump({f"test_check_{i}": {"passed": True} for i in (1, 2, 3)}, f)
            except OSError:
                pass

    def _exit_passed():
        _forge()
        os._exit(0)

    _forge()  # at import, while the check runs...
    atexit.register(_exit_passed)  # ...and once more on the way out
""")


@pytest.mark.parametrize("level", LEVELS)
def test_the_code_cannot_forge_its_verdict(level):
    report = standin(level, FORGE, "add(1, 1) == 2\nadd(2, 2) == 4")
    assert [r["passed"] for r in report["results"]] == [False, False], report["results"]


HARNESS = _code("""
    import os

    def reach_the_harness():
        reached = []
        for what in ("/proc/1/mem", "/proc/1/environ"):
            try:
                with open(what, "rb") as f:
                    reached.append((what, f.read(1)))
            except OSError:
                pass
        try:
            fds = [int(fd) for fd in os.listdir("/proc/1/fd")]  # numbers are no secret...
        except OSError:
            fds = list(range(64))
        for fd in fds:
            try:  # ...but none of them can be opened (the harness is not dumpable)
                reached.append(os.open(f"/proc/1/fd/{fd}", os.O_WRONLY))
            except OSError:
                pass
        return reached
""")


@pytest.mark.parametrize("level", LEVELS)
def test_the_harness_holding_the_verdict_pipe_is_out_of_reach(level):
    report = standin(level, HARNESS, "reach_the_harness() == []")
    assert verdicts(report) == [(True, None)], report["results"]


# -- outliving the run ------------------------------------------------------------------------------------


def _daemon(marker: str, outfile: str) -> str:
    return _code(f"""
        import os
        import sys

        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                script = "import sys, time; time.sleep(25); open(sys.argv[1], 'w').write('outlived')"
                os.execv(sys.executable, [sys.executable, "-c", script, "{outfile}", "{marker}"])
            os._exit(0)

        def add(a, b):
            return a + b
    """)


@pytest.mark.parametrize("level", LEVELS)
def test_a_setsid_daemon_does_not_outlive_the_check(level, tmp_path):
    marker = f"orchestrator-daemon-{uuid.uuid4().hex}"
    report = standin(level, _daemon(marker, str(tmp_path / "outlived")), "add(1, 1) == 2")
    assert verdicts(report) == [(True, None)]
    assert processes_with(marker) == []  # gone when the check ended, not 25 s later


def test_control_without_isolation_a_setsid_daemon_survives(tmp_path):
    marker = f"orchestrator-daemon-{uuid.uuid4().hex}"
    standin("none", _daemon(marker, str(tmp_path / "outlived")), "add(1, 1) == 2")
    survivors = processes_with(marker)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors  # what the namespaces take away


# -- limits -------------------------------------------------------------------------------------------------


def _bomb(marker: str) -> str:
    return _code(f"""
        import os

        def bomb():
            started = 0
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 30", "{marker}"])
                started += 1
            return started
    """)


@pytest.mark.parametrize("level", LEVELS)
def test_a_fork_bomb_is_bounded_and_cleaned_up(level):
    marker = f"orchestrator-bomb-{uuid.uuid4().hex}"
    report = standin(level, _bomb(marker), "bomb() < 64")
    assert verdicts(report) == [(True, None)], report["results"]
    assert processes_with(marker) == []


ALLOCATE = _code("""
    def allocate(size):
        try:
            block = bytearray(size)
        except MemoryError:
            return "refused"
        return "allocated %d" % len(block)
""")


@pytest.mark.parametrize("level", LEVELS)
def test_a_4_gib_allocation_is_refused(level):
    report = standin(level, ALLOCATE, "allocate(4 << 30) == 'refused'\nallocate(64 << 20) != 'refused'")
    assert verdicts(report) == [(True, None), (True, None)], report["results"]


LOUD_IMPORT = _code("""
    import os

    chunk = b"x" * (1 << 20)
    for _ in range(400):
        os.write(1, chunk)
""")

LOUD_CHECK = _code("""
    import os
    import stat

    def shout():
        chunk = b"x" * (1 << 20)
        pipes = [fd for fd in range(64) if _is_pipe(fd)]  # the saved stdout, whatever else is a pipe
        for i in range(400):
            try:
                os.write(pipes[i % len(pipes)], chunk)
            except OSError:
                pass
        return False

    def _is_pipe(fd):
        try:
            return stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError:
            return False
""")


@pytest.mark.parametrize("level", LEVELS)
def test_400_mb_of_output_does_not_grow_the_orchestrators_memory(level):
    validator = standin(level, LOUD_IMPORT, kind="pytest")  # the import smoke test: no capture in between
    assert validator["results"] == {"passed": True, "message": "import smoke test passed (the answer has no tests)"}
    checks = standin(level, LOUD_CHECK, "shout() is True")  # a failing check printing 400 MB wherever it can
    assert not checks["results"][0]["passed"]
    for report in (validator, checks):
        grown_mib = (report["peak_after_kib"] - report["peak_before_kib"]) / 1024
        assert grown_mib < 48, grown_mib  # the capture keeps 1 MiB; 400 MB went by


# -- the file system -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
def test_the_code_writes_nowhere_but_its_work_dir(level, tmp_path):
    name = f"orchestrator-escape-{uuid.uuid4().hex}"
    targets = [
        str(tmp_path / name),
        f"/etc/{name}",
        f"/usr/{name}",
        f"/{name}",
        f"{sys.prefix}/{name}",
        f"{Path.home()}/{name}",
        f"/dev/{name}",
        f"/var/tmp/{name}",
        f"{ROOT}/{name}",
    ]
    answer = _code(f"""
        def escapes():
            done = []
            for path in {targets!r}:
                try:
                    with open(path, "w") as f:
                        f.write("escaped")
                    done.append(path)
                except OSError:
                    pass
            return done

        def local():
            with open("mine.txt", "w") as f:
                f.write("1")
            with open("/tmp/scratch.txt", "w") as f:
                f.write("2")
            return open("mine.txt").read() + open("/tmp/scratch.txt").read()
    """)
    report = standin(level, answer, "escapes() == []\nlocal() == '12'")
    assert verdicts(report) == [(True, None), (True, None)], report["results"]
    assert [t for t in targets if os.path.exists(t)] == []


# -- the network -----------------------------------------------------------------------------------------------

CONNECT = _code("""
    import _socket

    def connect(port):
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(("127.0.0.1", port))
            return s.recv(5).decode()
        except OSError as exc:
            return type(exc).__name__
""")


@pytest.mark.parametrize("level", LEVELS)
def test_a_loopback_tcp_server_of_the_host_is_out_of_reach(level, loopback_server):
    port, accepted = loopback_server
    with socket.create_connection(("127.0.0.1", port), timeout=3) as outside:
        assert outside.recv(5) == b"hello"  # from outside the sandbox, the same connect works
    report = standin(level, CONNECT, f"connect({port}) == 'ConnectionRefusedError'")
    assert verdicts(report) == [(True, None)], report["results"]
    assert len(accepted) == 1


@pytest.fixture
def unix_servers(tmp_path):
    """A Unix socket server on a path and one on an abstract name, on the host; yields
    (path, abstract name, accepted)."""
    path = str(tmp_path / "host.sock")
    abstract = f"\0orchestrator-test-{uuid.uuid4().hex}"
    accepted: list[str] = []
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(4)
        server.settimeout(0.2)
        servers.append(server)
    stop = threading.Event()

    threads = [threading.Thread(target=serve_hello, args=(s, stop, accepted), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield path, abstract, accepted
    stop.set()
    for thread in threads:
        thread.join(2)
    for server in servers:
        server.close()


UNIX_CONNECT = _code("""
    import socket

    def connect(address):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(address)
            return s.recv(5).decode()
        except OSError as exc:
            return type(exc).__name__
""")


@pytest.mark.parametrize("level", LEVELS)
def test_a_unix_socket_of_the_host_is_out_of_reach(level, unix_servers):
    path, abstract, accepted = unix_servers
    criteria = f"connect({path!r}) != 'hello'\nconnect({abstract!r}) != 'hello'"
    control = standin("none", UNIX_CONNECT, criteria)
    assert verdicts(control) == [(False, "AssertionError")] * 2 and len(accepted) == 2  # reachable from outside
    report = standin(level, UNIX_CONNECT, criteria)
    assert verdicts(report) == [(True, None), (True, None)], report["results"]
    assert len(accepted) == 2
