"""The one way every command of the course starts and ends.

Each lesson's ``if __name__ == "__main__":`` block (and ``python -m session_management``) hands its entry point
to :func:`run_main`, so expected mistakes end the same way everywhere: one line on stderr that says what went
wrong and how to fix it, exit status 2, no traceback. Ctrl+C ends quietly with the conventional status 130.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable

from .errors import CourseError

EXIT_MISTAKE = 2
EXIT_INTERRUPTED = 130


def run_main(entry: Callable[[], object]) -> int:
    """Call *entry* (awaiting it with ``asyncio.run`` if it returns a coroutine) and return its exit status.

    A :class:`CourseError` becomes ``error: <problem> -> <fix>`` on stderr and ``SystemExit(2)``;
    ``KeyboardInterrupt`` becomes ``SystemExit(130)``. An int returned by *entry* is the exit status
    (anything else counts as 0).
    """
    try:
        result = entry()
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except CourseError as error:
        sys.stdout.flush()  # the transcript so far first, then the message
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_MISTAKE) from None
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
