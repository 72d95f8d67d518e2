"""The documentation holds together without building the site: every page mkdocs.yml's nav
names exists, every docs page is in the nav, and every relative link of README.md and
docs/ reaches a file (and, for a Markdown page, the heading its anchor names).

``mkdocs build --strict`` in .ci/run checks the same and more (the API pages rendered from
the docstrings); this is the fast check a contributor runs with the tests.  The event
catalogue page's table against the bus (signals, pairs and payload fields) is checked by
``tests/events/test_catalogue.py``."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


class _Loader(yaml.SafeLoader):
    """mkdocs.yml names Python objects (``!!python/name:``); here only the nav matters."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def _config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _prose(path: Path) -> list[str]:
    """The file's lines outside code fences (links in code are examples, not links)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's toc extension (MkDocs) and GitHub make it
    for the headings we write: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in _prose(path):
        m = _HEADING.match(line)
        if m:
            found.add(slug(m.group(2)))
    return found


def _links(path: Path) -> list[str]:
    return [m.group(1) or m.group(2) for line in _prose(path) for m in _LINK.finditer(re.sub(r"`[^`]*`", "", line))]


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    config = _config()
    assert config["docs_dir"] == "docs" and config["strict"] is True
    nav = _nav_pages(config["nav"])
    assert len(nav) >= 20  # the nav really was read
    assert len(nav) == len(set(nav)), "a page is in the nav twice"
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert missing == []
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(pages - set(nav)) == [], "pages no reader can reach from the nav"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_reaches_a_file_and_its_anchor(path):
    broken = []
    for link in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = unquote(link).partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{link}: no such file")
            continue
        if anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{link}: {file.relative_to(ROOT)} has no heading with the anchor #{anchor}")
    assert broken == []


def test_the_link_checker_finds_links_and_anchors():
    """The checks above pass vacuously if the link or heading patterns stop matching."""
    readme_links = _links(ROOT / "README.md")
    assert "docs/runs.md#acceptance-checks" in readme_links and "docs/api/index.md" in readme_links
    assert {"acceptance-checks", "run-profiles", "what-a-run-does"} <= anchors(DOCS / "runs.md")
    assert "the-embedded-models-worker-process" in anchors(DOCS / "machines.md")
    assert "orchestrator-doctor" in anchors(DOCS / "machines.md")
    assert slug("For the CLI: `setup_observers`") == "for-the-cli-setup_observers"
    assert slug("At scale: 10,000 projects") == "at-scale-10000-projects"
    assert sum(len(_links(p)) for p in MARKDOWN) > 100
