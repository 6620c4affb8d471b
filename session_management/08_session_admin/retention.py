"""``purge``: delete whole sessions inactive for longer than the retention window, and every row derived from them."""

from __future__ import annotations

import argparse
from datetime import datetime

from sqlalchemy import ColumnElement, Table, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from session_management.common.progress import Progress

from .output import plural, print_json, say, show_progress
from .store import BATCH, before, connect, database_now, derived_tables, messages, sessions, stamp, with_prefix


async def cmd_purge(args: argparse.Namespace) -> None:
    """Delete whole sessions whose last activity (agent_sessions.updated_at) is older than the window: their
    messages, and their rows in lesson 06's conversations table (owner and title: the start of the user's first
    message), in the same transaction."""
    async with connect(args.database) as connection:
        cutoff = await database_now(connection) - args.older_than
        derived = derived_tables(connection)
        stale = with_prefix(select(sessions.c.session_id).where(before(connection, sessions.c.updated_at, cutoff)),
                            args.prefix)
        ids = list((await connection.execute(stale.order_by(sessions.c.session_id))).scalars())
        await connection.rollback()  # end the read transaction before the write batches
        items, derived_rows, purged = 0, 0, []
        progress = Progress(len(ids), "purge", enabled=show_progress(args) and not args.dry_run)
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            if args.dry_run:
                items += await count(connection, messages, messages.c.session_id.in_(batch))
                derived_rows += sum([await count(connection, table, table.c.id.in_(batch)) for table in derived])
                purged += batch
                continue
            async with connection.begin():
                # Re-check under a row lock: a session that came back to life since the scan is kept.
                # (The SDK locks the same row when it adds items, so the two cannot interleave.)
                still = list((await connection.execute(
                    stale.where(sessions.c.session_id.in_(batch)).with_for_update())).scalars())
                if still:
                    items += await count(connection, messages, messages.c.session_id.in_(still))
                    for table in derived:
                        derived_rows += (await connection.execute(delete(table).where(table.c.id.in_(still)))).rowcount
                    # Messages explicitly: SQLite does not enforce the ON DELETE CASCADE unless PRAGMA foreign_keys
                    # is on, and the SDK does not turn it on.
                    await connection.execute(delete(messages).where(messages.c.session_id.in_(still)))
                    await connection.execute(delete(sessions).where(sessions.c.session_id.in_(still)))
            purged += still
            progress.advance(len(batch))
        progress.close()
        derived_rows += await purge_left_behind(connection, derived, cutoff, args.prefix, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    if args.json:
        print_json({"dry_run": args.dry_run, "sessions": len(purged), "items": items,
                    "conversation_rows": derived_rows, "cutoff": stamp(cutoff), "session_ids": purged})
        return
    also = f" and {plural(derived_rows, 'conversation row')} (owner, title)" if derived else ""
    say(f"{verb} {plural(len(purged), 'session')} ({plural(items, 'item')}){also} with no activity since "
        f"{stamp(cutoff)} UTC (database clock){' - dry run, nothing deleted' if args.dry_run else ''}")
    for session_id in purged[:10]:
        say(f"  {session_id}")  # ids are user input: escaped, so an id cannot clear or retitle the terminal
    if len(purged) > 10:
        say(f"  ... and {len(purged) - 10} more")


async def purge_left_behind(connection: AsyncConnection, derived: list[Table], cutoff: datetime, prefix: str | None,
                            dry_run: bool) -> int:
    """Lesson 06's rows whose session is already gone (an older purge, a hand-deleted session) and that are old
    too: deleted (or, in a dry run, counted)."""
    rows = 0
    for table in derived:
        left_behind = and_(~table.c.id.in_(select(sessions.c.session_id)),
                           before(connection, table.c.updated_at, cutoff))
        if prefix:
            left_behind = and_(left_behind, func.substr(table.c.id, 1, len(prefix)) == prefix)
        if dry_run:
            rows += await count(connection, table, left_behind)
        else:
            async with connection.begin():
                rows += (await connection.execute(delete(table).where(left_behind))).rowcount
    return rows


async def count(connection: AsyncConnection, table: Table, condition: ColumnElement[bool]) -> int:
    return int(await connection.scalar(select(func.count()).select_from(table).where(condition)) or 0)
