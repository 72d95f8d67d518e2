"""Loopback HTTP servers that speak the providers' real wire formats, scripted per test.

The official SDKs talk to these over real sockets (nothing in the SDKs is patched), so a
test exercises the SDK's request building, response parsing and error classes as a user
would meet them:

* ``openai``: ``POST /v1/chat/completions`` (OpenAI, DeepSeek, Kimi, OpenRouter, servers);
* ``anthropic``: ``POST /v1/messages``;
* ``gemini``: ``POST /v1beta/models/{model}:generateContent``.

A test queues :class:`Reply` objects (status, JSON or raw body, headers, a delay to hang
past the client's timeout); when the queue is empty the server answers like a competent
model: a one-task plan for a decomposition schema, a score for an evaluation schema,
code otherwise.  Every request is recorded with its headers and JSON body.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CODE_ANSWER = "```python\ndef add(a, b):\n    return a + b\n```"
PLAN = {"tasks": [{"id": "t1", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []}]}
DEFAULT_TOKENS = (120, 45)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """dict/list -> JSON; str/bytes -> sent as is (malformed bodies)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a hang past the client's timeout)."""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


# -- wire-format bodies ---------------------------------------------------------------


def openai_answer(
    text: str,
    tokens: tuple[int, int] = DEFAULT_TOKENS,
    model: str = "fake-model",
    finish: str = "stop",
    cached: int = 0,
    cache_write: int = 0,
) -> dict[str, Any]:
    """``cached``/``cache_write``: prompt tokens reported in ``prompt_tokens_details``."""
    usage: dict[str, Any] = {
        "prompt_tokens": tokens[0],
        "completion_tokens": tokens[1],
        "total_tokens": tokens[0] + tokens[1],
    }
    if cached or cache_write:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "cache_write_tokens": cache_write}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
        ],
        "usage": usage,
    }


def anthropic_answer(
    text: str | None = None,
    tool_input: Any = None,
    tokens: tuple[int, int] = DEFAULT_TOKENS,
    model: str = "claude-fake",
    stop: str | None = None,
    cache_read: int = 0,
    cache_write: int = 0,
) -> dict[str, Any]:
    """``tokens[0]`` is the API's ``input_tokens`` (the uncached part of the prompt);
    ``cache_read``/``cache_write`` are reported beside it, as the Messages API does."""
    if tool_input is not None:
        content = [{"type": "tool_use", "id": "toolu_1", "name": "answer", "input": tool_input}]
    else:
        content = [{"type": "text", "text": text or ""}]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop or ("tool_use" if tool_input is not None else "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            **({"cache_read_input_tokens": cache_read} if cache_read else {}),
            **({"cache_creation_input_tokens": cache_write} if cache_write else {}),
        },
    }


def gemini_answer(
    text: str,
    tokens: tuple[int, int] = DEFAULT_TOKENS,
    finish: str = "STOP",
    thoughts: int = 0,
    model: str = "gemini-fake",
    cached: int = 0,
) -> dict[str, Any]:
    usage = {
        "promptTokenCount": tokens[0],
        "candidatesTokenCount": tokens[1],
        "totalTokenCount": tokens[0] + tokens[1] + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage,
        "modelVersion": model,
    }


def error_body(kind: str, status: int, message: str, error_type: str = "error") -> dict[str, Any]:
    if kind == "anthropic":
        return {"type": "error", "error": {"type": error_type, "message": message}}
    if kind == "gemini":
        return {"error": {"code": status, "message": message, "status": error_type.upper()}}
    return {"error": {"message": message, "type": error_type, "code": None, "param": None}}


def error(
    kind: str,
    status: int,
    message: str = "scripted failure",
    *,
    retry_after: str | None = None,
    error_type: str = "error",
) -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(status, error_body(kind, status, message, error_type), headers)


# -- schemas in each wire format ------------------------------------------------------------


def request_schema(kind: str, body: Any) -> dict[str, Any] | None:
    """The JSON schema a request asks for, however its wire format carries it."""
    if not isinstance(body, dict):
        return None
    if kind == "anthropic":
        tools = body.get("tools") or []
        return tools[0].get("input_schema") if tools else None
    if kind == "gemini":
        config = body.get("generationConfig") or {}
        return config.get("responseJsonSchema") or config.get("responseSchema")
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["schema"]
    if fmt.get("type") == "json_object":
        return fmt.get("schema") or {"properties": _schema_from_prompt(body)}
    return None


