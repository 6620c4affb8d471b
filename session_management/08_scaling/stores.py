"""The stores the benchmark compares, each doing the same logical work per turn.

A turn is what a chat service does per user message: read the history (`get_items()`), then store the user's
message and the agent's answer (`add_items([user, assistant])`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agents import SQLiteSession
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common.fast_session import CourseSession

from .redis_stores import make_redis_stores


class TurnStore(Protocol):
    async def get_items(self) -> list[Any]: ...
    async def add_items(self, items: list[Any]) -> None: ...


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

    async def get_items(self) -> list[Any]:
        d, sid = self.driver, self.session_id
        sql = "SELECT message_data FROM agent_messages WHERE session_id = {} ORDER BY created_at, id"
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
        return [json.loads(row[0]) for row in rows]

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


StoreFactory = Callable[[str], TurnStore]


async def make_stores(url: str, engine: AsyncEngine, pool_size: int, redis: bool = False
                      ) -> tuple[dict[str, StoreFactory], Callable[[], Awaitable[None]]]:
    """name -> factory(session_id) for every store that applies to this database, and a cleanup coroutine."""
    raw = RawDriver(url, pool_size)
    await raw.start()
    stores: dict[str, StoreFactory] = {
        "sdk_sqlalchemy": lambda sid: SQLAlchemySession(sid, engine=engine),
        "course_session": lambda sid: CourseSession(sid, engine=engine),
        "raw_driver": raw.session,
    }
    if engine.dialect.name == "sqlite":
        database = make_url(url).database
        path = f"{database}-sdk_sqlite.db" if database and database != ":memory:" else ":memory:"
        stores["sdk_sqlite"] = lambda sid: SQLiteSession(sid, path)  # its own file: its own tables
    if not redis:
        return stores, raw.close
    redis_stores, close_redis = await make_redis_stores(pool_size)  # lesson 09's stores (--redis)
    stores.update(redis_stores)

    async def close_all() -> None:
        await raw.close()
        await close_redis()

    return stores, close_all
