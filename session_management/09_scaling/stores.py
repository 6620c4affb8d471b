"""The stores the benchmark compares, each doing the same logical work per turn.

A turn is what a chat service does per user message: read the history (`get_items()`, or the last `limit` items),
then store the user's message and the agent's answer (`add_items([user, assistant])`). Every store is opened by
an entry of `STORES` (name -> opener); the peers (other libraries' stores) register theirs in `peers.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from agents import SQLiteSession
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.stores.course_session import CourseSession


class TurnStore(Protocol):
    """One conversation in one store. Items are `{"role", "content"}` dicts both ways."""

    async def get_items(self, limit: int | None = None) -> list[Any]: ...
    async def add_items(self, items: list[Any]) -> None: ...
    async def clear_session(self) -> None: ...


T = TypeVar("T")
StoreFactory = Callable[[str], TurnStore]
Close = Callable[[], Awaitable[None]]
# (url, shared engine, pool size) -> (session_id -> store, cleanup), or None where the store does not apply.
Opener = Callable[[str, AsyncEngine, int], Awaitable[tuple[StoreFactory, Close] | None]]


async def _nothing() -> None:
    pass


class Floor:
    """The reference: the least a durable turn needs, on bare driver connections (no SQLAlchemy, no reset, no
    ping), opened when needed and handed out last-in-first-out (the warmest connection, whose statements asyncpg
    has already prepared).

    The write depends on the read (through the model), and a durable write needs its commit, which can travel
    with it: so a turn is **2 round trips** at best. PostgreSQL: one prepared `SELECT`, and one statement that
    upserts the session row and inserts the items (a single statement commits on its own). MySQL/MariaDB: a
    `SELECT` in autocommit mode, and `START TRANSACTION; upsert; INSERT; COMMIT` sent as one request. SQLite: one
    read, and a `BEGIN IMMEDIATE` ... `COMMIT` write on one connection (a file, not a server: no round trips).
    """

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()
        self.pool_size = pool_size
        self.idle: asyncio.LifoQueue[Any] = asyncio.LifoQueue()
        self.connections: list[Any] = []
        self.opening = 0

    async def start(self) -> None:
        pass  # connections open on first use

    async def acquire(self) -> Any:
        size = 1 if self.backend == "sqlite" else self.pool_size
        if self.idle.empty() and self.opening < size:
            self.opening += 1
            try:
                return await self._open()
            except BaseException:
                self.opening -= 1
                raise
        return await self.idle.get()

    async def _open(self) -> Any:
        u = self.url
        if self.backend == "postgresql":
            import asyncpg

            connection = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                               password=u.password, database=u.database)
        elif self.backend in ("mysql", "mariadb"):
            import aiomysql

            connection = await aiomysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                                                password=u.password or "", db=u.database, autocommit=True,
                                                charset="utf8mb4")
        else:
            import aiosqlite

            connection = await aiosqlite.connect(u.database or ":memory:", isolation_level=None)
            await connection.execute("PRAGMA busy_timeout = 5000")
        self.connections.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self.connections:
            if self.backend in ("mysql", "mariadb"):
                connection.close()
            else:
                await connection.close()

    def session(self, session_id: str) -> TurnStore:
        return _FloorSession(self, session_id)


class _FloorSession:
    def __init__(self, floor: Floor, session_id: str) -> None:
        self.floor, self.session_id = floor, session_id

    async def _call(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        connection = await self.floor.acquire()
        try:
            return await operation(connection)
        finally:
            self.floor.idle.put_nowait(connection)

    async def get_items(self, limit: int | None = None) -> list[Any]:
        backend, sid = self.floor.backend, self.session_id
        order = "created_at, id" if limit is None else f"created_at DESC, id DESC LIMIT {int(limit)}"
        sql = f"SELECT message_data FROM agent_messages WHERE session_id = {{}} ORDER BY {order}"

        async def read(connection: Any) -> list[Any]:
            if backend == "postgresql":
                return list(await connection.fetch(sql.format("$1"), sid))
            if backend in ("mysql", "mariadb"):
                async with connection.cursor() as cursor:
                    await cursor.execute(sql.format("%s"), (sid,))
                    return list(await cursor.fetchall())
            return list(await connection.execute_fetchall(sql.format("?"), (sid,)))

        rows = await self._call(read)
        items = [json.loads(row[0]) for row in rows]
        return items if limit is None else items[::-1]

    async def add_items(self, items: list[Any]) -> None:
        backend, sid = self.floor.backend, self.session_id
        data = [json.dumps(item, separators=(",", ":")) for item in items]

        async def write(connection: Any) -> None:
            if backend == "postgresql":
                await connection.execute(
                    "WITH s AS (INSERT INTO agent_sessions (session_id) VALUES ($1) ON CONFLICT (session_id) "
                    "DO UPDATE SET updated_at = CURRENT_TIMESTAMP RETURNING session_id) "
                    "INSERT INTO agent_messages (session_id, message_data) SELECT s.session_id, t.data "
                    "FROM s, unnest($2::text[]) WITH ORDINALITY AS t(data, n) ORDER BY t.n", sid, data)
            elif backend in ("mysql", "mariadb"):
                values = ", ".join(["(%s, %s)"] * len(data))
                async with connection.cursor() as cursor:
                    await cursor.execute(
                        "START TRANSACTION; INSERT INTO agent_sessions (session_id) VALUES (%s) ON DUPLICATE KEY "
                        "UPDATE updated_at = CURRENT_TIMESTAMP; "
                        f"INSERT INTO agent_messages (session_id, message_data) VALUES {values}; COMMIT",
                        (sid, *(p for item in data for p in (sid, item))))
                    while await cursor.nextset():
                        pass
            else:
                await connection.execute("BEGIN IMMEDIATE")
                await connection.execute("INSERT INTO agent_sessions (session_id) VALUES (?) ON CONFLICT "
                                         "(session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP", (sid,))
                await connection.executemany("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
                                             [(sid, item) for item in data])
                await connection.execute("COMMIT")

        await self._call(write)

    async def clear_session(self) -> None:
        backend, sid = self.floor.backend, self.session_id

        async def clear(connection: Any) -> None:
            if backend == "postgresql":
                await connection.execute("DELETE FROM agent_sessions WHERE session_id = $1", sid)  # cascades
            elif backend in ("mysql", "mariadb"):
                async with connection.cursor() as cursor:
                    await cursor.execute("DELETE FROM agent_messages WHERE session_id = %s; "
                                         "DELETE FROM agent_sessions WHERE session_id = %s", (sid, sid))
                    while await cursor.nextset():
                        pass
            else:
                await connection.execute("DELETE FROM agent_messages WHERE session_id = ?", (sid,))
                await connection.execute("DELETE FROM agent_sessions WHERE session_id = ?", (sid,))

        await self._call(clear)


async def _sdk_sqlalchemy(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    return (lambda sid: SQLAlchemySession(sid, engine=engine)), _nothing


async def _course_session(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    return (lambda sid: CourseSession(sid, engine=engine)), _nothing


async def _floor(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    floor = Floor(url, pool_size)
    await floor.start()
    return floor.session, floor.close


async def _sdk_sqlite(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close] | None:
    if engine.dialect.name != "sqlite":
        return None
    database = make_url(url).database
    path = f"{database}-sdk_sqlite.db" if database and database != ":memory:" else ":memory:"
    return (lambda sid: SQLiteSession(sid, path)), _nothing  # its own file: its own tables


# The course's stores and the references (`floor`: the least a turn needs). A store added here joins every run
# (peers.PEERS: with --peers).
STORES: dict[str, Opener] = {
    "sdk_sqlalchemy": _sdk_sqlalchemy,
    "course_session": _course_session,
    "floor": _floor,
    "sdk_sqlite": _sdk_sqlite,
}
# The stores whose rows are the SDK's tables (the benchmark writes their histories the same way for all three).
SDK_TABLE_STORES = ("sdk_sqlalchemy", "course_session", "floor")
