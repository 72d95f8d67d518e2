"""Worst-case token counts: the upper bounds the budget reserves before a call is sent."""

from __future__ import annotations

# Chat templates add a few tokens around the text; a token is at least one UTF-8 byte
# for the byte-level BPE tokenizers of every catalog model, so bytes + overhead is a
# true upper bound of the prompt's tokens.
_TEMPLATE_OVERHEAD_TOKENS = 64


def worst_case_input_tokens(system: str, prompt: str) -> int:
    return len(system.encode("utf-8")) + len(prompt.encode("utf-8")) + _TEMPLATE_OVERHEAD_TOKENS
