"""The README and the guides in docs/: every relative link leads to a file, and every #anchor to a heading there."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as dashes."""
    headings = re.findall(r"(?m)^#+ (.+)$", re.sub(r"(?ms)^```.*?^```", "", markdown))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s): and mailto: links leave the repository
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_leads_somewhere(page):
    assert not broken_links(page), f"{page.relative_to(ROOT)}: {broken_links(page)}"


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Batching and more\n")
    page.write_text("[a](other.md#batching-and-more) [b](missing.md) [c](other.md#nope) [d](https://x.org/#y)\n")
    assert broken_links(page) == ["missing.md: no file " + str(tmp_path / "missing.md"),
                                  "other.md#nope: no heading #nope in other.md"]


TEXT = [*PAGES, ROOT / "Makefile", *(f for folder in ("lib", "space", "tests", "notebooks", ".ci")
                                     for f in sorted((ROOT / folder).rglob("*"))
                                     if f.suffix in (".py", ".md", ".ipynb", ".txt", "") and f.is_file()
                                     and "work" not in f.relative_to(ROOT).parts)]


def test_no_text_of_the_project_names_an_issue_number():
    """Readers cannot open the project's issue tracker: no issue number, in any file a reader or learner opens.
    (Upstream references such as pytorch/pytorch#135712 are links a reader can follow.)"""
    pattern = re.compile(r"(?i)\bissues? #?\d+")
    hits = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in TEXT
            for m in pattern.finditer(f.read_text(errors="replace"))]
    assert not hits, hits
