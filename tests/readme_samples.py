"""A lesson README's "what it prints" sample, checked against what the lesson really printed.

A README shows a sample of its lesson's default run in a ```` ```text ```` block right after the line
``<!-- output: ... -->``. The lesson's test already runs the lesson; it hands the printed text to
:func:`sample_mismatch`, which checks that every line of the sample was printed, in the same order (lines the
sample leaves out may come between). ``...`` inside a sample line matches any text (timings, paths, ids), as in
the ``#>`` lines of README code blocks; a line that is only ``...`` stands for lines left out.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "<!-- output:"


def samples(readme: Path) -> list[list[str]]:
    """The lines of every sample block in *readme* (a README may show one per command)."""
    found = []
    for part in readme.read_text(encoding="utf-8").split(MARKER)[1:]:
        block = part.split("```text\n", 1)[1].split("\n```", 1)[0]
        found.append(block.splitlines())
    return found


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in line.rstrip().split("...")))


def sample_mismatch(sample: list[str], printed: str) -> str | None:
    """None when the sample's lines were printed in order; else the first line that was not, for the message."""
    lines = [line.rstrip() for line in printed.splitlines()]
    position = 0
    for wanted in sample:
        if wanted.strip() == "...":
            continue
        pattern = _pattern(wanted)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        if position == len(lines):
            return f"the README's sample line was not printed (in this order): {wanted!r}"
        position += 1
    return None
