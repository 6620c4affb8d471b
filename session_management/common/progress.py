"""A one-line progress bar on stderr, so stdout stays clean for data, tables and ``--json`` (lessons 08 and 09).

On a terminal the line is redrawn in place. Where nobody watches a redrawn line (a pipe, a CI log) a command may
ask for a few plain lines instead (``log_lines=20``: one line per 5%), or for nothing at all.
"""

from __future__ import annotations

import sys
import time

BAR = 30  # characters


class Progress:
    def __init__(self, total: int, label: str = "", *, unit: str = "", enabled: bool | None = None,
                 log_lines: int = 0) -> None:
        """*enabled*: draw the bar (default: when stderr is a terminal). *log_lines*: when the bar is not drawn,
        print this many plain lines over the whole run instead (0: none)."""
        self.total, self.label, self.unit, self.done = total, label, unit, 0
        self.enabled = (sys.stderr.isatty() if enabled is None else enabled) and total > 0
        self.log_lines, self.logged, self.started = log_lines if total > 0 else 0, -1, time.monotonic()
        self.width = len(label)  # labels that change (lesson 09's) are padded, so a shorter one leaves no trace

    def advance(self, count: int = 1, label: str | None = None) -> None:
        self.done += count
        label = self.label if label is None else label
        if self.enabled:
            self.width = max(self.width, len(label))
            filled = int(BAR * self.done / self.total)
            percent = 100 * self.done // self.total
            print(f"\r{label:<{self.width}} [{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total}"
                  f"{self.unit} {percent:3d}%", end="", file=sys.stderr, flush=True)
        elif self.log_lines and int(self.done / self.total * self.log_lines) > self.logged:
            self.logged = int(self.done / self.total * self.log_lines)
            print(f"progress: {self.done}/{self.total}{self.unit} ({self.done / self.total:.0%}, "
                  f"{time.monotonic() - self.started:.0f} s) {label}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar's line (nothing to do for plain lines)."""
        if self.enabled:
            print(file=sys.stderr, flush=True)
