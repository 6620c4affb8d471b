"""The one exception type lessons turn into a friendly message instead of a traceback."""

from __future__ import annotations


class CourseError(Exception):
    """An expected mistake (missing driver, server down, bad URL, ...) with a fix the reader can apply.

    ``str(error)`` is the whole message: what went wrong on the first line, what to do next below it.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  -> {fix}")
