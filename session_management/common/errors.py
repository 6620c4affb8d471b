"""The one exception type lessons turn into a friendly message instead of a traceback."""

from __future__ import annotations

import re


class CourseError(Exception):
    """An expected mistake (missing driver, server down, bad URL, ...) with a fix the reader can apply.

    ``str(error)`` is the whole message on one line: what went wrong, then ``-> what to do``. Line breaks in
    either part (a driver's multi-line message, say) are folded, so the message stays one line on a terminal
    and in a log.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = _one_line(problem)
        self.fix = None if fix is None else _one_line(fix)
        super().__init__(self.problem if self.fix is None else f"{self.problem} -> {self.fix}")


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text.strip())
