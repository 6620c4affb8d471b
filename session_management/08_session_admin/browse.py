"""Looking at the store: ``list``, ``show`` and ``stats``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import func, select

from session_management.common import item_line

from .output import print_json, print_table, visible
from .store import before, byte_length, connect, database_now, messages, require_session, sessions, stamp, with_prefix


async def cmd_list(args: argparse.Namespace) -> None:
    async with connect(args.database) as connection:
        bytes_ = byte_length(connection, messages.c.message_data)
        query = with_prefix(
            select(
                sessions.c.session_id,
                func.count(messages.c.id).label("items"),
                func.coalesce(func.sum(bytes_), 0).label("bytes"),
                sessions.c.created_at,
                sessions.c.updated_at,
            )
            .select_from(sessions.outerjoin(messages, messages.c.session_id == sessions.c.session_id))
            .group_by(sessions.c.session_id, sessions.c.created_at, sessions.c.updated_at),
            args.prefix,
        )
        now = await database_now(connection)
        if args.active_within:
            query = query.where(~before(connection, sessions.c.updated_at, now - args.active_within))
        if args.inactive_for:
            query = query.where(before(connection, sessions.c.updated_at, now - args.inactive_for))
        total = await connection.scalar(select(func.count()).select_from(query.subquery()))
        page = query.order_by(sessions.c.updated_at.desc(), sessions.c.session_id)
        rows = (await connection.execute(page.limit(args.limit).offset((args.page - 1) * args.limit))).all()
    pages = max(1, -(-int(total or 0) // args.limit))
    if args.json:
        print_json({"total": total, "page": args.page, "pages": pages, "sessions": [
            {"session_id": r.session_id, "items": r.items, "bytes": int(r.bytes), "first_activity": stamp(r.created_at),
             "last_activity": stamp(r.updated_at)} for r in rows]})
        return
    print_table([(r.session_id, r.items, int(r.bytes), stamp(r.created_at), stamp(r.updated_at)) for r in rows],
                ["session_id", "items", "bytes", "first activity", "last activity"])
    print(f"page {args.page} of {pages}, {total} sessions (newest activity first; times are the database clock)")


async def cmd_show(args: argparse.Namespace) -> None:
    async with connect(args.database) as connection:
        session = await require_session(connection, args.session_id)
        rows = (await connection.execute(
            select(messages.c.id, messages.c.message_data, messages.c.created_at)
            .where(messages.c.session_id == args.session_id)
            .order_by(messages.c.created_at, messages.c.id)  # the SDK's own order
        )).all()
    items: list[Any] = []
    for row in rows:
        try:
            items.append(json.loads(row.message_data))
        except json.JSONDecodeError:
            items.append({"undecodable_row_id": row.id})  # the SDK skips these silently; we show them
    if args.json:
        print_json({"session_id": args.session_id, "first_activity": stamp(session.created_at),
                    "last_activity": stamp(session.updated_at), "items": items})
        return
    print(f"session {visible(repr(args.session_id))}: {len(items)} items, "
          f"{stamp(session.created_at)} .. {stamp(session.updated_at)}")
    for number, (row, item) in enumerate(zip(rows, items, strict=True), start=1):
        text = (f"[undecodable row {row.id}: the SDK skips it]" if "undecodable_row_id" in item
                else item_line(item))
        print(f"{number:>4}. {stamp(row.created_at)}  {visible(text)}")  # stored text never drives the terminal


async def cmd_stats(args: argparse.Namespace) -> None:
    async with connect(args.database) as connection:
        bytes_ = byte_length(connection, messages.c.message_data)
        session_count = await connection.scalar(select(func.count()).select_from(sessions))
        item_count, total_bytes = (await connection.execute(
            select(func.count(), func.coalesce(func.sum(bytes_), 0)).select_from(messages))).one()
        oldest, newest = (await connection.execute(
            select(func.min(sessions.c.updated_at), func.max(sessions.c.updated_at)))).one()
        # Items whose session row is gone: possible on SQLite, where the foreign key is not enforced.
        orphans = await connection.scalar(select(func.count()).select_from(messages).where(
            ~messages.c.session_id.in_(select(sessions.c.session_id))))
        largest = (await connection.execute(
            select(messages.c.session_id, func.count().label("items"), func.sum(bytes_).label("bytes"))
            .group_by(messages.c.session_id).order_by(func.sum(bytes_).desc(), messages.c.session_id)
            .limit(args.top))).all()
    summary = {"sessions": int(session_count or 0), "items": int(item_count), "bytes": int(total_bytes),
               "orphan_items": int(orphans or 0), "oldest_activity": stamp(oldest), "newest_activity": stamp(newest),
               "largest": [{"session_id": r.session_id, "items": r.items, "bytes": int(r.bytes)} for r in largest]}
    if args.json:
        print_json(summary)
        return
    print_table([(key.replace("_", " "), summary[key]) for key in
                 ("sessions", "items", "bytes", "orphan_items", "oldest_activity", "newest_activity")],
                ["", "value"])
    print(f"\nlargest sessions (top {args.top} by bytes):")
    print_table([(r.session_id, r.items, int(r.bytes)) for r in largest], ["session_id", "items", "bytes"])

