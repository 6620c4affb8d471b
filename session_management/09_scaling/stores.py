"""The stores the benchmark compares, each doing the same logical work per turn.

A turn is what a chat service does per user message: read the history (`get_items()`, or the last `limit` items),
then store the user's message and the agent's answer (`add_items([user, assistant])`). Every store is opened by
an entry of `STORES` (name -> opener); the peers (other libraries' stores) register theirs in `peers.py`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agents import SQLiteSession
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common.course_session import CourseSession


class TurnStore(Protocol):
    """One conversation in one store. Items are `{"role", "content"}` dicts both ways."""

    async def get_items(self, limit: int | None = None) -> list[Any]: ...
    async def add_items(self, items: list[Any]) -> None: ...
    async def clear_session(self) -> None: ...


StoreFactory = Callable[[str], TurnStore]
Close = Callable[[], Awaitable[None]]
# (url, shared engine, pool size) -> (session_id -> store, cleanup), or None where the store does not apply.
Opener = Callable[[str, AsyncEngine, int], Awaitable[tuple[StoreFactory, Close] | None]]


async def _nothing() -> None:
    pass


class RawDriver:
    """The reference ceiling: the driver itself, no SQLAlchemy. Same SQL work as a careful hand-written store:
    one SELECT of the history; an upsert of the session row and a multi-row INSERT in one transaction."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()
        self.pool_size = pool_size
        self.pool: Any = None

    async def start(self) -> None:
        u = self.url
        if self.backend == "postgresql":
            import asyncpg

            self.pool = await asyncpg.create_pool(host=u.host, port=u.port or 5432, user=u.username,
                                                  password=u.password, database=u.database,
                                                  min_size=1, max_size=self.pool_size)
        elif self.backend in ("mysql", "mariadb"):
            import aiomysql

            self.pool = await aiomysql.create_pool(host=u.host, port=u.port or 3306, user=u.username,
                                                   password=u.password or "", db=u.database, minsize=1,
                                                   maxsize=self.pool_size, autocommit=False, charset="utf8mb4")
        else:
            import asyncio

            import aiosqlite

            self.pool = await aiosqlite.connect(u.database, isolation_level=None)
            await self.pool.execute("PRAGMA busy_timeout = 5000")
            self.lock = asyncio.Lock()  # one connection: SQLite has one writer anyway

    async def close(self) -> None:
        if self.backend in ("mysql", "mariadb"):
            self.pool.close()
            await self.pool.wait_closed()
        else:
            await self.pool.close()

    def session(self, session_id: str) -> TurnStore:
        return _RawSession(self, session_id)


class _RawSession:
    def __init__(self, driver: RawDriver, session_id: str) -> None:
        self.driver, self.session_id = driver, session_id

    async def get_items(self, limit: int | None = None) -> list[Any]:
        d, sid = self.driver, self.session_id
        if limit is None:
            sql = "SELECT message_data FROM agent_messages WHERE session_id = {} ORDER BY created_at, id"
        else:  # the newest `limit`, newest first (reversed below), as the SDK's stores do
            sql = ("SELECT message_data FROM agent_messages WHERE session_id = {} "
                   f"ORDER BY created_at DESC, id DESC LIMIT {int(limit)}")
        if d.backend == "postgresql":
            async with d.pool.acquire() as connection:
                rows = await connection.fetch(sql.format("$1"), sid)
        elif d.backend in ("mysql", "mariadb"):
            async with d.pool.acquire() as connection, connection.cursor() as cursor:
                await cursor.execute(sql.format("%s"), (sid,))
                rows = await cursor.fetchall()
                await connection.commit()
        else:
            async with d.lock:
                rows = await (await d.pool.execute(sql.format("?"), (sid,))).fetchall()
        items = [json.loads(row[0]) for row in rows]
        return items if limit is None else items[::-1]

    async def clear_session(self) -> None:
        d, sid = self.driver, self.session_id
        if d.backend == "postgresql":
            async with d.pool.acquire() as connection:
                await connection.execute("DELETE FROM agent_sessions WHERE session_id = $1", sid)  # cascades
        elif d.backend in ("mysql", "mariadb"):
            async with d.pool.acquire() as connection:
                async with connection.cursor() as cursor:
                    await cursor.execute("DELETE FROM agent_messages WHERE session_id = %s", (sid,))
                    await cursor.execute("DELETE FROM agent_sessions WHERE session_id = %s", (sid,))
                await connection.commit()
        else:
            async with d.lock:
                await d.pool.execute("DELETE FROM agent_messages WHERE session_id = ?", (sid,))
                await d.pool.execute("DELETE FROM agent_sessions WHERE session_id = ?", (sid,))

    async def add_items(self, items: list[Any]) -> None:
        d, sid = self.driver, self.session_id
        data = [json.dumps(item, separators=(",", ":")) for item in items]
        if d.backend == "postgresql":
            values = ", ".join(f"($1, ${n + 2})" for n in range(len(data)))
            async with d.pool.acquire() as connection, connection.transaction():
                await connection.execute("INSERT INTO agent_sessions (session_id) VALUES ($1) ON CONFLICT "
                                         "(session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP", sid)
                await connection.execute(f"INSERT INTO agent_messages (session_id, message_data) VALUES {values}",
                                         sid, *data)
        elif d.backend in ("mysql", "mariadb"):
            values = ", ".join(["(%s, %s)"] * len(data))
            params = [p for item in data for p in (sid, item)]
            async with d.pool.acquire() as connection:
                async with connection.cursor() as cursor:
                    await cursor.execute("INSERT INTO agent_sessions (session_id) VALUES (%s) ON DUPLICATE KEY "
                                         "UPDATE updated_at = CURRENT_TIMESTAMP", (sid,))
                    await cursor.execute(f"INSERT INTO agent_messages (session_id, message_data) VALUES {values}",
                                         params)
                await connection.commit()
        else:
            async with d.lock:
                await d.pool.execute("BEGIN IMMEDIATE")
                await d.pool.execute("INSERT INTO agent_sessions (session_id) VALUES (?) ON CONFLICT (session_id) "
                                     "DO UPDATE SET updated_at = CURRENT_TIMESTAMP", (sid,))
                await d.pool.executemany("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
                                         [(sid, item) for item in data])
                await d.pool.execute("COMMIT")


async def _sdk_sqlalchemy(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    return (lambda sid: SQLAlchemySession(sid, engine=engine)), _nothing


async def _course_session(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    return (lambda sid: CourseSession(sid, engine=engine)), _nothing


async def _raw_driver(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    raw = RawDriver(url, pool_size)
    await raw.start()
    return raw.session, raw.close


async def _sdk_sqlite(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close] | None:
    if engine.dialect.name != "sqlite":
        return None
    database = make_url(url).database
    path = f"{database}-sdk_sqlite.db" if database and database != ":memory:" else ":memory:"
    return (lambda sid: SQLiteSession(sid, path)), _nothing  # its own file: its own tables


# The course's stores and the references. A store added here joins every run (peers.PEERS: with --peers).
STORES: dict[str, Opener] = {
    "sdk_sqlalchemy": _sdk_sqlalchemy,
    "course_session": _course_session,
    "raw_driver": _raw_driver,
    "sdk_sqlite": _sdk_sqlite,
}
