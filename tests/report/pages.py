"""Reading a report's HTML (as written, or as the browser's DOM after the scripts ran)
with the standard library's parser: the bars, the totals, the tables, the data block."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Parsed:
    tags: Counter = field(default_factory=Counter)
    bars: Counter = field(default_factory=Counter)
    """Timeline bars by kind (``task``, ``llm``...)."""
    texts: dict[str, str] = field(default_factory=dict)
    """Text of every element with an id."""
    handlers: list[str] = field(default_factory=list)
    """Attributes named on* (event handlers) and style attributes: none may exist."""
    scripts: list[dict[str, str | None]] = field(default_factory=list)
    data: dict | None = None
    table_rows: dict[str, list[list[str]]] = field(default_factory=dict)
    body_attrs: dict[str, str | None] = field(default_factory=dict)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self.open: list[tuple[str, str | None]] = []  # (tag, id)
        self.text: dict[str, list[str]] = {}
        self.table: str | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.in_data = False
        self.data_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.out.tags[tag] += 1
        for name, _ in attrs:
            if name.startswith("on") or name == "style":
                self.out.handlers.append(f"{tag}[{name}]")
        if tag == "body":
            self.out.body_attrs = a
        if tag == "script":
            self.out.scripts.append(a)
            self.in_data = a.get("id") == "report-data"
        if tag == "rect" and "bar" in (a.get("class") or "").split():
            kinds = [c[2:] for c in (a.get("class") or "").split() if c.startswith("k-")]
            self.out.bars[kinds[0] if kinds else "?"] += 1
        if tag == "table":
            self.table = a.get("id")
            if self.table:
                self.out.table_rows[self.table] = []
        if tag == "tr" and self.table:
            self.row = []
        if tag in ("td", "th") and self.row is not None:
            self.cell = []
        if tag not in ("br", "meta", "link", "input", "img", "hr", "line", "rect", "circle", "path"):
            self.open.append((tag, a.get("id")))
        if a.get("id"):
            self.text[a["id"]] = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self.open and self.open[-1][0] == tag:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_data = False
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        if tag == "tr" and self.row is not None and self.table:
            self.out.table_rows[self.table].append(self.row)
            self.row = None
        if tag == "table":
            self.table = None
        while self.open:
            t, _ = self.open.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_data:
            self.data_text.append(data)
        for _, ident in self.open:
            if ident:
                self.text[ident].append(data)
        if self.cell is not None:
            self.cell.append(data)

    def result(self) -> Parsed:
        self.out.texts = {k: " ".join("".join(v).split()) for k, v in self.text.items()}
        if self.data_text:
            self.out.data = json.loads("".join(self.data_text))
        return self.out


def parse(html: str) -> Parsed:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.result()


def rows(parsed: Parsed, table: str) -> list[list[str]]:
    """A table's body rows (its header row dropped)."""
    return parsed.table_rows[table][1:]
