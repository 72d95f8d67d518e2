"""MkDocs hook: the docstrings' reStructuredText habits read well on the API pages.

The code's docstrings cross-reference with Sphinx roles (:class:`~orchestrator.x.Y`), which
Markdown renders as the role's name next to a code span.  Here each such pair becomes an
mkdocs-autorefs reference: a link to the object's API entry when one of the pages documents
it, else the plain name (``optional``: no warning, so ``--strict`` stays meaningful for real
broken links).  A paragraph ending in ``::`` (reST's "a literal block follows", which
Markdown shows as an indented code block anyway) ends in one colon.  Local code only:
nothing is fetched at build time."""

from __future__ import annotations

import html
import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(~?)([\w.]+)(\(\))?</code>")


def _autoref(match: re.Match[str]) -> str:
    tilde, target, call = match.group(1), match.group(2), match.group(3) or ""
    shown = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
    if target.startswith("."):  # relative to the docstring's module: not resolvable here
        return f"<code>{html.escape(shown)}{call}</code>"
    return f'<autoref identifier="{html.escape(target)}" optional><code>{html.escape(shown)}{call}</code></autoref>'


def on_page_content(html_text: str, **kwargs: Any) -> str:
    return _ROLE.sub(_autoref, html_text).replace("::</p>", ":</p>")
