"""The parent's handle on the embedded model's worker process.

One worker per model file runs llama.cpp (:mod:`.local_worker_main`); this side keeps
what must survive the worker: the generation lock (one generation at a time, waiting
for it is queueing), the deadlines, cancellation, and what to do when the worker dies.

Why each rule:

* a worker that dies (a signal, the OOM killer) fails the call it was serving with a
  :class:`WorkerCrashed` naming the signal, and is started again at once, so the
  client's single retry finds it loading; a crash by SIGSEGV/SIGILL/SIGBUS/SIGFPE
  while llama.cpp's fast kernels were on switches the process to the safe mode (see
  :mod:`.cpu_features`), because that is where such crashes come from;
* the worker enforces the generation's deadline and cancellation itself, token by
  token; the parent only steps in when the worker stops answering (native code stuck):
  then it kills the process, so a hung generation never holds the lock for good;
* the worker is started early (:meth:`LocalWorker.start` returns at once; the model
  loads in the child while planning runs) and lives for the process; it dies with it
  (end of file on its stdin), and it runs in its own session so the terminal's Ctrl-C
  reaches only the orchestrator, which cancels the generation itself.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from ... import events
from ...domain.errors import OrchestratorError
from . import local_worker_main as protocol
from .base import ProviderError, ProviderUnavailable
from .cpu_features import KernelChoice, choose_kernels, cpu_flags, safe_mode_setting

logger = logging.getLogger("orchestrator.local")

WORKER_SCRIPT = Path(protocol.__file__)
READY_TIMEOUT = 300.0
"""Longest wait for a model to load (a multi-GB GGUF on a slow disk)."""
CANCEL_GRACE = 1.0
"""How long a cancelled generation may take to stop before its worker is killed."""
HANG_GRACE = 5.0
"""How long past its deadline a worker may stay silent before it counts as hung."""
KERNEL_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE})
"""Deaths that point at a CPU kernel: after one with the fast kernels on, use the safe mode."""
STDERR_TAIL = 4096

_ENV_KEPT = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "TMPDIR",
    "TMP",
    "TEMP",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "DONT_FAKE_MONOTONIC",
)
_ENV_PREFIXES = ("LC_", "OMP_", "GOMP_", "KMP_", "GGML_", "LLAMA_", "FAKETIME")


def worker_env() -> dict[str, str]:
    """What the worker inherits: locale, paths and llama.cpp/OpenMP tuning; no API key,
    no token, nothing else of the user's environment."""
    return {k: v for k, v in os.environ.items() if k in _ENV_KEPT or k.startswith(_ENV_PREFIXES)}


