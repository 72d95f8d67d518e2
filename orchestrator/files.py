"""Safe file writes: the one place where the program makes the directories and files it
leaves behind (the run store, the response cache, the output directory).

Why a module of its own: every file a run writes holds prompts and model output, and
some are written where a user (or a model-written program) can put a symbolic link.
Three rules hold for all of them, whatever the umask:

* **private**: directories we make are ``0700`` and files ``0600`` (modes are set
  explicitly after creation, so a umask of ``000`` changes nothing);
* **never redirected**: output files are written through a descriptor of their
  directory, opened with ``O_NOFOLLOW``, as a temporary file (``O_EXCL``) renamed over
  the target inside that directory; a symbolic link where a file goes, or given as the
  directory itself, is an :class:`UnsafePathError`, never followed;
* **no two tasks share a file**: :func:`task_file_names` maps every task id of a run to
  its own name (ids that are already plain names are kept; others become a slug plus a
  hash of the id), so the last writer can never silently win.

Imports nothing of ours (like :mod:`orchestrator.redaction`), so every part can use it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from .domain.errors import OrchestratorError

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "OutputDir",
    "UnsafePathError",
    "open_private",
    "private_dir",
    "task_file_names",
    "tighten_file",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class UnsafePathError(OrchestratorError, OSError):
    """A symbolic link (or another non-file) where the program would write: refused,
    never followed.  An ``OSError`` whose ``strerror`` is the one-line reason."""

    def __init__(self, path: str | Path, why: str) -> None:
        super().__init__(errno.ELOOP, f"{path}: {why}")
        self.path = str(path)


# -- private directories and files ------------------------------------------------------


def private_dir(path: str | Path, *, tighten: bool = False) -> Path:
    """Make ``path`` (and every missing parent) with mode 0700, whatever the umask.  An
    existing directory keeps its mode unless ``tighten`` (a directory that is ours by
    name, such as the default state directory): then it is set to 0700 when we own it.
    Raises ``OSError`` as ``mkdir`` does (a file in the way, no permission)."""
    target = Path(path)
    missing: list[Path] = []
    probe = target
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made by another process meanwhile: not ours to change
            continue
        os.chmod(directory, PRIVATE_DIR)
    if not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{target}: not a directory")
    if tighten and not missing:
        _tighten(target, PRIVATE_DIR, stat.S_ISDIR)
    return target


def tighten_file(path: str | Path) -> None:
    """Set an existing regular file we own to 0600 (a symbolic link is left alone:
    changing it would change its target).  A missing file is fine."""
    _tighten(Path(path), PRIVATE_FILE, stat.S_ISREG)


def _tighten(path: Path, mode: int, kind: Callable[[int], bool]) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not kind(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return  # someone else's: not ours to change
    os.chmod(path, mode)


def open_private(path: str | Path, flags: int = os.O_RDWR) -> int:
    """Open (creating it 0600 if missing) a file of ours without following a symbolic
    link in its place; an existing file is set to 0600.  Returns the descriptor."""
    try:
        fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW | _CLOEXEC, PRIVATE_FILE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(path, "is a symbolic link; not followed") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != PRIVATE_FILE and (not hasattr(os, "getuid") or st.st_uid == os.getuid()):
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- the output directory --------------------------------------------------------------


class OutputDir:
    """A directory opened once, by a descriptor that followed no symbolic link; files
    are written and removed in it by plain name only.

    ``with OutputDir("out") as out: out.write("summary.json", text)``.  A missing
    directory is made (0700); an existing one keeps its mode.  ``path`` itself being a
    symbolic link is an :class:`UnsafePathError` (``-o`` pointing at ``/`` must not
    write ``/summary.json``), as is a symbolic link where a file goes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_symlink():
            raise UnsafePathError(self.path, "is a symbolic link; give the directory itself")
        private_dir(self.path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # replaced by a link since the check
                raise UnsafePathError(self.path, "is not a plain directory; not followed") from None
            raise

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: closed")
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check(self, name: str) -> bool:
        """Whether ``name`` exists; a symbolic link or a non-file there is an
        :class:`UnsafePathError`."""
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            raise ValueError(f"not a plain file name: {name!r}")
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(self.path / name, "is a symbolic link; not followed")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(self.path / name, "is not a regular file")
        return True

    def write(self, name: str, data: str | bytes) -> None:
        """Write ``name`` whole (0600): a temporary file made with ``O_EXCL`` in this
        directory, renamed over ``name``.  A reader never sees half a file, and nothing
        outside the directory can be reached through ``name``."""
        self.check(name)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        temp = f".{name[:100]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, PRIVATE_FILE, dir_fd=self.fd)
        try:
            try:
                os.fchmod(fd, PRIVATE_FILE)
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self.check(name)  # again, just before: a link put there meanwhile is refused
            os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=self.fd)
            except OSError:
                pass
            raise

    def remove(self, name: str) -> bool:
        """Remove ``name`` if it is there (False if not); a link there is refused."""
        if not self.check(name):
            return False
        os.unlink(name, dir_fd=self.fd)
        return True

    def probe(self) -> None:
        """Prove the directory is writable: a file made and removed at once."""
        temp = f".orchestrator-probe-{secrets.token_hex(6)}"
        os.close(
            os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, PRIVATE_FILE, dir_fd=self.fd)
        )
        os.unlink(temp, dir_fd=self.fd)


# -- file names for task ids -----------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_SLUG_DROP = re.compile(r"[^a-z0-9_-]+")
SLUG_CHARS = 48
HASH_CHARS = 10


def _hashed(task_id: str, digits: int) -> str:
    slug = _SLUG_DROP.sub("_", task_id.lower()).strip("_-")[:SLUG_CHARS].rstrip("_-") or "task"
    return f"{slug}~{hashlib.sha256(task_id.encode('utf-8', 'surrogatepass')).hexdigest()[:digits]}"


def task_file_names(task_ids: Iterable[str]) -> dict[str, str]:
    """Each task id -> the stem of its output file, distinct for every id, also on a
    file system that ignores case.

    A plain id (letters, digits, ``_.-``, at most 80 characters, not starting with
    ``.`` or ``-``) is its own name.  Any other id - and any plain id whose name differs
    only in case from another's - becomes a lowercase slug of it, ``~`` and the first
    10 hex digits of the id's SHA-256 (all 64 where 10 would collide).  ``~`` never
    appears in a plain name, so the two kinds cannot meet.  Depends only on the set of
    ids, so every attempt of a run maps its tasks to the same files."""
    ids = sorted(set(task_ids))
    names = {tid: tid if _PLAIN.fullmatch(tid) else _hashed(tid, HASH_CHARS) for tid in ids}
    folded: dict[str, list[str]] = {}
    for tid in ids:
        folded.setdefault(names[tid].casefold(), []).append(tid)
    for group in folded.values():
        if len(group) > 1:
            for tid in group:
                names[tid] = _hashed(tid, HASH_CHARS)
    seen: dict[str, list[str]] = {}
    for tid in ids:
        seen.setdefault(names[tid].casefold(), []).append(tid)
    for group in seen.values():
        if len(group) > 1:  # ten hex digits of two different ids agree: use them all
            for tid in group:
                names[tid] = _hashed(tid, 64)
    return names
