"""Lesson 07: operating the session store, a command-line tool on the SDK's tables (SQLAlchemy Core only).

    uv run python -m session_management.07_session_admin.main                  # demo on seeded sessions
    uv run python -m session_management.07_session_admin.main list --database postgres
    uv run python -m session_management.07_session_admin.main show SESSION_ID
    uv run python -m session_management.07_session_admin.main export SESSION_ID --output chat.jsonl
    uv run python -m session_management.07_session_admin.main import chat.jsonl --session-id NEW_ID
    uv run python -m session_management.07_session_admin.main purge --older-than 30d --dry-run
    uv run python -m session_management.07_session_admin.main stats --json

Every command takes ``--database`` and ``--json``. Times are the database's own clock: the SDK stores
``CURRENT_TIMESTAMP`` (the server's clock, no time zone), so cut-offs are computed from the server's "now" too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from agents import Agent, Runner, function_tool
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    MetaData,
    Select,
    cast,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from session_management.common import CourseError, choose_model, heading, item_line, note, open_database, redact, step
from session_management.common.schema import session_tables
from session_management.common.settings import resolve_database_url

PROGRAM = "uv run python -m session_management.07_session_admin.main"
BATCH = 500  # rows per round trip when streaming an export, sessions per transaction when purging

# The SDK's tables as Core objects. Queries need only names and types; the schema helper has both.
sessions, messages = session_tables(MetaData())

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


# --------------------------------------------------------------------------------------------- database helpers
@asynccontextmanager
async def connect(database: str | None) -> AsyncIterator[AsyncConnection]:
    """A connection to *database* whose SDK tables exist (a one-line error if not)."""
    async with open_database(database, create_tables=False) as engine, engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        if not {sessions.name, messages.name} <= names:
            raise CourseError(
                f"{redact(str(engine.url.render_as_string(hide_password=False)))} has no SDK session tables "
                f"({sessions.name}, {messages.name})",
                "point --database at the database your agents use, or create them (lesson 06: alembic upgrade head)",
            )
        yield connection


async def database_now(connection: AsyncConnection) -> datetime:
    """The server's current time as the SDK's columns store it: naive, in the server's (session) time zone."""
    if connection.dialect.name == "postgresql":
        # CURRENT_TIMESTAMP is timestamptz there; a timestamp column stores it as LOCALTIMESTAMP.
        return await connection.scalar(select(func.localtimestamp()))  # type: ignore[no-any-return]
    value = await connection.scalar(select(func.current_timestamp()))
    if isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None)  # type: ignore[no-any-return]


def before(connection: AsyncConnection, column: Any, moment: datetime) -> ColumnElement[bool]:
    """``column < moment``, to the second and correct on SQLite, whose timestamps are text."""
    if connection.dialect.name == "sqlite":
        # CURRENT_TIMESTAMP writes '2026-01-02 03:04:05'; a bound datetime would be '...05.000000', and text
        # comparison would put equal times in the wrong order. datetime() normalises both sides.
        return func.datetime(column) < func.datetime(moment.strftime("%Y-%m-%d %H:%M:%S"))
    return column < moment  # type: ignore[no-any-return]


