"""Worst-case token counts: the upper bounds the budget reserves before a call is sent."""

from __future__ import annotations

import json

from ..domain.values import JsonSchema

# Chat templates add a few tokens around the text; a token is at least one UTF-8 byte
# for the byte-level BPE tokenizers of every catalog model, so bytes + overhead is a
# true upper bound of the prompt's tokens.
_TEMPLATE_OVERHEAD_TOKENS = 64
# A JSON answer sends the schema too, in some form: as a response format (OpenAI,
# Gemini), as the input schema of a tool plus the provider's tool-use system prompt
# (Anthropic documents 313-346 tokens for it), or written into the system prompt with an
# instruction (the last rung of the OpenAI-compatible JSON ladder).  Its bytes plus this
# allowance bound all of them.
_SCHEMA_OVERHEAD_TOKENS = 512


def worst_case_input_tokens(system: str, prompt: str, json_schema: JsonSchema | None = None) -> int:
    """An upper bound of the input tokens any catalog model counts for this request."""
    tokens = len(system.encode("utf-8")) + len(prompt.encode("utf-8")) + _TEMPLATE_OVERHEAD_TOKENS
    if json_schema is not None:
        schema = json.dumps(json_schema, separators=(",", ":"))  # escaped: never fewer bytes
        tokens += len(schema.encode("utf-8")) + _SCHEMA_OVERHEAD_TOKENS
    return tokens


# No token of the catalog's tokenizers is longer than this many bytes (SmolLM2's longest
# is 32; byte-level BPE vocabularies of remote models stay well under it), so a text's
# UTF-8 length divided by it is a lower bound of its tokens: what the CLI uses to refuse,
# before a run, a prompt that no candidate model's context window can hold.
MAX_TOKEN_BYTES = 128


def least_input_tokens(*texts: str) -> int:
    """A lower bound of the tokens of ``texts`` for any catalog model."""
    total = sum(len(t.encode("utf-8")) for t in texts)
    return -(-total // MAX_TOKEN_BYTES)
