"""`CourseSession` on SQLite, through aiosqlite: one hop to aiosqlite's thread per statement, and no more.

Through SQLAlchemy's `Connection` a turn took 18 hops to aiosqlite's worker thread (a cursor, an execute, a fetch
and a close per statement, and a rollback when the connection went back); each hop is a thread wake-up. The
driver connection borrowed from the application's pool (``_pool.borrow``, as the server classes do) needs 5:
one for a read, four for a write.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ._pool import Borrowed, borrow, loop_local, settle
from .base import CourseSession

T = TypeVar("T")
LOCK_RETRIES = 40
BUSY_TIMEOUT_MS = 5000
ROWS_PER_INSERT = 400  # 800 parameters: under the 999 that SQLite before 3.32 allows in one statement


def _busy_timeout(dbapi_connection: Any, _: Any) -> None:
    """Wait for a locked database file instead of failing at once."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _configure(engine: AsyncEngine) -> None:
    # The engine's own event registry says whether this engine is configured: nothing to leak or reuse.
    if not event.contains(engine.sync_engine, "connect", _busy_timeout):
        event.listen(engine.sync_engine, "connect", _busy_timeout)


# One writer at a time per engine and event loop: SQLite has one writer anyway, and an asyncio queue is FIFO and
# immediate, where writers of the same process contending for the file wait in SQLite's busy handler, which sleeps
# in steps of up to 100 ms. Other processes still meet the busy timeout and the retries below.
_writer_gates: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _writer_gate(engine: AsyncEngine) -> asyncio.Lock:
    return loop_local(_writer_gates, engine, asyncio.Lock)


class SQLiteCourseSession(CourseSession, dialects=("sqlite",)):
    """Writes take the file's write lock at their first statement (``BEGIN IMMEDIATE``), so two writers never
    deadlock half-way, and are retried while another process holds the file locked."""

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        super().__init__(session_id, **kwargs)
        _configure(self.engine)
        sessions, messages = self._sessions_table, self._messages_table
        self._select_all = (f"SELECT message_data FROM {messages} WHERE session_id = ? "
                            f"ORDER BY created_at, id")
        self._select_newest = (f"SELECT message_data FROM {messages} WHERE session_id = ? "
                               f"ORDER BY created_at DESC, id DESC LIMIT ?")
        self._upsert = (f"INSERT INTO {sessions} (session_id) VALUES (?) "
                        f"ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP")
        self._insert = f"INSERT INTO {messages} (session_id, message_data) VALUES "
        self._delete_newest = (f"DELETE FROM {messages} WHERE id = (SELECT id FROM {messages} "
                               f"WHERE session_id = ? ORDER BY created_at DESC, id DESC LIMIT 1) "
                               f"RETURNING message_data")
        self._delete_messages = f"DELETE FROM {messages} WHERE session_id = ?"
        self._delete_session = f"DELETE FROM {sessions} WHERE session_id = ?"

    async def _read_all(self) -> list[str]:
        return await settle(self._read(self._select_all, (self.session_id,)))

    async def _read_newest(self, count: int) -> list[str]:
        return await settle(self._read(self._select_newest, (self.session_id, count)))

    async def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[str]:
        # Run to the end even when the caller is cancelled (settle): aiosqlite's worker thread, interrupted
        # mid-statement, can leave the connection's close pending forever. A local read is short.
        async with borrow(self.engine) as connection:
            rows = await connection.driver.execute_fetchall(sql, parameters)
            connection.transaction_ended = True  # a SELECT opens no transaction here: nothing for the pool to reset
        return [row[0] for row in rows]

    async def _append(self, payload: list[str]) -> None:
        async def write(connection: Borrowed) -> None:
            await connection.driver.execute_fetchall(self._upsert, (self.session_id,))
            for start in range(0, len(payload), ROWS_PER_INSERT):  # one multi-row INSERT per chunk, in order
                chunk = payload[start:start + ROWS_PER_INSERT]
                values = ", ".join(["(?, ?)"] * len(chunk))
                parameters = [value for data in chunk for value in (self.session_id, data)]
                await connection.driver.execute_fetchall(self._insert + values, parameters)

        await self._write(write)

    async def _take_newest(self) -> str | None:
        async def take(connection: Borrowed) -> str | None:
            rows = await connection.driver.execute_fetchall(self._delete_newest, (self.session_id,))
            return rows[0][0] if rows else None

        return await self._write(take)

    async def _delete_all(self) -> None:
        async def delete(connection: Borrowed) -> None:
            await connection.driver.execute_fetchall(self._delete_messages, (self.session_id,))
            await connection.driver.execute_fetchall(self._delete_session, (self.session_id,))

        await self._write(delete)

    async def _write(self, operation: Callable[[Borrowed], Awaitable[T]]) -> T:
        """Run *operation* in a write transaction, again while another process holds the file locked."""
        for attempt in range(LOCK_RETRIES + 1):
            try:
                async with _writer_gate(self.engine), borrow(self.engine) as connection:
                    await connection.driver.execute_fetchall("BEGIN IMMEDIATE")
                    result = await operation(connection)
                    await connection.driver.execute_fetchall("COMMIT")
                    connection.transaction_ended = True  # else the pool's reset on return rolls it back
                    return result
            except sqlite3.OperationalError as error:
                if "locked" not in str(error).lower() or attempt == LOCK_RETRIES:
                    raise
            await asyncio.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * random.random())
        raise AssertionError("unreachable")
