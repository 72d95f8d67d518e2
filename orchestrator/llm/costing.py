"""Worst-case token counts: the upper bounds the budget reserves before a call is sent."""

from __future__ import annotations

# Chat templates add a few tokens around the text; a token is at least one UTF-8 byte
# for the byte-level BPE tokenizers of every catalog model, so bytes + overhead is a
# true upper bound of the prompt's tokens.
_TEMPLATE_OVERHEAD_TOKENS = 64


def worst_case_input_tokens(system: str, prompt: str) -> int:
    return len(system.encode("utf-8")) + len(prompt.encode("utf-8")) + _TEMPLATE_OVERHEAD_TOKENS


# No token of the catalog's tokenizers is longer than this many bytes (SmolLM2's longest
# is 32; byte-level BPE vocabularies of remote models stay well under it), so a text's
# UTF-8 length divided by it is a lower bound of its tokens: what the CLI uses to refuse,
# before a run, a prompt that no candidate model's context window can hold.
MAX_TOKEN_BYTES = 128


def least_input_tokens(*texts: str) -> int:
    """A lower bound of the tokens of ``texts`` for any catalog model."""
    total = sum(len(t.encode("utf-8")) for t in texts)
    return -(-total // MAX_TOKEN_BYTES)
