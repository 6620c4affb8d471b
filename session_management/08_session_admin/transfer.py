"""``export`` and ``import``: a session as JSON Lines, and back."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from session_management.common import CourseError

from .output import Progress, print_json, show_progress
from .store import BATCH, connect, messages, require_session, sessions

HEADER_KEY = "agents_session_export"  # marks the first line; no SDK item has this key
PACKET_MARGIN = 1024  # bytes of statement around an item in MySQL's INSERT


def header(session: Any) -> str:
    """The export's first line: the session's own times, so a restored session keeps its age (for purge)."""
    return json.dumps({HEADER_KEY: 1, "created_at": exact(session.created_at), "updated_at": exact(session.updated_at)},
                      separators=(",", ":"))


def exact(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat(sep=" ")


async def cmd_export(args: argparse.Namespace) -> None:
    """JSON Lines: a header with the session's times, then one stored item per line, byte for byte, oldest first."""
    async with connect(args.database) as connection:
        session = await require_session(connection, args.session_id)
        total = int(await connection.scalar(
            select(func.count()).where(messages.c.session_id == args.session_id)) or 0)
        try:
            if args.output:
                Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            out = open(args.output, "w", encoding="utf-8", newline="\n") if args.output else sys.stdout  # noqa: SIM115, ASYNC230
        except OSError as error:
            raise CourseError(f"cannot write {args.output}: {error.strerror}") from None
        progress = Progress(total, f"export {args.session_id}", show_progress(args) and args.output is not None)
        written = 0
        try:
            out.write(header(session) + "\n")
            result = await connection.stream(
                select(messages.c.message_data).where(messages.c.session_id == args.session_id)
                .order_by(messages.c.created_at, messages.c.id).execution_options(yield_per=BATCH))
            async for partition in result.partitions(BATCH):
                for (data,) in partition:
                    # The SDK writes compact JSON, which never contains a raw newline: one item per line.
                    out.write(data + "\n")
                written += len(partition)
                progress.advance(len(partition))
        finally:
            progress.close()
            if out is not sys.stdout:
                out.close()
    if args.output:
        if args.json:
            print_json({"session_id": args.session_id, "items": written, "output": args.output})
        else:
            print(f"exported {written} items of {args.session_id!r} to {args.output}")


def read_export(path: str) -> tuple[dict[str, str] | None, list[str]]:
    """The file's header (None for a file of items only) and its item lines, each checked to be one JSON object;
    a one-line error naming the bad line otherwise. A file without items is an error, not an empty session."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise CourseError(f"cannot read {path}: {reason}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    meta: dict[str, str] | None = None
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise CourseError(f"{path}:{number}: not a JSON item ({error.msg})") from None
        if not isinstance(item, dict):
            raise CourseError(f"{path}:{number}: a session item is a JSON object, not {type(item).__name__}")
        if number == 1 and HEADER_KEY in item:
            meta = item
    items = lines[1:] if meta is not None else lines
    if not items:
        raise CourseError(f"{path} holds no session items; nothing to import",
                          "check the file: an export has one JSON item per line after its header")
    return meta, items


async def check_packet_size(connection: AsyncConnection, path: str, offset: int, items: list[str]) -> None:
    """MySQL refuses a statement larger than max_allowed_packet by dropping the connection ("Lost connection"),
    which names no cause. Compare first, and say which setting to raise."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        return
    limit = int(await connection.scalar(text("SELECT @@max_allowed_packet")) or 0)
    sizes = [len(line.encode("utf-8")) for line in items]
    largest = max(range(len(sizes)), key=sizes.__getitem__)
    if sizes[largest] + PACKET_MARGIN > limit:
        raise CourseError(
            f"{path}:{largest + 1 + offset}: an item of {sizes[largest]:,} bytes does not fit the server's "
            f"max_allowed_packet ({limit:,} bytes)",
            "raise max_allowed_packet on the server (SET GLOBAL max_allowed_packet = 1073741824; and in its "
            "config file), reconnect, and import again")


async def cmd_import(args: argparse.Namespace) -> None:
    meta, lines = read_export(args.file)
    async with connect(args.database) as connection:
        existing = await connection.scalar(select(func.count()).where(sessions.c.session_id == args.session_id))
        if existing:
            raise CourseError(f"session {args.session_id!r} already exists; import into a new --session-id")
        await check_packet_size(connection, args.file, 1 if meta else 0, lines)
        # One transaction (begun by the check above): all items or none. Leaving the block without the
        # commit, e.g. on an error, rolls it back.
        times = {}
        if meta is not None:  # the original's times: a restored old session stays old for purge and list
            times = {"created_at": datetime.fromisoformat(meta["created_at"]),
                     "updated_at": datetime.fromisoformat(meta["updated_at"])}
        await connection.execute(insert(sessions).values(session_id=args.session_id, **times))
        for start in range(0, len(lines), BATCH):
            # Stored exactly as read (no re-serialising), so an export of the copy is identical to the file.
            # Rows share one timestamp (the original's last activity, else now); the SDK then orders them by
            # id, i.e. file order.
            await connection.execute(insert(messages), [
                {"session_id": args.session_id, "message_data": line, **(
                    {"created_at": times["updated_at"]} if times else {})}
                for line in lines[start:start + BATCH]])
        await connection.commit()
    if args.json:
        print_json({"session_id": args.session_id, "items": len(lines), "file": args.file})
    else:
        print(f"imported {len(lines)} items from {args.file} into session {args.session_id!r}")
