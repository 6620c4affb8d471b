"""`CourseSession` on SQLite, through SQLAlchemy's connection (SQLite is not the target of the speed-up)."""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import TextClause, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._pool import settle
from .base import CourseSession

T = TypeVar("T")
LOCK_RETRIES = 40
BUSY_TIMEOUT_MS = 5000


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
_writer_gates: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _writer_gate(engine: AsyncEngine) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    entry = _writer_gates.get(engine.sync_engine)
    if entry is None or entry[0] is not loop:
        entry = _writer_gates[engine.sync_engine] = (loop, asyncio.Lock())
    return entry[1]


class SQLiteCourseSession(CourseSession, dialects=("sqlite",)):
    """Writes take the file's write lock at their first statement (``BEGIN IMMEDIATE``), so two writers never
    deadlock half-way, and are retried while another process holds the file locked."""

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        super().__init__(session_id, **kwargs)
        _configure(self.engine)
        sessions, messages = self._sessions_table, self._messages_table
        self._select_all = text(f"SELECT message_data FROM {messages} WHERE session_id = :sid "
                                f"ORDER BY created_at, id")
        self._select_newest = text(f"SELECT message_data FROM {messages} WHERE session_id = :sid "
                                   f"ORDER BY created_at DESC, id DESC LIMIT :n")
        self._upsert = text(f"INSERT INTO {sessions} (session_id) VALUES (:sid) "
                            f"ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP")
        self._insert = text(f"INSERT INTO {messages} (session_id, message_data) VALUES (:sid, :data)")
        self._delete_newest = text(f"DELETE FROM {messages} WHERE id = (SELECT id FROM {messages} "
                                   f"WHERE session_id = :sid ORDER BY created_at DESC, id DESC LIMIT 1) "
                                   f"RETURNING message_data")
        self._delete_messages = text(f"DELETE FROM {messages} WHERE session_id = :sid")
        self._delete_session = text(f"DELETE FROM {sessions} WHERE session_id = :sid")

    async def _read_all(self) -> list[str]:
        return await settle(self._read(self._select_all, {"sid": self.session_id}))

    async def _read_newest(self, count: int) -> list[str]:
        return await settle(self._read(self._select_newest, {"sid": self.session_id, "n": count}))

    async def _read(self, statement: TextClause, parameters: dict[str, Any]) -> list[str]:
        # Run to the end even when the caller is cancelled (settle): aiosqlite's worker thread, interrupted
        # mid-statement, can leave the connection's close pending forever. A local read is short.
        async with self.engine.connect() as connection:
            return [row[0] for row in await connection.execute(statement, parameters)]

    async def _append(self, payload: list[str]) -> None:
        async def write(connection: AsyncConnection) -> None:
            await connection.execute(self._upsert, {"sid": self.session_id})
            await connection.execute(self._insert, [{"sid": self.session_id, "data": data} for data in payload])

        await self._write(write)

    async def _take_newest(self) -> str | None:
        async def take(connection: AsyncConnection) -> str | None:
            return (await connection.execute(self._delete_newest, {"sid": self.session_id})).scalar()

        return await self._write(take)

    async def _delete_all(self) -> None:
        async def delete(connection: AsyncConnection) -> None:
            await connection.execute(self._delete_messages, {"sid": self.session_id})
            await connection.execute(self._delete_session, {"sid": self.session_id})

        await self._write(delete)

    async def _write(self, operation: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run *operation* in a write transaction, again while another writer holds the file locked."""
        for attempt in range(LOCK_RETRIES + 1):
            try:
                async with _writer_gate(self.engine), self._write_transaction() as connection:
                    return await operation(connection)
            except OperationalError as error:
                if "locked" not in str(error).lower() or attempt == LOCK_RETRIES:
                    raise
            await asyncio.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * random.random())
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                await connection.exec_driver_sql("ROLLBACK")
                raise
            await connection.exec_driver_sql("COMMIT")
