"""``export`` and ``import``: sessions as JSON Lines, and back, at the speed of the database.

A file holds one or more sessions. Each starts with a header line, then one stored item per line, byte for byte:

    {"agents_session_export":1,"created_at":"...","updated_at":"..."}                       one session
    {"agents_session_export":1,"session_id":"ada","created_at":"...","updated_at":"..."}    several: ids inside

Export streams the rows through a server-side cursor in one ordered query, however many sessions; import
checks the whole file first, then writes it in one transaction, with PostgreSQL's COPY (asyncpg) or multi-row
INSERTs elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Select, func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from session_management.common import CourseError
from session_management.common.progress import Progress

from .output import json_visible, plural, print_json, say, show_progress, visible
from .store import connect, database_now, messages, require_session, sessions, with_prefix

HEADER_KEY = "agents_session_export"  # marks a header line; no SDK item has this key
FORMAT_VERSION = 1
PACKET_MARGIN = 1024  # bytes of statement around an item in MySQL's INSERT
STREAM_ROWS = 5000  # rows per fetch from the server-side cursor
INSERT_ROWS, INSERT_BYTES = 2000, 4 * 1024 * 1024  # one multi-row INSERT, where there is no COPY
SHOWN_IDS = 3


def header(created_at: datetime | str, updated_at: datetime | str, session_id: str | None = None) -> str:
    """A session's first line: its own times, so a restored session keeps its age (for list and purge)."""
    fields: dict[str, Any] = {HEADER_KEY: FORMAT_VERSION}
    if session_id is not None:
        fields["session_id"] = session_id
    fields.update(created_at=exact(created_at), updated_at=exact(updated_at))
    return json.dumps(fields, separators=(",", ":"))


