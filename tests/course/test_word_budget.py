"""Word budget (issue 22): the root README and each lesson's README stay short enough to read.

Measured as the brief says: the page's text without fenced code blocks and HTML comments, split on whitespace.
Pages beside a lesson (``SDK_FEATURES.md``, ``PITFALLS.md``, ...) have no budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.snippets import REPO_ROOT, prose_words

ROOT_README_WORDS = 900
LESSON_README_WORDS = 1_500
LESSON_READMES = sorted((REPO_ROOT / "session_management").glob("[0-9][0-9]_*/README.md"))
PAGES = [(REPO_ROOT / "README.md", ROOT_README_WORDS), *[(readme, LESSON_README_WORDS) for readme in LESSON_READMES]]


@pytest.mark.parametrize(("page", "budget"), [pytest.param(page, budget, id=str(page.relative_to(REPO_ROOT)))
                                              for page, budget in PAGES])
def test_prose_within_its_budget(page: Path, budget: int) -> None:
    words = prose_words(page.read_text(encoding="utf-8"))
    assert words <= budget, (f"{page.relative_to(REPO_ROOT)}: {words} words of prose, {words - budget} over its "
                             f"budget of {budget}; move detail to a page beside the lesson, or cut")


def test_every_lesson_has_a_budget() -> None:
    lessons = [path for path in (REPO_ROOT / "session_management").iterdir() if path.name[:2].isdigit()]
    assert len(PAGES) == len(lessons) + 1 >= 12


def test_the_count_is_prose_only() -> None:
    page = (
        "# One two\n"
        "```python\nthree = 'four'\n```\n"
        "<!-- snippet: five -->\n"
        "six <!-- a comment\nover lines --> seven\n"
        "  ```text\n  eight nine\n  ```\n"
        "`ten` eleven.\n"
    )
    assert prose_words(page) == 7  # #, One, two, six, seven, `ten`, eleven.
    assert prose_words("a\n```\nunclosed code\n") == 1
