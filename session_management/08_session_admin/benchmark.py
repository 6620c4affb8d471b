"""Export and import against PostgreSQL's own tools: the tool's ``export --all`` + ``import`` beside
``pg_dump`` + ``psql`` (COPY) of the same two tables, in the same run, on the same server.

    uv run python -m session_management.08_session_admin.benchmark [--database postgres|URL] [--sessions 10000]
        [--items 20]

It works in three scratch databases beside the one you name (``<database>_lesson08_bench_*``, re-created on
every run) and needs ``pg_dump`` and ``psql`` on the PATH (Debian: ``apt-get install postgresql-client``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from session_management.common import CourseError, create_engine, create_session_tables, redact, run_lesson
from session_management.common.settings import resolve_database_url

from .cli import build_parser
from .commands import COMMANDS

TABLES = ("agent_sessions", "agent_messages")
REPOSITORY = Path(__file__).resolve().parents[2]


async def scratch(url: str, suffix: str) -> str:
    """A database beside *url*'s (created on the first run) with the SDK's tables, new and empty."""
    parsed = make_url(url)
    name = f"{parsed.database}_lesson08_bench_{suffix}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            exists = await connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    scratch_url = parsed.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(scratch_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {', '.join(reversed(TABLES))}"))
        await create_session_tables(engine)
    finally:
        await engine.dispose()
    return scratch_url


async def seed(url: str, session_count: int, items: int) -> None:
    """*session_count* sessions of *items* SDK-shaped items each, written with COPY (seeding is not measured)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            driver: Any = (await connection.get_raw_connection()).driver_connection
            await driver.execute("SET TIME ZONE 'UTC'")
            now = await driver.fetchval("SELECT LOCALTIMESTAMP")
            await driver.copy_records_to_table(TABLES[0], columns=["session_id", "created_at", "updated_at"],
                                               records=[(f"user-{n:06d}", now, now) for n in range(session_count)])
            await driver.copy_records_to_table(TABLES[1], columns=["session_id", "message_data", "created_at"],
                                               records=[(f"user-{n:06d}", item(n, i), now)
                                                        for n in range(session_count) for i in range(items)])
    finally:
        await engine.dispose()


def item(conversation: int, number: int) -> str:
    """An item as the SDK stores it: compact JSON."""
    return json.dumps({"role": "user" if number % 2 == 0 else "assistant",
                       "content": f"message {number} of conversation {conversation}: what is the weather?"},
                      separators=(",", ":"))


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def tool(*argv: str) -> None:
    """A command in this process (its own work, without starting Python and importing the SDK)."""
    with contextlib.redirect_stdout(io.StringIO()):
        await COMMANDS[argv[0]](build_parser().parse_args(list(argv)))


def cli(*argv: str) -> Callable[[], Awaitable[object]]:
    """The command as an operator types it: a new process."""
    return command(sys.executable, "-m", "session_management.08_session_admin.main", *argv)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def command(*argv: str) -> Callable[[], Awaitable[object]]:
    def call() -> Awaitable[object]:
        return asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True, cwd=REPOSITORY)
    return call


async def main(args: argparse.Namespace) -> None:
    url = resolve_database_url(args.database or "postgres")
    if make_url(url).get_backend_name() != "postgresql":
        raise CourseError("the benchmark compares with pg_dump and COPY, so it runs on PostgreSQL",
                          "run it with --database postgres (or a postgresql+asyncpg:// URL)")
    missing = [name for name in ("pg_dump", "psql") if shutil.which(name) is None]
    if missing:
        raise CourseError(f"{' and '.join(missing)} not found", "install the PostgreSQL client tools "
                          "(Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install libpq)")
    source, in_process, dump_copy = [await scratch(url, suffix) for suffix in ("source", "in_process", "dump")]
    command_line = in_process if args.skip_commands else await scratch(url, "command_line")
    await seed(source, args.sessions, args.items)
    rows = args.sessions * args.items
    print(f"database: {redact(url)} (scratch databases beside it)")
    print(f"{args.sessions:,} sessions x {args.items} items = {rows:,} items\n")
    with tempfile.TemporaryDirectory() as folder:
        files = {name: str(Path(folder) / name) for name in ("one.jsonl", "two.jsonl", "again.jsonl", "dump.sql")}
        results = {
            "export --all, in this process": await timed(lambda: tool(
                "export", "--all", "-o", files["one.jsonl"], "--no-progress", "--database", source)),
            "import, in this process": await timed(lambda: tool(
                "import", files["one.jsonl"], "--no-progress", "--database", in_process)),
            "pg_dump --data-only (COPY format)": await timed(command(
                "pg_dump", "--data-only", *[f"--table={table}" for table in TABLES], "--file", files["dump.sql"],
                libpq(source))),
            "psql (COPY into the tables)": await timed(command(
                "psql", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction", "--file", files["dump.sql"],
                "--dbname", libpq(dump_copy))),
        }
        if not args.skip_commands:
            results["export --all, as a command"] = await timed(cli(
                "export", "--all", "-o", files["two.jsonl"], "--no-progress", "--database", source))
            results["import, as a command"] = await timed(cli(
                "import", files["two.jsonl"], "--no-progress", "--database", command_line))
        await tool("export", "--all", "-o", files["again.jsonl"], "--no-progress", "--database", command_line)
        identical = same_bytes(files["one.jsonl"], files["again.jsonl"])
    for label, seconds in results.items():
        print(f"{label:<36} {seconds:7.2f} s  {rows / seconds:>10,.0f} items/s")
    theirs = results["pg_dump --data-only (COPY format)"] + results["psql (COPY into the tables)"]
    for how in ("in this process",) if args.skip_commands else ("in this process", "as a command"):
        ours = results[f"export --all, {how}"] + results[f"import, {how}"]
        print(f"export + import {how}: {ours:.2f} s, {ours / theirs:.1f}x pg_dump + psql ({theirs:.2f} s)")
    print(f"the imported copy exports the same bytes: {identical}")


def same_bytes(one: str, other: str) -> bool:
    return Path(one).read_bytes() == Path(other).read_bytes()


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(description="Lesson 08: export/import against pg_dump + COPY")
    found.add_argument("--database", default=None, help="postgres or a postgresql+asyncpg:// URL (default postgres)")
    found.add_argument("--sessions", type=int, default=10_000)
    found.add_argument("--items", type=int, default=20)
    found.add_argument("--skip-commands", action="store_true",
                       help="only the in-process rows (no new processes, so no SDK-free start-up measured)")
    return found


if __name__ == "__main__":
    run_lesson(main, parser().parse_args())
