"""The command line: subcommands, their options, and one-line argument errors."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import NoReturn

PROGRAM = "uv run python -m session_management.08_session_admin.main"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(value: str) -> timedelta:
    """``30d``, ``12h``, ``15m``, ``45s``, ``2w`` -> timedelta (an argparse type)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", value.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: use a number and a unit, e.g. 30d, 12h, 15m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts and people both read the last line first.
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog=PROGRAM, description="Look after the SDK's session tables. No command: a demonstration.")
    parser.add_argument("--database", default=None,
                        help="sqlite | postgres | mysql | a SQLAlchemy async URL (default: DATABASE_URL, else sqlite)")
    common = Parser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the subcommand's default.
    common.add_argument("--database", default=argparse.SUPPRESS, help="as above; also accepted after the command")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    listing = commands.add_parser("list", parents=[common], help="sessions, newest activity first")
    listing.add_argument("--prefix", help="only session ids starting with this (case-sensitive)")
    listing.add_argument("--active-within", type=duration, metavar="DURATION", help="e.g. 7d: active recently")
    listing.add_argument("--inactive-for", type=duration, metavar="DURATION", help="e.g. 30d: idle at least this")
    listing.add_argument("--limit", type=positive, default=20, help="sessions per page (default 20)")
    listing.add_argument("--page", type=positive, default=1)

    show = commands.add_parser("show", parents=[common], help="conversations, readable (one or several ids)")
    show.add_argument("session_ids", nargs="+", metavar="SESSION_ID")

    export = commands.add_parser("export", parents=[common], help="sessions as JSON Lines")
    export.add_argument("session_ids", nargs="*", metavar="SESSION_ID", help="one or several ids")
    export.add_argument("--prefix", help="every session whose id starts with this")
    export.add_argument("--all", action="store_true", help="every session")
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    importing = commands.add_parser("import", parents=[common], help="a JSON Lines export into new sessions")
    importing.add_argument("file")
    importing.add_argument("--session-id", help="the new session's id, for a file of one session "
                           "(default: the ids in the file); it must not exist yet")

    purge = commands.add_parser("purge", parents=[common], help="delete whole sessions inactive for a while")
    purge.add_argument("--older-than", type=duration, required=True, metavar="DURATION", help="e.g. 30d, 12h")
    purge.add_argument("--prefix", help="only session ids starting with this")
    purge.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    stats = commands.add_parser("stats", parents=[common], help="sessions, items, bytes, largest sessions")
    stats.add_argument("--top", type=positive, default=5)
    return parser

