"""Output for people (aligned tables, escaped text; the progress bar is common/progress.py) and for scripts
(``--json``)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import TextIO

# C0 and C1 control characters and DEL (ESC among them: terminal escape sequences start with it); the Unicode
# bidirectional marks and overrides that make text display in a different order than it is stored; line and
# paragraph separators; and lone surrogates, which the SDK can store ("\udc9b" from JSON) and which Python writes
# to a C.UTF-8 terminal as the raw byte (0x9b: the 8-bit CSI that starts an escape sequence) or cannot write at all.
_RANGES = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_RANGES}]")
_UNSAFE_IN_JSON = re.compile(f"[{_RANGES}]")  # JSON escapes C0 controls itself


def visible(text: str) -> str:
    """*text* with control characters shown as escapes (``\\x1b``, ``\\n``), so stored text cannot drive the
    operator's terminal: clear it, recolour it, retitle it or hide lines. Everything else is left as it is."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def plural(number: int, noun: str) -> str:
    """``plural(1, "session")`` is ``"1 session"``, ``plural(2, "session")`` ``"2 sessions"``."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def say(text: str, file: TextIO | None = None) -> None:
    """Print one line the operator will read: ids, paths and stored text in it are escaped."""
    print(visible(text), file=file or sys.stdout)


def safe_console() -> None:
    """Whatever the terminal's encoding, a character it cannot show is printed as an escape, not a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change its error handler keeps its own
                pass


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO | None = None) -> None:
    """Aligned columns; numbers right-aligned."""
    out = out or sys.stdout  # looked up per call, so redirected output (tests, pipes) is honoured
    cells = [[visible(str(value)) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]  # rows may be empty
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    print(line(["-" * w for w in widths]), file=out)
    for row in cells:
        print(line(row), file=out)


def json_visible(text: str) -> str:
    """JSON text with DEL, C1, bidi marks, separators and lone surrogates as JSON escapes (JSON escapes C0
    controls itself): the same JSON value, safe on a terminal."""
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def print_json(value: object) -> None:
    print(json_visible(json.dumps(value, ensure_ascii=False, indent=2, default=str)))


def show_progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)

