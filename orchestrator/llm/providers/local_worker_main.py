"""The embedded model's worker process: the only process that runs llama.cpp.

Why a process of its own (as Ollama and LM Studio run llama.cpp): native code can die
by a signal - a SIGSEGV in a CPU kernel (llama.cpp's AMX kernels on some Xeons), a
SIGABRT from a ``GGML_ASSERT`` (a grammar that reaches an empty stack), a SIGILL, the
OOM killer.  In our own process that ends the run with no summary; here it ends one
call, and the parent (:mod:`.local_worker`) restarts this process and retries.

This file runs as a script (``python -P local_worker_main.py ...``), not as a module
of the package: it imports only the standard library and ``llama_cpp``, so starting it
does not build the model catalog, and ``-P`` keeps its own directory (which holds
modules such as ``secrets.py``) off ``sys.path``.  The parent imports it only for the
framing helpers and the names of the messages.

The protocol: length-prefixed JSON frames (4 bytes big-endian length, then UTF-8
JSON), requests on stdin, replies on the original stdout.  File descriptor 1 is then
pointed at stderr, so anything native code prints cannot corrupt a frame.

* the worker sends ``ready`` (or ``load_failed``) once the model is loaded;
* ``generate`` -> ``done`` or ``error``; a ``cancel`` naming the request's id stops the
  generation at its next token (a reader thread reads it while the main thread
  generates: ctypes releases the GIL during llama.cpp calls);
* end of file on stdin (the parent exited or closed us) ends the process at once.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_cpp import llama_model_params

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20
"""A frame larger than this is a broken stream, not a message."""

READY = "ready"
LOAD_FAILED = "load_failed"
GENERATE = "generate"
CANCEL = "cancel"
DONE = "done"
ERROR = "error"

FAULT_ENV = "ORCHESTRATOR_LOCAL_WORKER_FAULT"
"""Fault injection for tests: ``SIGNAME:N`` makes the worker kill itself with that real
signal at the N-th token of its first generation.  The parent passes it to the first
worker of a model only (the restarted one serves the retry), or to every worker when the
value ends in ``:every``."""

Frame = dict[str, Any]
"""A message as read from the other process (JSON): its fields are checked where they are
used, by the ``op`` it names."""


class Generation(TypedDict):
    """What the provider asks the worker to generate."""

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    repeat_penalty: float
    schema: dict[str, Any] | None
    """A JSON Schema the answer must follow (a grammar in llama.cpp), or None."""
    seed: NotRequired[int | None]


class GenerateRequest(Generation):
    op: str
    id: int
    timeout: float


class Done(TypedDict):
    op: str
    id: int
    text: str
    output_tokens: int
    input_tokens: int
    finish_reason: str
    response_id: str | None
    generation_ms: float


class Failed(TypedDict):
    op: str
    id: int
    type: str
    message: str


SAFE_MODE_FIELD = "use_extra_bufts"
"""The llama.cpp model parameter the safe mode turns off: "extra buffer types", i.e. the
AMX and weight-repacking CPU kernels (llama.cpp's ``--no-repack``)."""


def encode_frame(message: Mapping[str, object]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


def write_frame(stream: IO[bytes], message: Mapping[str, object]) -> None:
    stream.write(encode_frame(message))
    stream.flush()


def read_exact(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes, or None at end of file."""
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> Frame | None:
    """The next message, or None at end of file (a broken stream counts as one)."""
    header = read_exact(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        return None
    body = read_exact(stream, size)
    if body is None:
        return None
    message = json.loads(body)
    return message if isinstance(message, dict) else None


@contextmanager
def model_params_with(**fields: object) -> Iterator[None]:
    """llama-cpp-python's ``Llama(...)`` exposes no argument for some model parameters
    (``use_extra_bufts`` among them).  For the constructor call only, its source of
    default parameters returns them with ``fields`` set; put back afterwards.  A field
    this build of llama-cpp-python does not have is an error, never silently ignored."""
    import llama_cpp.llama_cpp as bindings

    original: Callable[[], llama_model_params] = bindings.llama_model_default_params
    known = {field[0] for field in original().__class__._fields_}
    missing = sorted(set(fields) - known)
    if missing:
        raise RuntimeError(f"this llama-cpp-python has no model parameter {', '.join(missing)}")

    def defaults() -> llama_model_params:
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    bindings.llama_model_default_params = defaults
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


def load_model(path: str, n_ctx: int, threads: int, extra_bufts: bool) -> Llama:
    from llama_cpp import Llama

    with model_params_with(**{SAFE_MODE_FIELD: extra_bufts}):
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)


class Worker:
    """Serves generations one at a time; a reader thread takes requests and cancels."""

    def __init__(self, llm: Llama, replies: IO[bytes], fault: tuple[signal.Signals, int] | None = None) -> None:
        self.llm = llm
        self.fault = fault
        self.replies = replies
        self.requests: queue.Queue[Frame] = queue.Queue()
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()

    def read_requests(self, stream: IO[bytes]) -> None:
        while True:
            message = read_frame(stream)
            if message is None:  # the parent is gone or closed us: stop now, even mid-generation
                os._exit(0)
            if message.get("op") == CANCEL:
                with self.lock:
                    self.cancelled.add(int(message["id"]))
            else:
                self.requests.put(message)

    def serve(self) -> None:
        while True:
            request = self.requests.get()
            if request.get("op") == GENERATE:
                self.reply(self.generate(request))

    def reply(self, message: Done | Failed) -> None:
        with self.lock:
            write_frame(self.replies, message)

    def is_cancelled(self, request_id: int) -> bool:
        with self.lock:
            return request_id in self.cancelled

    def generate(self, request: Frame) -> Done | Failed:
        request_id = int(request["id"])
        kwargs: dict[str, Any] = {
            "messages": request["messages"],
            "max_tokens": request["max_tokens"],
            "temperature": request["temperature"],
            "repeat_penalty": request.get("repeat_penalty", 1.0),
            "stream": True,
        }
        if request.get("schema") is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request["schema"]}
        if request.get("seed") is not None:
            kwargs["seed"] = request["seed"]
        deadline = time.monotonic() + float(request["timeout"])
        parts: list[str] = []
        tokens = 0
        finish_reason = "stop"
        response_id = None
        started = time.perf_counter()
        try:
            if self.is_cancelled(request_id):  # cancelled while it waited in the queue
                return {
                    "op": ERROR,
                    "id": request_id,
                    "type": "CancelledError",
                    "message": "local generation cancelled",
                }
            completion = self.llm.create_chat_completion(**kwargs)
            if not isinstance(completion, Generator):  # stream=True: a generator of chunks
                raise RuntimeError("llama-cpp-python did not stream the completion")
            stream = completion
            for chunk in stream:
                response_id = response_id or chunk.get("id")
                choice = chunk["choices"][0]
                content = choice["delta"].get("content")
                if content:
                    parts.append(content)
                    tokens += 1
                    if self.fault is not None and tokens >= self.fault[1]:
                        os.kill(os.getpid(), self.fault[0])
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
                if self.is_cancelled(request_id):
                    stream.close()
                    return {
                        "op": ERROR,
                        "id": request_id,
                        "type": "CancelledError",
                        "message": "local generation cancelled",
                    }
                if time.monotonic() > deadline:
                    stream.close()
                    return {
                        "op": ERROR,
                        "id": request_id,
                        "type": "TimeoutError",
                        "message": f"local model timed out after {float(request['timeout']):.1f}s",
                    }
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than the context window
            return {"op": ERROR, "id": request_id, "type": type(exc).__name__, "message": f"local model error: {exc}"}
        finally:
            with self.lock:
                self.cancelled.discard(request_id)
        return {
            "op": DONE,
            "id": request_id,
            "text": "".join(parts),
            "output_tokens": tokens,
            "input_tokens": max(0, int(self.llm.n_tokens) - tokens),
            "finish_reason": finish_reason,
            "response_id": response_id,
            "generation_ms": round((time.perf_counter() - started) * 1000, 3),
        }


def parse_fault(value: str) -> tuple[signal.Signals, int] | None:
    name, _, token = value.removesuffix(":every").partition(":")
    try:
        return signal.Signals[name.strip().upper()], max(1, int(token or 1))
    except (KeyError, ValueError):
        return None


def main(argv: list[str]) -> int:
    path, n_ctx, threads, extra = argv[0], int(argv[1]), int(argv[2]), argv[3] == "on"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (Ctrl-C is its business)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # native code printing to stdout must not break a frame
    requests = os.fdopen(0, "rb", buffering=0)
    started = time.perf_counter()
    try:
        import llama_cpp

        llm = load_model(path, n_ctx, threads, extra)
    except (ImportError, ValueError, RuntimeError, OSError) as exc:
        write_frame(replies, {"op": LOAD_FAILED, "message": f"{type(exc).__name__}: {exc}"})
        return 1
    write_frame(
        replies,
        {
            "op": READY,
            "pid": os.getpid(),
            "load_ms": round((time.perf_counter() - started) * 1000, 3),
            SAFE_MODE_FIELD: bool(getattr(llm.model_params, SAFE_MODE_FIELD)),
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            "llama_cpp_version": getattr(llama_cpp, "__version__", "unknown"),
            "threads": threads,
        },
    )
    worker = Worker(llm, replies, parse_fault(os.environ.get(FAULT_ENV, "")))
    threading.Thread(target=worker.read_requests, args=(requests,), daemon=True, name="requests").start()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
