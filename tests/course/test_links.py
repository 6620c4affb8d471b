"""Every relative link in the course's pages reaches a file, and a heading when it names one (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.lessons import REPO_ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def pages() -> list[Path]:
    return sorted(p for p in [*REPO_ROOT.glob("*.md"), *(REPO_ROOT / "session_management").rglob("*.md")])


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not this test's business
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading #{fragment} in {linked.name}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_link_reaches_its_target(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## 3. Tables: `create_tables`, and MySQL\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#3-tables-create_tables-and-mysql) [gone](missing.md) [old](other.md#quick-start)\n"
                    "[web](https://example.com/x)\n```\n[in code](nowhere.md)\n```\n")
    assert broken_links(page) == ["missing.md: no such file",
                                  "other.md#quick-start: no heading #quick-start in other.md"]
