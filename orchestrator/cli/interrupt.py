"""Ctrl-C in a second: how the CLI runs a project so that an interrupt stops it quickly
and still leaves the summary of what finished.

``asyncio.run`` waits, when it closes, for every worker thread (a local-model
generation, a pytest sandbox) to end on its own, which took minutes.  Here:

* the first SIGINT cancels the run (the task loops keep their best output, every event
  pair is closed), kills the sandboxed test processes (they run in their own session,
  out of the terminal's reach), and the local model's worker stops at its next token;
  the loop is closed without waiting for worker threads;
* a second SIGINT exits at once (exit 130, one line);
* :func:`exit_when_stuck` (the command's entry point, never an in-process caller) ends
  the process after the summary was written, should a worker thread still be busy; from
  then on a second SIGINT (while the interpreter winds down: Ray's and OpenTelemetry's
  exit hooks) still exits 130 at once, and in the interpreter's last moments (after every
  exit hook, see :func:`ignore_sigint_at_the_end`) it is ignored: the command never dies
  of the signal (exit -2).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, NoReturn, TypeVar

from ..domain.errors import OrchestratorError
from .errors import EXIT_INTERRUPTED

T = TypeVar("T")

LINGER_SECONDS = 1.0
"""How long the interrupted command waits for busy worker threads before exiting."""

_EXITING_INTERRUPTED = threading.Event()


class Interrupted(OrchestratorError):
    """The run was interrupted (SIGINT) and cancelled."""


class InterruptibleRun:
    """Runs one coroutine on a fresh event loop, with the SIGINT rules above.  The
    handler stays installed until :meth:`close`, so a second Ctrl-C while the summary is
    being written still exits at once."""

    def __init__(self, on_hard_exit: Callable[[], None] | None = None) -> None:
        """``on_hard_exit``: run just before a second Ctrl-C ends the process (e.g. kill a
        local Ray cluster the command started, which would otherwise outlive it)."""
        self.on_hard_exit = on_hard_exit
        self.interrupted_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._previous: signal.Handlers | Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False
        self._started = False

    def __enter__(self) -> InterruptibleRun:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    @property
    def interrupted(self) -> bool:
        return self.interrupted_at is not None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result; :class:`Interrupted` when a SIGINT cancelled it."""
        self._started = True
        loop = self._loop = asyncio.new_event_loop()
        executor = ThreadPoolExecutor(thread_name_prefix="orchestrator-worker")
        loop.set_default_executor(executor)
        task: asyncio.Task[T] = loop.create_task(coro)
        self._task = task
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if self.interrupted:
                raise Interrupted() from None
            raise
        finally:
            try:
                _cancel_remaining(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                # interrupted: do not wait for busy workers (they were told to stop)
                executor.shutdown(wait=not self.interrupted, cancel_futures=True)
                loop.close()
                self._loop = self._task = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted_at is not None:
            exit_now(self.on_hard_exit)
        self.interrupted_at = time.monotonic()
        from ..governance.sandbox import kill_running

        kill_running()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        elif not self._started:  # before the run: the usual KeyboardInterrupt
            raise KeyboardInterrupt
        # after the run: the summary is being written; the command exits 130 once it is


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def exit_now(before: Callable[[], None] | None = None) -> NoReturn:
    """A second Ctrl-C: one line, exit 130 (``before`` first, e.g. kill a local Ray
    cluster the command started, which would otherwise outlive it)."""
    os.write(2, b"orchestrator: interrupted again: exiting now\n")
    try:
        if before is not None:
            before()
    finally:
        os._exit(EXIT_INTERRUPTED)


def exit_when_stuck(code: int) -> None:
    """After an interrupted command wrote its summary: give busy worker threads
    :data:`LINGER_SECONDS` to end, then leave without waiting for them (the
    interpreter would otherwise join them at exit).  A further SIGINT exits at once."""
    if code != EXIT_INTERRUPTED:
        return
    _EXITING_INTERRUPTED.set()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda signum, frame: exit_now())
    deadline = time.monotonic() + LINGER_SECONDS
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon and t is not threading.current_thread() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def ignore_sigint_at_the_end() -> None:
    """Registered by the entry point before anything else (exit hooks run last-registered
    first, so this one runs after Ray's and OpenTelemetry's): once an interrupted command's
    exit hooks have all run, SIGINT is ignored.  The interpreter's teardown removes
    Python's handlers, and a Ctrl-C then would end the process as killed by it (-2)
    instead of 130; there is nothing left for it to stop."""
    atexit.register(_ignore_late_sigint)


def _ignore_late_sigint() -> None:
    if _EXITING_INTERRUPTED.is_set() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
