"""Looking at the store: ``list``, ``show`` and ``stats``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import func, select

from session_management.common import item_line

from .output import plural, print_json, print_table, say
from .store import (
    before,
    byte_length,
    connect,
    database_now,
    derived_tables,
    messages,
    require_session,
    sessions,
    stamp,
    with_prefix,
)


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
    say(f"page {args.page} of {pages}, {plural(int(total or 0), 'session')} "
        "(newest activity first; times are the database clock)")


async def cmd_show(args: argparse.Namespace) -> None:
    """One or several sessions in one process and one connection (a loop of `show` processes would pay the
    SDK's import, about 4 s, for each)."""
    shown = []
    async with connect(args.database) as connection:
        for session_id in dict.fromkeys(args.session_ids):  # each once, in the order given
            session = await require_session(connection, session_id)
            rows = (await connection.execute(
                select(messages.c.id, messages.c.message_data, messages.c.created_at)
                .where(messages.c.session_id == session_id)
                .order_by(messages.c.created_at, messages.c.id)  # the SDK's own order
            )).all()
            shown.append((session_id, session, rows))
    documents = []
    for session_id, session, rows in shown:
        items = [decode(row.message_data) for row in rows]
        if args.json:
            documents.append({"session_id": session_id, "first_activity": stamp(session.created_at),
                              "last_activity": stamp(session.updated_at),
                              "items": [{"undecodable_row_id": row.id} if item is UNDECODABLE else item
                                        for row, item in zip(rows, items, strict=True)]})
            continue
        say(f"session {session_id!r}: {plural(len(items), 'item')}, "
            f"{stamp(session.created_at)} .. {stamp(session.updated_at)}")
        for number, (row, item) in enumerate(zip(rows, items, strict=True), start=1):
            if item is UNDECODABLE:
                text = f"[row {row.id} is not JSON: the SDK skips it]"
            elif not isinstance(item, dict):
                text = f"[row {row.id} is JSON {shorten(row.message_data)}, not a session item]"
            else:
                text = shorten(readable(item, row.message_data))
            say(f"{number:>4}. {stamp(row.created_at)}  {text}")  # escaped: stored text never drives the terminal
    if args.json:
        print_json(documents[0] if len(documents) == 1 else {"sessions": documents})


UNDECODABLE = object()
SHOWN_CHARACTERS = 2000


def decode(data: str) -> Any:
    """A stored row as the SDK reads it; UNDECODABLE for text that is not JSON (the SDK skips such rows)."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, TypeError, RecursionError):  # RecursionError: JSON nested thousands deep
        return UNDECODABLE


def readable(item: dict[str, Any], data: str) -> str:
    try:
        return item_line(item)
    except RecursionError:  # content nested too deep to format: the stored text as it is
        return data


def shorten(text: str) -> str:
    """A huge item (a pasted file, a 1 MB tool result) as its start and its size: `show` is for reading."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]} ... [{len(text) - SHOWN_CHARACTERS:,} more characters; export shows all]"


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
        # None (JSON null) where lesson 06's table does not exist
        conversation_rows: int | None = 0 if derived_tables(connection) else None
        orphan_conversations: int | None = conversation_rows
        for table in derived_tables(connection):  # lesson 06's rows: owner and title of each conversation
            conversation_rows = int(await connection.scalar(select(func.count()).select_from(table)) or 0)
            orphan_conversations = int(await connection.scalar(select(func.count()).select_from(table).where(
                ~table.c.id.in_(select(sessions.c.session_id)))) or 0)
        largest = (await connection.execute(
            select(messages.c.session_id, func.count().label("items"), func.sum(bytes_).label("bytes"))
            .group_by(messages.c.session_id).order_by(func.sum(bytes_).desc(), messages.c.session_id)
            .limit(args.top))).all()
    summary = {"sessions": int(session_count or 0), "items": int(item_count), "bytes": int(total_bytes),
               "orphan_items": int(orphans or 0), "conversation_rows": conversation_rows,
               "conversation_rows_without_session": orphan_conversations,
               "oldest_activity": stamp(oldest), "newest_activity": stamp(newest),
               "largest": [{"session_id": r.session_id, "items": r.items, "bytes": int(r.bytes)} for r in largest]}
    if args.json:
        print_json(summary)
        return
    print_table([(key.replace("_", " "), "(no such table)" if summary[key] is None else summary[key]) for key in
                 ("sessions", "items", "bytes", "orphan_items", "conversation_rows",
                  "conversation_rows_without_session", "oldest_activity", "newest_activity")],
                ["", "value"])
    print(f"\nlargest sessions (top {args.top} by bytes):")
    print_table([(r.session_id, r.items, int(r.bytes)) for r in largest], ["session_id", "items", "bytes"])