def byte_length(connection: AsyncConnection, column: Any) -> ColumnElement[int]:
    """Bytes, not characters: what the item costs on disk and on the wire."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return func.length(cast(column, LargeBinary))
    if dialect == "postgresql":
        return func.octet_length(column)
    return func.length(column)  # MySQL's LENGTH counts bytes


def with_prefix(query: Select[Any], prefix: str | None) -> Select[Any]:
    # substr instead of LIKE: no wildcard escaping, and case-sensitive on SQLite too (its LIKE is not).
    if prefix:
        query = query.where(func.substr(sessions.c.session_id, 1, len(prefix)) == prefix)
    return query


async def require_session(connection: AsyncConnection, session_id: str) -> Any:
    row = (await connection.execute(select(sessions).where(sessions.c.session_id == session_id))).first()
    if row is None:
        raise CourseError(f"no session {session_id!r} in this database (try the list command)")
    return row


def stamp(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------------------------------- output
def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO | None = None) -> None:
    """Aligned columns; numbers right-aligned."""
    out = out or sys.stdout  # looked up per call, so redirected output (tests, pipes) is honoured
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    print(line(["-" * w for w in widths]), file=out)
    for row in cells:
        print(line(row), file=out)


def print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


class Progress:
    """A one-line progress bar on stderr (stdout stays clean for data and --json)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled and total > 0

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled:
            filled = int(30 * self.done / self.total)
            percent = 100 * self.done // self.total
            print(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {percent:3d}%",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


def show_progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


# --------------------------------------------------------------------------------------------------- commands
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
    print(f"session {args.session_id!r}: {len(items)} items, "
          f"{stamp(session.created_at)} .. {stamp(session.updated_at)}")
    for number, (row, item) in enumerate(zip(rows, items, strict=True), start=1):
        text = (f"[undecodable row {row.id}: the SDK skips it]" if "undecodable_row_id" in item
                else item_line(item))
        print(f"{number:>4}. {stamp(row.created_at)}  {text}")


async def cmd_export(args: argparse.Namespace) -> None:
    """JSON Lines: each line is one stored item, byte for byte as the SDK wrote it, oldest first."""
    async with connect(args.database) as connection:
        await require_session(connection, args.session_id)
        total = int(await connection.scalar(
            select(func.count()).where(messages.c.session_id == args.session_id)) or 0)
        try:
            out = open(args.output, "w", encoding="utf-8", newline="\n") if args.output else sys.stdout  # noqa: SIM115, ASYNC230
        except OSError as error:
            raise CourseError(f"cannot write {args.output}: {error.strerror}") from None
        progress = Progress(total, f"export {args.session_id}", show_progress(args) and args.output is not None)
        written = 0
        try:
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


def read_items(path: str) -> list[str]:
    """The file's lines, each checked to be one JSON object; a one-line error naming the bad line otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise CourseError(f"cannot read {path}: {reason}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise CourseError(f"{path}:{number}: not a JSON item ({error.msg})") from None
        if not isinstance(item, dict):
            raise CourseError(f"{path}:{number}: a session item is a JSON object, not {type(item).__name__}")
    return lines


async def cmd_import(args: argparse.Namespace) -> None:
    lines = read_items(args.file)
    async with connect(args.database) as connection:
        existing = await connection.scalar(select(func.count()).where(sessions.c.session_id == args.session_id))
        if existing:
            raise CourseError(f"session {args.session_id!r} already exists; import into a new --session-id")
        # One transaction (begun by the check above): all items or none. Leaving the block without the
        # commit, e.g. on an error, rolls it back.
        await connection.execute(insert(sessions).values(session_id=args.session_id))
        for start in range(0, len(lines), BATCH):
            # Stored exactly as read (no re-serialising), so an export of the copy is identical to the file.
            # Rows share one CURRENT_TIMESTAMP; the SDK then orders them by id, i.e. file order.
            await connection.execute(insert(messages), [
                {"session_id": args.session_id, "message_data": line} for line in lines[start:start + BATCH]])
        await connection.commit()
    if args.json:
        print_json({"session_id": args.session_id, "items": len(lines), "file": args.file})
    else:
        print(f"imported {len(lines)} items from {args.file} into session {args.session_id!r}")


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


COMMANDS = {"list": cmd_list, "show": cmd_show, "export": cmd_export, "import": cmd_import, "purge": cmd_purge,
            "stats": cmd_stats}


# ------------------------------------------------------------------------------------------------ the parser
class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, not argparse's usage block: scripts and people both read the last line first.
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog=PROGRAM, description="Look after the SDK's session tables. No command: a demonstration.")
    parser.add_argument("--database", default=None,
                        help="sqlite | postgres | mysql | a SQLAlchemy async URL (default: DATABASE_URL, else sqlite)")
    common = argparse.ArgumentParser(add_help=False)
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

    show = commands.add_parser("show", parents=[common], help="one conversation, readable")
    show.add_argument("session_id")

    export = commands.add_parser("export", parents=[common], help="one session as JSON Lines (lossless)")
    export.add_argument("session_id")
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    importing = commands.add_parser("import", parents=[common], help="a JSON Lines export into a new session")
    importing.add_argument("file")
    importing.add_argument("--session-id", required=True, help="the new session's id (must not exist yet)")

    purge = commands.add_parser("purge", parents=[common], help="delete whole sessions inactive for a while")
    purge.add_argument("--older-than", type=duration, required=True, metavar="DURATION", help="e.g. 30d, 12h")
    purge.add_argument("--prefix", help="only session ids starting with this")
    purge.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    stats = commands.add_parser("stats", parents=[common], help="sessions, items, bytes, largest sessions")
    stats.add_argument("--top", type=positive, default=5)
    return parser


# ------------------------------------------------------------------------------------------- the demonstration
DEMO = "demo07-"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city (canned, so the demo runs offline)."""
    return f"Sunny and 21 C in {city}."


async def run_command(database: str, *argv: str) -> None:
    print(f"\n$ {PROGRAM} {' '.join(argv)}", flush=True)
    await COMMANDS[argv[0]](build_parser().parse_args([*argv, "--database", database]))
    sys.stdout.flush()


async def seed(engine: AsyncEngine) -> None:
    """Five demo sessions: three recent conversations (one with a tool call), two idle for 40 and 90 days."""
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choose_model().model,
                  tools=[get_weather])
    chats = {
        "ada": ["My name is Ada.", "What is the weather in London?", "What is my name?"],
        "alan": ["I live in Manchester.", "Where do I live?"],
        "grace": ["Call me Grace. 👩‍💻", "My favorite language is COBOL."],
        "old-40d": ["Hello!"],
        "old-90d": ["Hello!", "My name is Edsger."],
    }
    for name, turns in chats.items():
        session = SQLAlchemySession(DEMO + name, engine=engine)
        await session.clear_session()  # a rerun starts from the same state
        for turn in turns:
            await Runner.run(agent, turn, session=session)
    async with engine.begin() as connection:
        now = await database_now(connection)
        for name, days in (("old-40d", 40), ("old-90d", 90)):
            # Age them on the database clock, as if nobody had written to them since.
            when = now - timedelta(days=days)
            await connection.execute(update(sessions).where(sessions.c.session_id == DEMO + name)
                                     .values(created_at=when, updated_at=when))
            await connection.execute(update(messages).where(messages.c.session_id == DEMO + name)
                                     .values(created_at=when))
    await SQLAlchemySession(DEMO + "ada-copy", engine=engine).clear_session()


