"""README.md renders as written under CommonMark (the renderer GitHub and PyPI follow): every
fence closes, every section is a heading, and every link inside the repository resolves."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "SECURITY.md", "docs/operations.md", "docs/design.md", "docs/providers.md"]


def parse(path: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text())


def slug(text: str) -> str:
    """The anchor GitHub gives a heading."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(tokens: list[Token]) -> dict[int, str]:
    """Source line → heading text."""
    return {tokens[i].map[0]: tokens[i + 1].content for i, t in enumerate(tokens)
            if t.type == "heading_open" and tokens[i].map is not None}


def links(tokens: list[Token]) -> list[str]:
    found = []
    for t in tokens:
        for child in t.children or []:
            if child.type == "link_open":
                found.append(str(child.attrs["href"]))
    return found


@pytest.mark.parametrize("name", DOCS)
def test_every_code_fence_closes(name: str) -> None:
    path = ROOT / name
    lines = path.read_text().splitlines()
    for t in parse(path):
        if t.type == "fence":
            assert t.map is not None
            closing = lines[t.map[1] - 1].strip()
            marker = re.escape(t.markup[0]) + f"{{{len(t.markup)},}}"
            assert t.map[1] - 1 > t.map[0] and re.fullmatch(marker, closing), (
                f"{name}:{t.map[0] + 1}: the code block opened here never closes")


@pytest.mark.parametrize("name", DOCS)
def test_every_section_is_a_heading(name: str) -> None:
    path = ROOT / name
    found = headings(parse(path))
    for number, line in enumerate(path.read_text().splitlines()):
        # h2 to h6 anywhere (a shell comment in a code block is "# ..."), the title on line 1
        if re.match(r"#{2,6} \S", line) or (number == 0 and line.startswith("# ")):
            assert number in found, f"{name}:{number + 1}: {line!r} does not render as a heading"


def test_the_readme_has_its_sections() -> None:
    titles = set(headings(parse(ROOT / "README.md")).values())
    for title in ("Walkthrough with the simulator", "Configuration", "Providers", "HTTP",
                  "Task states", "Storage layout (for consumers)", "Completion events", "CLI"):
        assert title in titles


@pytest.mark.parametrize("name", DOCS)
def test_every_internal_link_resolves(name: str) -> None:
    path = ROOT / name
    tokens = parse(path)
    anchors = {slug(text) for text in headings(tokens).values()}
    checked = 0
    for href in links(tokens):
        if re.match(r"[a-z][a-z0-9+.-]*:", href):
            continue  # an outside address
        target, _, anchor = href.partition("#")
        if target:
            file = (path.parent / target).resolve()
            assert file.exists(), f"{name}: link to {href!r}: no such file"
            if anchor and file.suffix == ".md":
                assert anchor in {slug(t) for t in headings(parse(file)).values()}, href
        else:
            assert anchor in anchors, f"{name}: link to {href!r}: no such heading"
        checked += 1
    if name == "README.md":
        assert checked > 5 and "#completion-events" in links(tokens)


def test_the_slug_is_githubs() -> None:
    assert slug("Storage layout (for consumers)") == "storage-layout-for-consumers"
    assert slug("Completion events") == "completion-events"


def test_the_walkthrough_shows_what_the_simulator_prints() -> None:
    from afterimage.simulator.server import export_lines

    printed = set(export_lines("http://127.0.0.1:9090", {}))
    shown = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("export AFTERIMAGE_")]
    assert shown and all(line in printed for line in shown), set(shown) - printed
