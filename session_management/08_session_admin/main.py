"""Lesson 07: operating the session store, a command-line tool on the SDK's tables (SQLAlchemy Core only).

    uv run python -m session_management.07_session_admin.main                  # demo on seeded sessions
    uv run python -m session_management.07_session_admin.main list --database postgres
    uv run python -m session_management.07_session_admin.main show SESSION_ID
    uv run python -m session_management.07_session_admin.main export SESSION_ID --output .data/chat.jsonl
    uv run python -m session_management.07_session_admin.main import .data/chat.jsonl --session-id NEW_ID
    uv run python -m session_management.07_session_admin.main purge --older-than 30d --dry-run
    uv run python -m session_management.07_session_admin.main stats --json

The pieces: `cli.py` (the parser), `store.py` (the SDK's tables and per-database SQL), `browse.py` (list, show,
stats), `transfer.py` (export, import), `retention.py` (purge), `output.py` (tables, escapes, progress),
`demo.py` (the demonstration). This file only dispatches and turns expected mistakes into one line.

Every command takes ``--database`` and ``--json``. Times are the database's own clock: the SDK stores
``CURRENT_TIMESTAMP`` (the server's clock, no time zone), so cut-offs are computed from the server's "now" too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from session_management.common import CourseError

from .cli import build_parser
from .commands import COMMANDS
from .demo import demo


async def dispatch(args: argparse.Namespace) -> None:
    if args.command is None:
        await demo(args.database)
    else:
        await COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(dispatch(args))
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)  # one line, as every lesson prints it (common/cli.py)
        return 2
    except SQLAlchemyError as error:
        print(f"error: the database refused: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... export ID | head` closed the pipe early
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
