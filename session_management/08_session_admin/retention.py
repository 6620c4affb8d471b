"""``purge``: delete whole sessions inactive for longer than the retention window."""

from __future__ import annotations

import argparse

from sqlalchemy import delete, func, select

from .output import Progress, print_json, show_progress
from .store import BATCH, before, connect, database_now, messages, sessions, stamp, with_prefix


async def cmd_purge(args: argparse.Namespace) -> None:
    """Delete whole sessions whose last activity (agent_sessions.updated_at) is older than the window."""
    async with connect(args.database) as connection:
        cutoff = await database_now(connection) - args.older_than
        stale = with_prefix(select(sessions.c.session_id).where(before(connection, sessions.c.updated_at, cutoff)),
                            args.prefix)
        ids = list((await connection.execute(stale.order_by(sessions.c.session_id))).scalars())
        await connection.rollback()  # end the read transaction before the write batches
        items, purged = 0, []
        progress = Progress(len(ids), "purge", show_progress(args) and not args.dry_run)
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            if args.dry_run:
                counted = await connection.scalar(select(func.count()).where(messages.c.session_id.in_(batch)))
                items, purged = items + int(counted or 0), purged + batch
                continue
            async with connection.begin():
                # Re-check under a row lock: a session that came back to life since the scan is kept.
                # (The SDK locks the same row when it adds items, so the two cannot interleave.)
                still = list((await connection.execute(
                    stale.where(sessions.c.session_id.in_(batch)).with_for_update())).scalars())
                if still:
                    counted = await connection.scalar(select(func.count()).where(messages.c.session_id.in_(still)))
                    items += int(counted or 0)
                    # Messages first and explicitly: SQLite does not enforce the ON DELETE CASCADE unless
                    # PRAGMA foreign_keys is on, and the SDK does not turn it on.
                    await connection.execute(delete(messages).where(messages.c.session_id.in_(still)))
                    await connection.execute(delete(sessions).where(sessions.c.session_id.in_(still)))
            purged += still
            progress.advance(len(batch))
        progress.close()
    verb = "would delete" if args.dry_run else "deleted"
    if args.json:
        print_json({"dry_run": args.dry_run, "sessions": len(purged), "items": items, "cutoff": stamp(cutoff),
                    "session_ids": purged})
        return
    print(f"{verb} {len(purged)} sessions ({items} items) with no activity since {stamp(cutoff)} "
          f"(database clock){' - dry run, nothing deleted' if args.dry_run else ''}")
    for session_id in purged[:10]:
        print(f"  {session_id}")
    if len(purged) > 10:
        print(f"  ... and {len(purged) - 10} more")

