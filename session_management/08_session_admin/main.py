"""Lesson 08: operating the session store, a command-line tool on the SDK's tables (SQLAlchemy Core only).

    uv run python -m session_management.08_session_admin.main                  # demo on seeded sessions
    uv run python -m session_management.08_session_admin.main list --database postgres
    uv run python -m session_management.08_session_admin.main show SESSION_ID
    uv run python -m session_management.08_session_admin.main export SESSION_ID --output .data/chat.jsonl
    uv run python -m session_management.08_session_admin.main import .data/chat.jsonl --session-id NEW_ID
    uv run python -m session_management.08_session_admin.main purge --older-than 30d --dry-run
    uv run python -m session_management.08_session_admin.main stats --json

The pieces: `cli.py` (the parser), `store.py` (the SDK's tables and per-database SQL), `browse.py` (list, show,
stats), `transfer.py` (export, import), `retention.py` (purge), `output.py` (tables, escapes),
`demo.py` (the demonstration), `benchmark.py` (export/import against pg_dump + COPY). This file only dispatches,
through the course's one runner (common/cli.py); it imports the Agents SDK only for the demonstration.

Every command takes ``--database`` and ``--json``. Times are the database's own clock: the SDK stores
``CURRENT_TIMESTAMP`` (the server's clock, no time zone), so cut-offs are computed from the server's "now" too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from session_management.common import Ending, run_lesson, run_main

from .cli import build_parser
from .commands import COMMANDS
from .output import safe_console, visible

# The operator's tool ends like every lesson (a mistake: one line, exit 2; Ctrl+C: 130), and on two more things an
# operator meets: a statement the database refuses (exit 1), and `... export ID | head` closing the pipe early
# (nothing to report: exit 0). Every printed message has its control characters escaped (`visible`).
ENDINGS = {
    SQLAlchemyError: Ending(1, lambda error: f"the database refused: {str(error).splitlines()[0]}"),
    BrokenPipeError: Ending(0),
}


async def dispatch(args: argparse.Namespace) -> None:
    if args.command is None:
        from .demo import demo  # the demonstration runs agents; the commands need only SQLAlchemy

        await demo(args.database)
    else:
        await COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    safe_console()
    return run_main(dispatch, build_parser().parse_args(argv), shown=visible, endings=ENDINGS)


if __name__ == "__main__":
    run_lesson(main)
