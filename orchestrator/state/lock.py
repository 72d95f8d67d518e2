"""The per-project lock: one run of a project at a time, across processes.

An exclusive ``flock`` on ``locks/<project>.lock``, held as long as the run goes on.
Why flock: the kernel drops it when the holder dies, however it dies (a ``kill -9``, a
crash), so a resume after a kill is never refused by a stale lock, and there is no
lease or heartbeat to tune.  Locks belong to open files, not processes, so two runs in
one process exclude each other too.  The holder's pid is written in the file, for the
message that refuses a second run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from pathlib import Path
from types import TracebackType

from ..domain.checkpoint import ProjectBusyError
from ..files import open_private, private_dir

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def lock_path(lock_dir: Path, project_id: str) -> Path:
    """The lock file of a project (ids that are not safe file names are hashed)."""
    name = (
        project_id
        if _SAFE.match(project_id) and not project_id.startswith(".")
        else ("h-" + hashlib.sha256(project_id.encode()).hexdigest()[:32])
    )
    return lock_dir / f"{name}.lock"


class ProjectLock:
    """``with ProjectLock(path, project_id):`` holds the project or raises
    :class:`ProjectBusyError` at once (never waits)."""

    def __init__(self, path: Path, project_id: str) -> None:
        self.path = path
        self.project_id = project_id
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent, tighten=True)  # locks/ is ours by name
        fd = open_private(self.path)  # 0600, and never through a symbolic link
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ProjectBusyError(self.project_id, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def is_locked(path: Path) -> bool:
    """Whether a run holds this lock file right now (a test lock, released at once)."""
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
