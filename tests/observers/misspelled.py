"""A user's observer with a misspelled handler, loaded by ``--observer`` in the tests."""

from __future__ import annotations

from orchestrator import events
from orchestrator.observers import Observer


class SlowCalls(Observer):
    def on_llm_call_finshed(self, p: events.LlmCallFinished) -> None:  # the "i" is missing
        print("slow", p.model)
