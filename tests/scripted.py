"""A scripted in-process provider for fast engine tests (never the only test of a feature)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderResponse

Answer = str | ProviderResponse | ProviderError | Callable[[ProviderRequest], "str | ProviderResponse"]


def decomposition(*tasks: dict) -> str:
    return json.dumps({"tasks": list(tasks)})


@dataclass
class ScriptedProvider:
    """Answers by call kind: decompose (schema with "tasks"), evaluate (schema with
    "score"), critique/other.  ``latency`` seconds per call; every request is recorded."""

    name: str = "local"
    plan: str = decomposition({"id": "t1", "type": "code_generation", "prompt": "write add(a, b)", "depends_on": []})
    answer: Answer = "```python\ndef add(a, b):\n    return a + b\n```"
    score: float = 0.95
    reasons: str = "scripted"
    latency: float = 0.0
    tokens: tuple[int, int] = (100, 50)
    available: bool = True
    requests: list[ProviderRequest] = field(default_factory=list)

    def availability(self, model: str) -> tuple[bool, str]:
        return (True, "") if self.available else (False, "scripted: unavailable")

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        schema = request.json_schema or {}
        props = schema.get("properties", {})
        if "tasks" in props:
            answer: Answer = self.plan
        elif "score" in props:
            answer = json.dumps({"reasons": self.reasons, "score": self.score})
        else:
            answer = self.answer
        if callable(answer) and not isinstance(answer, ProviderError):
            answer = answer(request)
        if isinstance(answer, ProviderError):
            raise answer
        if isinstance(answer, ProviderResponse):
            return answer
        return ProviderResponse(str(answer), self.tokens[0], self.tokens[1], "stop", request.model)

    def calls_of(self, kind: str) -> list[ProviderRequest]:
        """Requests whose prompt or schema marks them as ``kind`` (decompose/evaluate/other)."""
        out = []
        for r in self.requests:
            props = (r.json_schema or {}).get("properties", {})
            k = "decompose" if "tasks" in props else "evaluate" if "score" in props else "other"
            if k == kind:
                out.append(r)
        return out
