"""Sessions behind PgBouncer in transaction pooling mode: the failure, and the fix.

    uv run python -m session_management.09_scaling.pgbouncer_demo [--database postgres|URL]

Starts a throwaway PgBouncer (Debian package `pgbouncer`) on a free loopback port in front of the PostgreSQL
server, then runs 40 concurrent conversations through it twice: with asyncpg's defaults, and with its
prepared-statement caches off. Without PgBouncer installed it says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    CourseError,
    check_connection,
    create_engine,
    create_session_tables,
    heading,
    lesson_parser,
    note,
    redact,
    resolve_database_url,
    run_lesson,
    step,
)
from session_management.common.ports import free_port
from session_management.stores.course_session import CourseSession

CONVERSATIONS = 40
# The fix. asyncpg caches prepared statements per connection under fixed names; behind a transaction-mode pooler
# the next transaction may run on another server connection, where that name does not exist (or exists twice).
PGBOUNCER_SAFE_CONNECT_ARGS = {
    "statement_cache_size": 0,  # asyncpg: no named, cached prepared statements
    "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg adapter: no cache of its own either
    "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",  # unique names if one is made
}


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None)


def start_pgbouncer(binary: str, server: URL, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{server.username}" "{server.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = plain\nauth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 500\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    folder.chmod(0o755)
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        command = ["runuser", "-u", "nobody", "--", *command]
        for path in folder.iterdir():
            path.chmod(0o644)
        os.chmod(folder, 0o777)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            if process.poll() is not None:
                break
            import time

            time.sleep(0.1)
    process.kill()
    assert process.stderr is not None  # started with stderr=PIPE
    log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
    raise CourseError(f"PgBouncer did not start: {log[-300:] or process.stderr.read().decode()[-300:]}",
                      "check that the PostgreSQL server is reachable and the credentials are right")


async def conversations(engine: AsyncEngine, store: str) -> tuple[int, int, str]:
    """Run concurrent conversations; return (turns that worked, errors, the first error)."""
    ok, errors, first = 0, 0, ""

    async def one(number: int) -> None:
        nonlocal ok, errors, first
        session_id = f"pgbouncer-{store}-{uuid.uuid4().hex[:8]}-{number}"
        session = (SQLAlchemySession(session_id, engine=engine) if store == "sdk_sqlalchemy"
                   else CourseSession(session_id, engine=engine))
        for turn in range(3):
            try:
                await session.get_items()
                await session.add_items([{"role": "user", "content": f"turn {turn}"}])
                ok += 1
            except Exception as error:  # noqa: BLE001 - the point of the demo is to show them
                errors += 1
                first = first or f"{type(error).__name__}: {str(error).splitlines()[0][:150]}"

    await asyncio.gather(*(one(n) for n in range(CONVERSATIONS)))
    return ok, errors, first


async def main(args: argparse.Namespace) -> None:
    heading("Lesson 09: PgBouncer in transaction pooling mode")
    binary = pgbouncer_binary()
    if binary is None:
        print("PgBouncer is not installed, so this part is skipped (Debian/Ubuntu: apt-get install pgbouncer).")
        return
    url = resolve_database_url(args.database or "postgres")
    server = make_url(url)
    if server.get_backend_name() != "postgresql":
        raise CourseError("PgBouncer is a PostgreSQL pooler.", "use --database postgres or a PostgreSQL URL")
    direct = create_engine(url)
    try:
        await check_connection(direct)  # a server that is down or refuses: one line naming the fix
        await create_session_tables(direct)
    finally:
        await direct.dispose()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    process, port = start_pgbouncer(binary, server, folder)
    pooled_url = server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    print(f"server   : {redact(url)}\npgbouncer: {redact(pooled_url)} (pool_mode=transaction, 4 server connections)")
    try:
        for label, connect_args in (("asyncpg's defaults", {}), ("prepared-statement caches off",
                                                                 PGBOUNCER_SAFE_CONNECT_ARGS)):
            step(f"{CONVERSATIONS} concurrent conversations through PgBouncer, {label}")
            # pool_pre_ping off: its ping runs in a transaction of its own, which hides nothing here but adds noise.
            engine = create_engine(pooled_url, pool_size=20, max_overflow=0, pool_pre_ping=False,
                                   connect_args=connect_args)
            try:
                for store in ("sdk_sqlalchemy", "course_session"):
                    ok, errors, first = await conversations(engine, store)
                    note(f"{store:<15} turns ok: {ok:>3}, failed: {errors:>3}" + (f"  first error: {first}"
                                                                                    if first else ""))
            finally:
                await engine.dispose()
    finally:
        process.terminate()
        process.wait(timeout=10)
        cleanup = create_engine(url)
        try:  # leave the database as we found it
            async with cleanup.begin() as connection:
                await connection.execute(text("DELETE FROM agent_messages WHERE session_id LIKE 'pgbouncer-%'"))
                await connection.execute(text("DELETE FROM agent_sessions WHERE session_id LIKE 'pgbouncer-%'"))
        finally:
            await cleanup.dispose()
    print("\nThe fix: create_async_engine(url, connect_args={'statement_cache_size': 0, "
          "'prepared_statement_cache_size': 0, 'prepared_statement_name_func': lambda: f'__asyncpg_{uuid4()}__'})")


if __name__ == "__main__":
    run_lesson(main, lesson_parser("Lesson 09: sessions behind PgBouncer").parse_args())