class WorkerCrashed(ProviderError):
    """The worker died while serving a call; it was restarted.  Retried once."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True, retry_after=0.0, error_type="WorkerCrashed", max_retries=1)


class _WorkerGone(OrchestratorError):
    """End of the reply stream: the worker process ended."""


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"died with {name} (signal {-returncode})"
    return f"exited with status {returncode}"


class _Replies:
    """Frames from the worker's reply pipe, read with timeouts (select + a buffer)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.buffer = bytearray()
        self.ended = False

    def next(self, timeout: float) -> protocol.Frame | None:
        """The next frame within ``timeout`` seconds, None if none came; _WorkerGone at the end."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            if self.ended:
                raise _WorkerGone()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.fd], [], [], remaining)
            if readable:
                chunk = os.read(self.fd, 1 << 16)
                if chunk:
                    self.buffer += chunk
                else:
                    self.ended = True

    def _take(self) -> protocol.Frame | None:
        header = protocol.HEADER.size
        if len(self.buffer) < header:
            return None
        (size,) = protocol.HEADER.unpack_from(self.buffer)
        if size > protocol.MAX_FRAME:
            self.ended = True
            self.buffer.clear()
            return None
        if len(self.buffer) < header + size:
            return None
        body = bytes(self.buffer[header : header + size])
        del self.buffer[: header + size]
        message = json.loads(body)
        return message if isinstance(message, dict) else None


class LocalWorker:
    """The worker process of one model file (and context size)."""

    def __init__(self, path: Path, n_ctx: int, threads: int, choice: KernelChoice | None = None) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self.kernels = choice or choose_kernels(cpu_flags())
        self.generation_lock = threading.Lock()
        """Held for a whole generation (and the wait for the model to load): llama.cpp serves one at a time."""
        self.crashes: list[str] = []
        self.ready: protocol.Frame | None = None
        self._state_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._replies: _Replies | None = None
        self._stderr: IO[bytes] | None = None
        self._ids = itertools.count(1)
        self._spawns = 0

    # -- the process ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def safe_mode(self) -> bool:
        return self.kernels.safe_mode

    def start(self) -> None:
        """Start the worker if it is not running; returns at once (the model loads in the child)."""
        with self._state_lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._spawn()

    def _spawn(self) -> None:
        self._stderr = tempfile.TemporaryFile(prefix="orchestrator-llama-")
        self._spawns += 1
        env = worker_env()
        fault = os.environ.get(protocol.FAULT_ENV)
        if fault and (self._spawns == 1 or fault.endswith(":every")):  # tests: see FAULT_ENV
            env[protocol.FAULT_ENV] = fault
        argv = [
            sys.executable,
            "-P",
            str(WORKER_SCRIPT),
            str(self.path),
            str(self.n_ctx),
            str(self.threads),
            "off" if self.safe_mode else "on",
        ]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        assert self._proc.stdout is not None
        self._replies = _Replies(self._proc.stdout)
        self.ready = None

    def stop(self, wait: float = 1.0) -> None:
        """End the worker: close its stdin (it exits at once), then kill it if it lingers."""
        with self._state_lock:
            proc, self._proc, self.ready = self._proc, None, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(wait)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def kill(self) -> None:
        """Kill the worker now (it hung, or a cancel was not honoured); the next call starts another."""
        with self._state_lock:
            proc, self._proc, self.ready = self._proc, None, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    # -- a generation --------------------------------------------------------------------
    def generate(
        self,
        request: protocol.Generation,
        timeout: float,
        cancelled: threading.Event,
        on_dispatch: Callable[[], None] | None = None,
    ) -> protocol.Frame:
        """The worker's reply to one generation (``done`` or ``error``).  Raises
        :class:`WorkerCrashed` when the worker dies, ProviderError on a hang or a cancel."""
        while not self.generation_lock.acquire(timeout=0.05):
            if cancelled.is_set():
                raise cancelled_error()
        try:
            try:
                self._wait_ready(cancelled)
                if on_dispatch is not None:  # the wait for the lock (and the load) was queueing
                    on_dispatch()
                return self._exchange(request, timeout, cancelled)
            except _WorkerGone:
                raise self._crashed() from None
        finally:
            self.generation_lock.release()

    def _wait_ready(self, cancelled: threading.Event) -> None:
        self.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while self.ready is None:
            if cancelled.is_set():
                raise cancelled_error()
            if time.monotonic() > deadline:
                self.kill()
                raise ProviderError(
                    f"the local model did not load within {READY_TIMEOUT:.0f}s",
                    transient=False,
                    error_type="TimeoutError",
                )
            assert self._replies is not None
            frame = self._replies.next(0.05)
            if frame is None:
                continue
            if frame.get("op") == protocol.LOAD_FAILED:
                self.stop()
                raise ProviderUnavailable(f"cannot load local model {self.path.name}: {frame.get('message')}")
            if frame.get("op") == protocol.READY:
                if self._build_needs_safe_mode(frame):
                    self.stop()
                    self.start()
                    continue
                self.ready = frame
                events.emit(
                    events.local_model_loaded,
                    model=self.path.name,
                    load_ms=float(frame.get("load_ms", 0.0)),
                    safe_mode=self.safe_mode,
                    kernels=self.kernels.reason,
                    restarts=len(self.crashes),
                )

    def _build_needs_safe_mode(self, ready: protocol.Frame) -> bool:
        """llama.cpp's own system info can show kernels the CPU flags did not (another OS,
        a CPU flag list that hides them): then the worker restarts in the safe mode before
        its first generation."""
        if self.safe_mode:
            return False
        choice = choose_kernels(cpu_flags(), str(ready.get("system_info", "")))
        if choice.safe_mode:
            logger.warning("local model: %s; restarting its worker in the safe mode", choice.reason)
            self.kernels = choice
        return choice.safe_mode

    def _exchange(self, request: protocol.Generation, timeout: float, cancelled: threading.Event) -> protocol.Frame:
        request_id = next(self._ids)
        message: protocol.GenerateRequest = {**request, "op": protocol.GENERATE, "id": request_id, "timeout": timeout}
        self._send(message)
        hard_deadline = time.monotonic() + timeout + HANG_GRACE
        assert self._replies is not None
        while True:
            frame = self._replies.next(0.05)
            if frame is not None and frame.get("id") == request_id:
                return frame
            if cancelled.is_set():
                self._cancel(request_id)
                raise cancelled_error()
            if time.monotonic() > hard_deadline:
                self.kill()
                raise ProviderError(
                    f"local model timed out after {timeout:.1f}s (its worker stopped answering and was killed)",
                    transient=False,
                    error_type="TimeoutError",
                )

    def _cancel(self, request_id: int) -> None:
        """Tell the worker to stop at its next token; kill it if it does not within the grace."""
        try:
            self._send({"op": protocol.CANCEL, "id": request_id})
            deadline = time.monotonic() + CANCEL_GRACE
            assert self._replies is not None
            while time.monotonic() < deadline:
                frame = self._replies.next(deadline - time.monotonic())
                if frame is not None and frame.get("id") == request_id:
                    return
        except _WorkerGone:
            pass
        self.kill()

    def _send(self, message: Mapping[str, object]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise _WorkerGone()
        try:
            proc.stdin.write(protocol.encode_frame(message))
            proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise _WorkerGone() from None

    def _crashed(self) -> WorkerCrashed:
        """Name the death, choose the mode of the next worker, start it, and say so."""
        with self._state_lock:
            proc, self._proc, self.ready = self._proc, None, None
        returncode: int | None = None
        if proc is not None:
            try:
                returncode = proc.wait(5)
            except subprocess.TimeoutExpired:  # closed its pipe but lives on: finish it
                proc.kill()
                returncode = proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        how = describe_exit(returncode)
        detail = self._stderr_tail()
        switched = ""
        if (
            returncode is not None
            and returncode < 0
            and -returncode in KERNEL_SIGNALS
            and not self.safe_mode
            and safe_mode_setting() != "off"
        ):
            self.kernels = KernelChoice(True, f"its worker {how} with llama.cpp's fast kernels on")
            switched = " in the safe mode (llama.cpp's extra buffer types off)"
        self.crashes.append(how)
        logger.warning("local model worker %s%s; restarting it%s", how, f" ({detail})" if detail else "", switched)
        self.start()
        return WorkerCrashed(f"local model worker {how}{f' ({detail})' if detail else ''}; restarted{switched}")

    def _stderr_tail(self) -> str:
        """The last line llama.cpp wrote before dying (e.g. a GGML_ASSERT), trimmed."""
        stream = self._stderr
        if stream is None:
            return ""
        try:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - STDERR_TAIL))
            lines = [line.strip() for line in stream.read().decode("utf-8", "replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1][:200] if lines else ""


def cancelled_error() -> ProviderError:
    return ProviderError("local generation cancelled", transient=False, error_type="CancelledError")


_WORKERS: dict[tuple[Path, int], LocalWorker] = {}
_WORKERS_LOCK = threading.Lock()


def worker_for(path: Path, n_ctx: int, threads: int) -> LocalWorker:
    """The process's worker for this model file and context size (created, not started)."""
    key = (path, n_ctx)
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = _WORKERS[key] = LocalWorker(path, n_ctx, threads)
        return worker


def running_workers() -> list[LocalWorker]:
    with _WORKERS_LOCK:
        return list(_WORKERS.values())


@atexit.register
def stop_workers() -> None:
    """End every worker with the process (they would also end on their own, at end of file)."""
    for worker in running_workers():
        worker.stop(wait=0.5)