def _schema_from_prompt(body: dict[str, Any]) -> dict[str, Any]:
    system = " ".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "system")
    if '"tasks"' in system:
        return {"tasks": {}}
    if '"score"' in system:
        return {"score": {}}
    return {}


def auto_content(schema: dict[str, Any] | None) -> Any:
    """What a competent model answers: a plan, a score, or code."""
    props = (schema or {}).get("properties", {})
    if "tasks" in props:
        return PLAN
    if "score" in props:
        return {"reasons": "correct and tested", "score": 0.95}
    return None


def auto_reply(kind: str, path: str, body: Any, tokens: tuple[int, int] = DEFAULT_TOKENS) -> Reply:
    content = auto_content(request_schema(kind, body))
    if kind == "anthropic":
        if content is not None:
            return Reply(body=anthropic_answer(tool_input=content, tokens=tokens))
        return Reply(body=anthropic_answer(CODE_ANSWER, tokens=tokens))
    text = json.dumps(content) if content is not None else CODE_ANSWER
    if kind == "gemini":
        return Reply(body=gemini_answer(text, tokens=tokens))
    return Reply(body=openai_answer(text, tokens=tokens, model=(body or {}).get("model", "fake")))


# -- the server -----------------------------------------------------------------------------

Script = Reply | Callable[[Recorded], Reply]


class FakeServer:
    """A loopback server for one wire format (``openai``, ``anthropic`` or ``gemini``)."""

    def __init__(self, kind: str, tokens: tuple[int, int] = DEFAULT_TOKENS) -> None:
        self.kind = kind
        self.tokens = tokens
        self.script: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self.fallback: Callable[[Recorded], Reply] | None = None
        """Answers when the script is empty (default: a competent model)."""
        self._release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                record = Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                reply = server._next(record)
                if reply.delay and server._release.wait(reply.delay):
                    return  # released at shutdown: drop the connection
                payload = reply.body
                data = (
                    payload
                    if isinstance(payload, bytes)
                    else (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
                )
                self.send_response(reply.status)
                content_type = "application/json" if not isinstance(payload, (str, bytes)) else "text/html"
                self.send_header("content-type", reply.headers.get("content-type", content_type))
                for name, value in reply.headers.items():
                    if name.lower() != "content-type":
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _next(self, record: Recorded) -> Reply:
        with self._lock:
            self.requests.append(record)
            step = self.script.popleft() if self.script else None
        if step is None and self.fallback is not None:
            return self.fallback(record)
        if step is None:
            return auto_reply(self.kind, record.path, record.body, self.tokens)
        return step(record) if callable(step) else step

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL the SDK is configured with."""
        root = f"http://127.0.0.1:{self.port}"
        return f"{root}/v1" if self.kind == "openai" else root

    def push(self, *steps: Script) -> FakeServer:
        self.script.extend(steps)
        return self

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def schemas(self) -> list[dict[str, Any] | None]:
        return [request_schema(self.kind, r.body) for r in self.requests]


class SleepRecorder:
    """The client's injectable sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "DEEPSEEK_API_KEY",
    "KIMI_API_KEY",
    "MOONSHOT_API_KEY",
    "OPENROUTER_API_KEY",
    "ORCHESTRATOR_SERVER_API_KEY",
)
BASE_URL_VARIABLES = (
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "GOOGLE_GEMINI_BASE_URL",
    "DEEPSEEK_BASE_URL",
    "KIMI_BASE_URL",
    "MOONSHOT_BASE_URL",
    "OPENROUTER_BASE_URL",
)


def clean_provider_env(monkeypatch: Any) -> None:
    """No key nor base URL of the developer's environment leaks into a test."""
    for name in (*KEY_VARIABLES, *BASE_URL_VARIABLES):
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class Endpoint:
    """How the registry finds one provider family: the wire format its server speaks, and
    the variables that hold its key and its base URL."""

    kind: str
    key_variable: str
    url_variable: str


ENDPOINTS = {
    "openai": Endpoint("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": Endpoint("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "google": Endpoint("gemini", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
}


def point_at(monkeypatch: Any, provider: str, server: FakeServer, key: str) -> None:
    """Make ``default_providers()`` reach ``provider`` at ``server`` with ``key`` (call
    :func:`clean_provider_env` first, so nothing else is configured)."""
    endpoint = ENDPOINTS[provider]
    monkeypatch.setenv(endpoint.key_variable, key)
    monkeypatch.setenv(endpoint.url_variable, server.url)
