"""A lesson README's "what it prints" sample, checked against what the lesson really printed.

A README shows a sample of what a command prints in a ```` ```text ```` block right after the line
``<!-- output: <what was run>, checked by <test> -->``. The test that runs the command anyway hands the printed
text to :func:`sample_mismatch`, which checks that every line of the sample was printed, in the same order (lines the
sample leaves out may come between). ``...`` inside a sample line matches any text (timings, paths, ids), as in
the ``#>`` lines of README code blocks; a line that is only ``...`` stands for lines left out.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "<!-- output:"


def samples(readme: Path) -> dict[str, list[str]]:
    """Every sample block of *readme* (a README may show one per command), keyed by its marker's text."""
    found = {}
    for part in readme.read_text(encoding="utf-8").split(MARKER)[1:]:
        label, _, rest = part.partition("-->")
        block = rest.split("```text\n", 1)[1].split("\n```", 1)[0]
        found[label.strip()] = block.splitlines()
    return found


def sample(readme: Path, key: str) -> list[str]:
    """The one sample block of *readme* whose marker names *key* (a command, say)."""
    (lines,) = [lines for label, lines in samples(readme).items() if key in label]
    return lines


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