async def demo(database: str | None) -> None:
    url = resolve_database_url(database)
    heading("Lesson 07: operating the session store")
    print(f"model   : {choose_model().description}\ndatabase: {redact(url)}")
    step("Seeding five demo sessions (ids starting with demo07-); other sessions are left alone")
    async with open_database(url) as engine:
        await seed(engine)
    note("Every command below is one you can type; the demo passes --prefix demo07- where it matters.")

    step("1. list: sessions with item count and activity, newest first")
    await run_command(url, "list", "--prefix", DEMO)
    await run_command(url, "list", "--prefix", DEMO, "--inactive-for", "30d")

    step("2. show: one conversation, readable (roles, text, tool calls)")
    await run_command(url, "show", DEMO + "ada")

    step("3. export and import: JSON Lines, one item per line, byte for byte")
    with tempfile.TemporaryDirectory() as folder:
        original, copy = Path(folder) / "ada.jsonl", Path(folder) / "copy.jsonl"
        await run_command(url, "export", DEMO + "ada", "--output", str(original))
        print(original.read_text(encoding="utf-8").splitlines()[0][:100] + " ...")
        await run_command(url, "import", str(original), "--session-id", DEMO + "ada-copy")
        await run_command(url, "export", DEMO + "ada-copy", "--output", str(copy))
        same = original.read_bytes() == copy.read_bytes()
        note(f"The copy's export is identical to the original's: {same}")

    step("4. purge: retention, whole sessions inactive longer than the window")
    await run_command(url, "purge", "--older-than", "30d", "--prefix", DEMO, "--dry-run")
    await run_command(url, "purge", "--older-than", "30d", "--prefix", DEMO)
    await run_command(url, "list", "--prefix", DEMO)

    step("5. stats: the whole store at a glance")
    await run_command(url, "stats", "--top", "3")


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
        # One line: the problem, and the fix if there is one.
        print(f"error: {error.problem}" + (f" ({error.fix})" if error.fix else ""), file=sys.stderr)
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
