"""Output for people (aligned tables, escaped text, a progress bar) and for scripts (``--json``)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import TextIO

# C0 and C1 control characters and DEL (ESC among them: terminal escape sequences start with it), and the
# Unicode bidirectional overrides that make text display in a different order than it is stored.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # JSON escapes C0 controls itself


def visible(text: str) -> str:
    """*text* with control characters shown as escapes (``\\x1b``, ``\\n``), so stored text cannot drive the
    operator's terminal: clear it, recolour it, retitle it or hide lines. Everything else is left as it is."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


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


def print_json(value: object) -> None:
    # JSON escapes C0 controls itself; DEL, C1 and bidi overrides it leaves raw, so they are escaped here too.
    text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    print(_UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text))


class Progress:
    """A one-line progress bar on stderr (stdout stays clean for data and --json)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled and total > 0

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled:
            filled = int(30 * self.done / self.total)
            percent = 100 * self.done // self.total
            print(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {percent:3d}%",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


def show_progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)

