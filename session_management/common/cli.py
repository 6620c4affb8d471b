"""The one way every command of the course starts and ends.

Each lesson's ``if __name__ == "__main__":`` block (and ``python -m session_management``) hands its entry point
and arguments to :func:`run_lesson`, so expected mistakes end the same way everywhere: one line on stderr that
says what went wrong and how to fix it, exit status 2, no traceback. Ctrl+C ends quietly with the conventional
status 130; SIGTERM (a timeout, ``kill``) ends the same way, status 143, so that ``with`` blocks still remove
what they started (lesson 12's throwaway clusters: Python's default SIGTERM ends the process on the spot).
A command with more expected endings (lesson 08's operator tool: a database that refuses a statement, a pipe
closed early) names them as :class:`Ending` options instead of writing its own handler.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .errors import CourseError

EXIT_MISTAKE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl+C's KeyboardInterrupt would be: asyncio and ``with`` blocks unwind the same way."""


@dataclass(frozen=True)
class Ending:
    """How a command ends on one more kind of exception: this exit status, and ``error: <says(error)>`` on
    stderr (no line when *says* is None)."""

    status: int
    says: Callable[[BaseException], str] | None = None


def run_main(entry: Callable[..., object], *args: Any, shown: Callable[[str], str] = str,
             endings: Mapping[type[BaseException], Ending] | None = None) -> int:
    """Call ``entry(*args)`` (awaiting it with ``asyncio.run`` if it returns a coroutine); return its exit status.

    A :class:`CourseError` becomes ``error: <problem> -> <fix>`` on stderr and ``SystemExit(2)``;
    ``KeyboardInterrupt`` becomes ``SystemExit(130)``; an exception named in *endings* ends as its entry says.
    *shown* is applied to every printed message (lesson 08 escapes control characters with it). An int returned
    by *entry* is the exit status (anything else counts as 0).
    """
    endings = endings or {}
    try:
        result = entry(*args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except CourseError as error:
        end(EXIT_MISTAKE, f"error: {shown(str(error))}")
    except KeyboardInterrupt as stopped:
        raise SystemExit(EXIT_TERMINATED if isinstance(stopped, Terminated) else EXIT_INTERRUPTED) from None
    except tuple(endings) as error:
        ending = next(ending for kind, ending in endings.items() if isinstance(error, kind))
        end(ending.status, None if ending.says is None else f"error: {shown(ending.says(error))}")
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def end(status: int, line: str | None) -> NoReturn:
    if line is not None:
        sys.stdout.flush()  # the transcript so far first, then the message
        print(line, file=sys.stderr, flush=True)
    raise SystemExit(status) from None


def run_lesson(entry: Callable[..., object], *args: Any, shown: Callable[[str], str] = str,
               endings: Mapping[type[BaseException], Ending] | None = None) -> NoReturn:
    """Every command's start: ``entry(*args)`` through :func:`run_main`, then exit with its status."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    raise SystemExit(run_main(entry, *args, shown=shown, endings=endings))


def _terminated(_signum: int, _frame: object) -> None:
    raise Terminated
