"""`CourseSession`: the SDK's `Session` protocol on SQLAlchemySession's own tables, with fewer round trips.

It reads and writes exactly the rows `SQLAlchemySession` does (same tables, columns, JSON format, and order by
``(created_at, id)``), so either can read what the other wrote. It keeps the same guarantees (items in insertion
order, atomic `add_items`, no lost or duplicated items under concurrent writers, `pop_item` never hands out one
item twice) and gets there with less work per call:

* It borrows a connection from the application's `AsyncEngine` pool, then talks to the **driver** (asyncpg,
  aiomysql) directly, with statements asyncpg prepares once per connection and reuses.
* PostgreSQL: `add_items` is **one statement**, an upsert of the session row chained to a multi-row insert of
  the items (`INSERT ... ON CONFLICT ... RETURNING` feeding `INSERT ... SELECT unnest(...)`). The upsert locks
  the session's row until the statement commits, which serialises writers to one session as the SDK's
  `SELECT ... FOR UPDATE` does. `get_items` is one statement.
* MySQL/MariaDB: `add_items` is an upsert (`ON DUPLICATE KEY UPDATE`, which also locks the row) plus one
  multi-row insert and the commit. Racing first writes to a *new* session can deadlock inside InnoDB (the SDK
  fails there, see lesson 02); InnoDB then rolls the whole transaction back, so `add_items` safely retries it,
  up to a bound.
* SQLite: the same statements through SQLAlchemy, in `BEGIN IMMEDIATE` transactions, retried while the file
  is locked (SQLite is not the target of this optimisation).

The SDK's `SQLAlchemySession` spends about nine round trips and its ORM machinery on a turn (`get_items` +
`add_items`); this class spends three to four on PostgreSQL. Lesson 08 measures the difference.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from ..schema import MESSAGES_TABLE, SESSIONS_TABLE

logger = logging.getLogger(__name__)

MYSQL_DEADLOCK_RETRIES = 8
SQLITE_LOCK_RETRIES = 40
_sqlite_engines: set[int] = set()
_gates: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _gate(engine: AsyncEngine) -> asyncio.Semaphore:
    """A first-come-first-served queue in front of the engine's pool, one per engine.

    Under overload, the pool lets a task that has just returned a connection take one again before the tasks
    already waiting (it "barges"); a few conversations then race ahead while others starve, and the slowest
    turns take many times the median. asyncio's Semaphore queues strictly in arrival order, so every turn waits
    its fair share: the tail stays close to the median.
    """
    gate = _gates.get(engine.sync_engine)
    if gate is None:
        pool = engine.sync_engine.pool
        size = pool.size() + max(0, getattr(pool, "_max_overflow", 0)) if hasattr(pool, "size") else 10
        gate = _gates[engine.sync_engine] = asyncio.Semaphore(max(1, size))
    return gate


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Wait for a locked SQLite file instead of failing at once (per connection, once per engine)."""
    if id(engine.sync_engine) in _sqlite_engines:
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _busy_timeout(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 5000")
        finally:
            cursor.close()

    _sqlite_engines.add(id(engine.sync_engine))


class CourseSession(SessionABC):
    """A session store compatible with `SQLAlchemySession`'s tables, built for throughput."""

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        *,
        engine: AsyncEngine,
        session_settings: SessionSettings | None = None,
        ensure_ascii: bool = True,
        sessions_table: str = SESSIONS_TABLE,
        messages_table: str = MESSAGES_TABLE,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self.engine = engine
        self._ensure_ascii = ensure_ascii
        self._dialect = engine.dialect.name
        if self._dialect == "sqlite":
            _configure_sqlite(engine)
        sessions, messages = sessions_table, messages_table
        if self._dialect == "postgresql":
            self._sql = {
                "add": f"WITH s AS (INSERT INTO {sessions} (session_id) VALUES ($1) ON CONFLICT (session_id) "
                       f"DO UPDATE SET updated_at = CURRENT_TIMESTAMP RETURNING session_id) "
                       f"INSERT INTO {messages} (session_id, message_data) "
                       f"SELECT s.session_id, t.data FROM s, unnest($2::text[]) WITH ORDINALITY AS t(data, n) "
                       f"ORDER BY t.n",
                "all": f"SELECT message_data FROM {messages} WHERE session_id = $1 ORDER BY created_at, id",
                "last": f"SELECT message_data FROM {messages} WHERE session_id = $1 "
                        f"ORDER BY created_at DESC, id DESC LIMIT $2",
                "lock": f"SELECT 1 FROM {sessions} WHERE session_id = $1 FOR UPDATE",
                "pop": f"DELETE FROM {messages} WHERE id = (SELECT id FROM {messages} WHERE session_id = $1 "
                       f"ORDER BY created_at DESC, id DESC LIMIT 1) RETURNING message_data",
                "clear_messages": f"DELETE FROM {messages} WHERE session_id = $1",
                "clear_session": f"DELETE FROM {sessions} WHERE session_id = $1",
            }
        elif self._dialect in ("mysql", "mariadb"):
            self._sql = {
                "upsert": f"INSERT INTO {sessions} (session_id) VALUES (%s) "
                          f"ON DUPLICATE KEY UPDATE updated_at = CURRENT_TIMESTAMP",
                "insert": f"INSERT INTO {messages} (session_id, message_data) VALUES ",
                "all": f"SELECT message_data FROM {messages} WHERE session_id = %s ORDER BY created_at, id",
                "last": f"SELECT message_data FROM {messages} WHERE session_id = %s "
                        f"ORDER BY created_at DESC, id DESC LIMIT %s",
                "lock": f"SELECT 1 FROM {sessions} WHERE session_id = %s FOR UPDATE",
                "newest": f"SELECT id, message_data FROM {messages} WHERE session_id = %s "
                          f"ORDER BY created_at DESC, id DESC LIMIT 1",
                "delete": f"DELETE FROM {messages} WHERE id = %s",
                "clear_messages": f"DELETE FROM {messages} WHERE session_id = %s",
                "clear_session": f"DELETE FROM {sessions} WHERE session_id = %s",
            }
        else:
            self._sql = {
                "upsert": f"INSERT INTO {sessions} (session_id) VALUES (:sid) "
                          f"ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP",
                "insert": f"INSERT INTO {messages} (session_id, message_data) VALUES (:sid, :data)",
                "all": f"SELECT message_data FROM {messages} WHERE session_id = :sid ORDER BY created_at, id",
                "last": f"SELECT message_data FROM {messages} WHERE session_id = :sid "
                        f"ORDER BY created_at DESC, id DESC LIMIT :n",
                "pop": f"DELETE FROM {messages} WHERE id = (SELECT id FROM {messages} WHERE session_id = :sid "
                       f"ORDER BY created_at DESC, id DESC LIMIT 1) RETURNING message_data",
                "clear_messages": f"DELETE FROM {messages} WHERE session_id = :sid",
                "clear_session": f"DELETE FROM {sessions} WHERE session_id = :sid",
            }

    # -- helpers -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        """A pooled connection's driver object (asyncpg.Connection or aiomysql.Connection), taken in turn."""
        async with _gate(self.engine):
            # The pool's own checkout (pre-ping included) and return (reset included), without building the
            # Connection objects the SQL layer needs and this class does not.
            raw = await self.engine.raw_connection()
            try:
                yield raw.driver_connection
            finally:
                await greenlet_spawn(raw.close)

    @asynccontextmanager
    async def _mysql_transaction(self) -> AsyncIterator[Any]:
        """A MySQL transaction on a pooled connection: committed on success, rolled back on error.

        The transaction is always ended here, so the pool's reset-on-return (another ROLLBACK round trip) is
        skipped, as SQLAlchemy itself does when a Connection closes its own transaction.
        """
        async with _gate(self.engine):
            raw = await self.engine.raw_connection()
            ended = False
            try:
                driver = raw.driver_connection
                try:
                    yield driver
                    await driver.commit()
                except BaseException:
                    await driver.rollback()
                    raise
                ended = True
            finally:
                close_special = getattr(raw, "_close_special", None)
                if ended and close_special is not None:
                    await greenlet_spawn(close_special, transaction_reset=True)
                else:
                    await greenlet_spawn(raw.close)

    def _decode(self, rows: list[str]) -> list[TResponseInputItem]:
        items: list[TResponseInputItem] = []
        for raw in rows:
            try:
                items.append(json.loads(raw))
            except json.JSONDecodeError:
                # Same policy as the SDK (skip), but never silently.
                logger.warning("session %r: skipping a stored item that is not valid JSON", self.session_id)
        return items

    @asynccontextmanager
    async def _sqlite_write(self) -> AsyncIterator[AsyncConnection]:
        """An SQLite write transaction that holds the write lock from its first statement."""
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                await connection.exec_driver_sql("ROLLBACK")
                raise
            await connection.exec_driver_sql("COMMIT")

    async def _sqlite_retry(self, operation: Any) -> Any:
        for attempt in range(SQLITE_LOCK_RETRIES + 1):
            try:
                return await operation()
            except OperationalError as error:
                if "locked" not in str(error).lower() or attempt == SQLITE_LOCK_RETRIES:
                    raise
                await asyncio.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * random.random())
        raise AssertionError("unreachable")

    # -- the Session protocol ------------------------------------------------------------------------------
    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        count = resolve_session_limit(limit, self.session_settings)
        if count is not None and count <= 0:
            return []
        if self._dialect == "postgresql":
            async with self._driver() as driver:
                if count is None:
                    rows = await driver.fetch(self._sql["all"], self.session_id)
                else:
                    rows = list(reversed(await driver.fetch(self._sql["last"], self.session_id, count)))
            return self._decode([row[0] for row in rows])
        if self._dialect in ("mysql", "mariadb"):
            async with self._driver() as driver:
                async with driver.cursor() as cursor:
                    if count is None:
                        await cursor.execute(self._sql["all"], (self.session_id,))
                        rows = list(await cursor.fetchall())
                    else:
                        await cursor.execute(self._sql["last"], (self.session_id, count))
                        rows = list(reversed(await cursor.fetchall()))
            return self._decode([row[0] for row in rows])
        async with self.engine.connect() as connection:
            if count is None:
                result = await connection.execute(text(self._sql["all"]), {"sid": self.session_id})
                rows = list(result)
            else:
                result = await connection.execute(text(self._sql["last"]), {"sid": self.session_id, "n": count})
                rows = list(reversed(list(result)))
        return self._decode([row[0] for row in rows])

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        # Serialise first: a non-JSON item fails here, before anything is written.
        payload = [json.dumps(item, ensure_ascii=self._ensure_ascii, separators=(",", ":")) for item in items]
        if self._dialect == "postgresql":
            async with self._driver() as driver:
                await driver.execute(self._sql["add"], self.session_id, payload)
            return
        if self._dialect in ("mysql", "mariadb"):
            await self._mysql_add(payload)
            return

        async def write() -> None:
            async with self._sqlite_write() as connection:
                await connection.execute(text(self._sql["upsert"]), {"sid": self.session_id})
                await connection.execute(text(self._sql["insert"]),
                                         [{"sid": self.session_id, "data": data} for data in payload])

        await self._sqlite_retry(write)

    async def _mysql_add(self, payload: list[str]) -> None:
        import pymysql  # aiomysql's error classes are pymysql's

        insert = self._sql["insert"] + ", ".join(["(%s, %s)"] * len(payload))
        params: list[str] = []
        for data in payload:
            params += [self.session_id, data]
        for attempt in range(MYSQL_DEADLOCK_RETRIES + 1):
            try:
                async with self._mysql_transaction() as driver, driver.cursor() as cursor:
                    await cursor.execute(self._sql["upsert"], (self.session_id,))
                    await cursor.execute(insert, params)
                return
            except pymysql.err.OperationalError as error:
                # 1213: deadlock; InnoDB rolled the transaction back, so trying again is safe.
                if error.args[0] != 1213 or attempt == MYSQL_DEADLOCK_RETRIES:
                    raise
            await asyncio.sleep(0.002 * (attempt + 1) * random.random())

    async def pop_item(self) -> TResponseInputItem | None:
        if self._dialect == "postgresql":
            async with self._driver() as driver:
                async with driver.transaction():
                    # Lock the session row first so concurrent pops take turns: each claims a different item.
                    if await driver.fetchval(self._sql["lock"], self.session_id) is None:
                        return None
                    row = await driver.fetchval(self._sql["pop"], self.session_id)
            return None if row is None else (self._decode([row]) or [None])[0]
        if self._dialect in ("mysql", "mariadb"):
            newest = None
            async with self._mysql_transaction() as driver, driver.cursor() as cursor:
                await cursor.execute(self._sql["lock"], (self.session_id,))
                if await cursor.fetchone() is not None:
                    await cursor.execute(self._sql["newest"], (self.session_id,))
                    newest = await cursor.fetchone()
                    if newest is not None:
                        await cursor.execute(self._sql["delete"], (newest[0],))
            return None if newest is None else (self._decode([newest[1]]) or [None])[0]

        async def pop() -> TResponseInputItem | None:
            async with self._sqlite_write() as connection:
                row = (await connection.execute(text(self._sql["pop"]), {"sid": self.session_id})).first()
            return None if row is None else (self._decode([row[0]]) or [None])[0]

        return await self._sqlite_retry(pop)  # type: ignore[no-any-return]

    async def clear_session(self) -> None:
        if self._dialect == "postgresql":
            async with self._driver() as driver:
                async with driver.transaction():
                    await driver.execute(self._sql["clear_messages"], self.session_id)
                    await driver.execute(self._sql["clear_session"], self.session_id)
            return
        if self._dialect in ("mysql", "mariadb"):
            async with self._mysql_transaction() as driver, driver.cursor() as cursor:
                await cursor.execute(self._sql["clear_messages"], (self.session_id,))
                await cursor.execute(self._sql["clear_session"], (self.session_id,))
            return

        async def clear() -> None:
            async with self._sqlite_write() as connection:
                await connection.execute(text(self._sql["clear_messages"]), {"sid": self.session_id})
                await connection.execute(text(self._sql["clear_session"]), {"sid": self.session_id})

        await self._sqlite_retry(clear)