def exact(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat(sep=" ")


def round_trips(data: str) -> bool:
    """True if an import will read *data* back as the same one item: one line holding one JSON object.

    The SDK writes compact JSON objects; a row written by something else may be a scalar, not JSON, or JSON
    spread over several lines."""
    if "\n" in data:
        return False
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False


# --- export ------------------------------------------------------------------------------------------------------

async def cmd_export(args: argparse.Namespace) -> None:
    """One session (no ids inside, as before), or several: given ids, --prefix, or --all."""
    several = len(args.session_ids) > 1 or args.all or args.prefix is not None
    if not several and not args.session_ids:
        raise CourseError("export needs a SESSION_ID, several, --prefix P or --all")
    async with connect(args.database) as connection:
        query: Select[Any] = select(sessions.c.session_id, sessions.c.created_at, sessions.c.updated_at, messages.c.id,
                       messages.c.message_data).select_from(
            sessions.outerjoin(messages, messages.c.session_id == sessions.c.session_id))
        if args.session_ids:
            await require_sessions(connection, args.session_ids)
            query = query.where(sessions.c.session_id.in_(args.session_ids))
        query = with_prefix(query, args.prefix)
        shown = show_progress(args) and args.output is not None
        # Counting is a second pass over the rows: only for a progress bar someone watches.
        total = int(await connection.scalar(select(func.count()).select_from(query.subquery())) or 0) if shown else 0
        label = f"export {visible(args.session_ids[0])}" if not several else "export"
        progress = Progress(total, label, enabled=shown)
        with output_file(args.output) as out:
            try:
                counts = await write_export(connection, query, out, several, progress)
            finally:
                progress.close()
    if args.output:
        summary = {"sessions": counts[0], "items": counts[1], "output": args.output}
        if args.json:
            print_json({"session_id": args.session_ids[0], **summary} if not several else summary)
        elif several:
            say(f"exported {plural(counts[0], 'session')} ({plural(counts[1], 'item')}) to {args.output}")
        else:
            say(f"exported {plural(counts[1], 'item')} of {args.session_ids[0]!r} to {args.output}")


async def require_sessions(connection: AsyncConnection, session_ids: list[str]) -> None:
    if len(session_ids) == 1:
        await require_session(connection, session_ids[0])
        return
    found = set((await connection.execute(
        select(sessions.c.session_id).where(sessions.c.session_id.in_(session_ids)))).scalars())
    missing = [session_id for session_id in session_ids if session_id not in found]
    if missing:
        raise CourseError(f"no session {missing[0]!r} in this database"
                          f"{f' (and {len(missing) - 1} more ids)' if len(missing) > 1 else ''}; nothing exported")


async def write_export(connection: AsyncConnection, query: Select[Any], out: TextIO, several: bool,
                       progress: Progress) -> tuple[int, int]:
    """Stream *query*'s rows into *out*; refuse a row an import could not read back (the file is then removed)."""
    # Sessions in byte order on every database (PostgreSQL's default collation sorts by language rules), so
    # the same sessions make the same file wherever they are exported from.
    by_id = sessions.c.session_id.collate("C") if connection.dialect.name == "postgresql" else sessions.c.session_id
    ordered = query.order_by(by_id, messages.c.created_at, messages.c.id)
    result = await connection.stream(ordered.execution_options(yield_per=STREAM_ROWS))
    # To a file or a pipe, the bytes as stored; to a terminal, the same JSON with unsafe characters escaped.
    on_terminal = out is sys.stdout and sys.stdout.isatty()
    current, session_count, item_count = None, 0, 0
    async for partition in result.partitions(STREAM_ROWS):
        lines = []
        for session_id, created_at, updated_at, row_id, data in partition:
            if session_id != current:
                current, session_count = session_id, session_count + 1
                lines.append(header(created_at, updated_at, session_id if several else None))
            if data is None:  # a session without items (the outer join's empty side)
                continue
            if not round_trips(data):
                raise CourseError(
                    f"row {row_id} of session {session_id!r} is not one JSON object on one line (the SDK did not "
                    "write it), so an import could not read it back; nothing exported",
                    "look at it with the show command, and fix or delete the row")
            lines.append(data)
            item_count += 1
        text = "\n".join(lines) + "\n" if lines else ""
        out.write(json_visible(text) if on_terminal else text)
        progress.advance(len(partition))
    return session_count, item_count


class output_file:  # noqa: N801 - used like open()
    """stdout, or a file written beside *path* and renamed onto it at the end: an export that stops half way
    (a refused row, a full disk, Ctrl-C) leaves no half file behind."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.partial: Path | None = None

    def __enter__(self) -> TextIO:
        if self.path is None:
            return sys.stdout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.partial = self.path.with_name(f".{self.path.name}.partial")
            self.stream = open(self.partial, "w", encoding="utf-8", newline="\n")  # noqa: SIM115, ASYNC230
        except OSError as error:
            raise CourseError(f"cannot write {self.path}: {error.strerror}") from None
        return self.stream

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.partial is None:
            return
        self.stream.close()
        if kind is None:
            os.replace(self.partial, self.path)  # type: ignore[arg-type]  # set together with partial
        else:
            self.partial.unlink(missing_ok=True)


# --- import ------------------------------------------------------------------------------------------------------

@dataclass
class Block:
    """One session of an export file: its header (None for a file of items only) and its item lines."""

    line: int  # where it starts in the file, for messages
    session_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    items: list[str] = field(default_factory=list)


def read_export(path: str) -> list[Block]:
    """Every session in the file, each line checked; a one-line error naming the first bad line otherwise.
    A file without any item is an error, not an empty session."""
    blocks: list[Block] = []
    try:
        # newline="\n": lines end at "\n" only, and a "\r" stays part of its line, as it was stored.
        with open(path, encoding="utf-8", newline="\n") as stream:  # noqa: ASYNC230 - read before any await
            for number, raw in enumerate(stream, start=1):
                line = raw[:-1] if raw.endswith("\n") else raw  # the last line may lack its newline
                item = parse_line(path, number, line)
                if HEADER_KEY in item:
                    blocks.append(parse_header(path, number, item))
                elif not blocks:
                    blocks.append(Block(number))  # a file of items only, written by hand or by another tool
                    blocks[-1].items.append(line)
                else:
                    blocks[-1].items.append(line)
    except OSError as error:
        raise CourseError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise CourseError(f"cannot read {path}: not UTF-8 text (byte {error.start:,} of a line)") from None
    if not any(block.items for block in blocks):
        raise CourseError(f"{path} holds no session items; nothing to import",
                          "check the file: an export has one JSON item per line after its header")
    return blocks


def parse_line(path: str, number: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise CourseError(f"{path}:{number}: not a JSON item ({error.msg}); nothing imported") from None
    except RecursionError:
        raise CourseError(f"{path}:{number}: JSON nested too deeply to read; nothing imported") from None
    if not isinstance(item, dict):
        raise CourseError(f"{path}:{number}: a session item is a JSON object, not {type(item).__name__}; "
                          "nothing imported")
    return item


def parse_header(path: str, number: int, fields: dict[str, Any]) -> Block:
    version = fields[HEADER_KEY]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CourseError(f"{path}:{number}: export format {version!r} is not one this tool reads "
                          f"({FORMAT_VERSION}); nothing imported")
    block = Block(number, session_id=fields.get("session_id"))
    if block.session_id is not None and (not isinstance(block.session_id, str) or not block.session_id):
        raise CourseError(f"{path}:{number}: the header's session_id must be a non-empty string; nothing imported")
    for name in ("created_at", "updated_at"):
        value = fields.get(name)
        try:
            moment = datetime.fromisoformat(value)  # type: ignore[arg-type]  # not a str: TypeError, below
            # The tables hold naive UTC (the tool's connection runs in UTC): a time with an offset is converted.
            setattr(block, name, moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment)
        except (TypeError, ValueError, OverflowError):
            raise CourseError(f"{path}:{number}: the header's {name} {value!r} is not a date and time "
                              "(YYYY-MM-DD HH:MM:SS); nothing imported") from None
    return block


def assign_ids(path: str, blocks: list[Block], session_id: str | None) -> None:
    """--session-id names the one session of a file; several sessions keep the ids their headers carry."""
    if session_id is not None:
        if len(blocks) > 1:
            raise CourseError(f"{path} holds {len(blocks)} sessions; --session-id names one",
                              "drop --session-id to import them under the ids in the file")
        blocks[0].session_id = session_id
        return
    for block in blocks:
        if block.session_id is None:
            raise CourseError(f"{path}:{block.line}: this session has no id in the file",
                              "give it one with --session-id NEW_ID")
    seen: set[str] = set()
    for block in blocks:
        if block.session_id in seen:
            raise CourseError(f"{path}:{block.line}: session {block.session_id!r} appears twice; nothing imported")
        seen.add(block.session_id)  # type: ignore[arg-type]  # every block has an id (checked above)


async def refuse_existing(connection: AsyncConnection, ids: list[str]) -> None:
    taken: list[str] = []
    for start in range(0, len(ids), INSERT_ROWS):
        chunk = ids[start:start + INSERT_ROWS]
        taken += (await connection.execute(select(sessions.c.session_id)
                                           .where(sessions.c.session_id.in_(chunk)))).scalars().all()
    if taken:
        taken.sort()
        shown = ", ".join(repr(session_id) for session_id in taken[:SHOWN_IDS])
        more = f" and {len(taken) - SHOWN_IDS} more" if len(taken) > SHOWN_IDS else ""
        verb = "already exists" if len(taken) == 1 else "already exist"
        raise CourseError(f"session {shown}{more} {verb}; nothing imported",
                          "import into a new --session-id, or purge the old one first")


async def check_packet_size(connection: AsyncConnection, path: str, blocks: list[Block]) -> None:
    """MySQL refuses a statement larger than max_allowed_packet by dropping the connection ("Lost connection"),
    which names no cause. Compare first, and say which setting to raise."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        return
    limit = int(await connection.scalar(text("SELECT @@max_allowed_packet")) or 0)
    for block in blocks:
        for offset, line in enumerate(block.items):
            size = len(line.encode("utf-8"))
            if size + PACKET_MARGIN > limit:
                number = block.line + offset + (1 if block.created_at is not None else 0)
                raise CourseError(
                    f"{path}:{number}: an item of {size:,} bytes does not fit the server's max_allowed_packet "
                    f"({limit:,} bytes)",
                    "raise max_allowed_packet on the server (SET GLOBAL max_allowed_packet = 1073741824; and in "
                    "its config file), reconnect, and import again")


async def cmd_import(args: argparse.Namespace) -> None:
    blocks = read_export(args.file)
    assign_ids(args.file, blocks, args.session_id)
    ids: list[str] = [block.session_id for block in blocks]  # type: ignore[misc]  # assign_ids gave each an id
    async with connect(args.database) as connection:
        await refuse_existing(connection, ids)
        await check_packet_size(connection, args.file, blocks)
        now = await database_now(connection)
        # One transaction (begun by the reads above): all sessions and items, or none. Leaving the block without
        # the commit, e.g. on an error, rolls it back.
        session_rows = [(block.session_id, block.created_at or now, block.updated_at or now) for block in blocks]
        # Items keep file order through their ids; they share one time, the session's last activity (else now).
        item_rows = [(block.session_id, line, block.updated_at or now) for block in blocks for line in block.items]
        progress = Progress(len(item_rows), "import", enabled=show_progress(args))
        try:
            await bulk_insert(connection, session_rows, item_rows, progress)
        except (SQLAlchemyError, driver_errors()) as error:  # e.g. an id longer than the column allows
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            raise CourseError(f"the database refused the import, so nothing was imported: {reason}") from None
        finally:
            progress.close()
        await connection.commit()
    if args.json:
        print_json({"sessions": len(blocks), "items": len(item_rows), "file": args.file,
                    **({"session_id": ids[0]} if len(ids) == 1 else {})})
    elif len(blocks) == 1:
        say(f"imported {plural(len(item_rows), 'item')} from {args.file} into session {ids[0]!r}")
    else:
        say(f"imported {plural(len(blocks), 'session')} ({plural(len(item_rows), 'item')}) from {args.file}")


async def bulk_insert(connection: AsyncConnection, session_rows: list[tuple[Any, ...]],
                      item_rows: list[tuple[Any, ...]], progress: Progress) -> None:
    """Rows as they are (no re-serialising: an export of the copy is identical to the file), in file order."""
    session_columns = ["session_id", "created_at", "updated_at"]
    item_columns = ["session_id", "message_data", "created_at"]
    if connection.dialect.driver == "asyncpg":
        # COPY, in the transaction SQLAlchemy has open on this very connection: the database's bulk path.
        driver: Any = (await connection.get_raw_connection()).driver_connection
        await driver.copy_records_to_table(sessions.name, records=session_rows, columns=session_columns)
        await driver.copy_records_to_table(messages.name, records=item_rows, columns=item_columns)
        progress.advance(len(item_rows))
        return
    for rows, table, columns in ((session_rows, sessions, session_columns), (item_rows, messages, item_columns)):
        for batch in batches(rows):
            await connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in batch])
            if table is messages:
                progress.advance(len(batch))


def driver_errors() -> type[Exception]:
    """The error class asyncpg raises from COPY (which does not go through SQLAlchemy), else one never raised."""
    try:
        from asyncpg import PostgresError
    except ImportError:  # pragma: no cover - asyncpg is a course dependency
        return CourseError
    return PostgresError


def batches(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """Multi-row INSERTs of at most INSERT_ROWS rows and about INSERT_BYTES (MySQL's packet limit)."""
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        row_size = sum(len(value) for value in row if isinstance(value, str))
        if batch and (len(batch) >= INSERT_ROWS or size + row_size > INSERT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch
