"""The course engine's liveness check (`common/liveness.py`) on real servers whose connections we kill.

A connection the server dropped while it sat idle must be replaced without failing anyone; one used a moment
ago is not pinged (that is the point: the benchmark's throughput); one dropped within that moment fails at
most the one request that meets it, and the next request gets a new connection. `CourseSession` pings only
after a long idle and recovers by itself: a chat's turn stays at two round trips however long the model and the
user take (counted on the wire, through lesson 09's counting proxy), a connection the server closed is replaced
without a round trip, and a read that meets a connection dropped silently is run again; nothing is lost or
doubled.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from session_management.common import create_engine, create_session_tables, liveness
from session_management.common.liveness import IDLE_SECONDS, ping_when_idle
from session_management.stores.course_session import CourseSession
from tests.support.backends import SERVER_BACKENDS, reset_database, server_url

counting = importlib.import_module("session_management.09_scaling.counting")
SHORT_IDLE = 0.1  # the counted engines' idle threshold: the tests' pauses exceed it without waiting a second

pytestmark = pytest.mark.parametrize("backend", SERVER_BACKENDS)

ID_SQL = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
KILL_SQL = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}


@pytest.fixture
async def engine(backend: str) -> AsyncIterator[AsyncEngine]:
    url = server_url(backend)
    await reset_database(url)
    engine = create_engine(url, pool_size=1, max_overflow=0)  # one connection: every checkout is the same one
    await create_session_tables(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def backend_id(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(ID_SQL[engine.dialect.name])))


async def kill(engine: AsyncEngine, connection_id: int) -> None:
    """End *connection_id* from another connection, as a server restart or an idle timeout would."""
    killer = create_async_engine(engine.url, poolclass=NullPool)
    try:
        async with killer.connect() as connection:
            await connection.execute(text(KILL_SQL[engine.dialect.name].format(connection_id)))
        await asyncio.sleep(0.1)  # let the server finish closing it
    finally:
        await killer.dispose()


def count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    real = liveness._ping

    def counted(dialect: Any, dbapi_connection: Any) -> bool:
        pings.append(1)
        return real(dialect, dbapi_connection)

    monkeypatch.setattr(liveness, "_ping", counted)
    return pings


@pytest.fixture
def proxy(backend: str) -> Iterator[Any]:
    """Lesson 09's counting proxy in front of the emptied test database."""
    url = server_url(backend)
    asyncio.run(reset_database(url))
    proxy = counting.CountingProxy(url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
async def counted(proxy: Any) -> AsyncIterator[AsyncEngine]:
    """One pooled connection through the proxy, pinged after SHORT_IDLE seconds idle."""
    engine = create_engine(proxy.url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    ping_when_idle(engine, SHORT_IDLE)
    await create_session_tables(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def contents(items: list[Any]) -> list[str]:
    return [item["content"] for item in items]


async def test_a_chat_turn_is_two_round_trips_however_long_the_pauses(counted: AsyncEngine, proxy: Any) -> None:
    """Read, the model thinks, write, the user thinks: every pause is longer than the engine's idle threshold,
    and CourseSession still sends two requests per turn (the engine's ping would have made it 4 on MySQL and 8
    on PostgreSQL)."""
    session = CourseSession("paced", engine=counted)
    await session.add_items([{"role": "user", "content": "warm-up"}])  # connects and prepares the write
    await session.get_items()  # and the read
    before = proxy.snapshot()
    for turn in range(2):
        await asyncio.sleep(SHORT_IDLE * 2)  # the user
        await session.get_items()
        await asyncio.sleep(SHORT_IDLE * 2)  # the model
        await session.add_items([{"role": "user", "content": f"q{turn}"}, {"role": "assistant", "content": f"a{turn}"}])
    spent = proxy.snapshot() - before
    assert (spent.round_trips, spent.connections) == (2 * 2, 0)
    assert contents(await session.get_items()) == ["warm-up", "q0", "a0", "q1", "a1"]


async def test_the_idle_ping_is_one_round_trip(counted: AsyncEngine, proxy: Any) -> None:
    """SQLAlchemy's own checkouts still ping after the idle threshold: one round trip (SQLAlchemy's asyncpg ping
    is three), counted as the difference between an idle checkout and a busy one."""
    async def checkout_and_query() -> int:
        before = proxy.snapshot()
        async with counted.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return (proxy.snapshot() - before).round_trips

    await checkout_and_query()  # connects and prepares
    busy = await checkout_and_query()
    await asyncio.sleep(SHORT_IDLE * 2)
    assert await checkout_and_query() - busy == 1


async def test_a_connection_the_server_closed_is_replaced_without_a_ping(
    counted: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed connection is known closed when the server's goodbye has arrived (asyncpg marks it closed;
    aiomysql's stream is at its end): the pool replaces it with no ping and no failed request, reads and writes
    alike, however briefly it sat idle."""
    pings = count_pings(counted, monkeypatch)
    session = CourseSession("killed", engine=counted)
    await session.add_items([{"role": "user", "content": "kept"}])
    for turn in range(2):
        dropped = await backend_id(counted)
        await kill(counted, dropped)
        await session.add_items([{"role": "user", "content": f"after kill {turn}"}])
        assert await backend_id(counted) != dropped
    assert contents(await session.get_items()) == ["kept", "after kill 0", "after kill 1"]
    assert pings == []


async def test_a_read_that_meets_a_silently_dropped_connection_is_run_again(counted: AsyncEngine, proxy: Any) -> None:
    """The proxy drops the connection without telling the client (a firewall that forgot it): the read that
    meets it is run again on a new connection; a write that meets it fails, once, having stored nothing (it never
    reached the server), and the next write is stored once."""
    session = CourseSession("severed", engine=counted)
    await session.add_items([{"role": "user", "content": "kept"}])
    proxy.sever()
    assert contents(await session.get_items()) == ["kept"]
    assert contents(await session.get_items(limit=1)) == ["kept"]
    proxy.sever()
    with pytest.raises(Exception) as failed:  # noqa: PT011 - the driver's own connection error
        await session.add_items([{"role": "user", "content": "lost with its connection"}])
    assert not isinstance(failed.value, AssertionError)
    await session.add_items([{"role": "user", "content": "stored once"}])
    assert contents(await session.get_items()) == ["kept", "stored once"]


async def test_a_busy_connection_is_not_pinged_and_an_idle_one_is(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = count_pings(engine, monkeypatch)
    first = await backend_id(engine)
    for _ in range(20):
        assert await backend_id(engine) == first
    assert pings == []
    await asyncio.sleep(IDLE_SECONDS + 0.2)
    assert await backend_id(engine) == first
    assert pings == [1]


async def test_a_connection_dropped_while_idle_is_replaced_without_an_error(engine: AsyncEngine) -> None:
    session = CourseSession("idle", engine=engine)
    await session.add_items([{"role": "user", "content": "kept"}])
    dropped = await backend_id(engine)
    await kill(engine, dropped)
    await asyncio.sleep(IDLE_SECONDS + 0.2)
    assert [item["content"] for item in await session.get_items()] == ["kept"]  # the course store's path
    assert await backend_id(engine) != dropped  # and SQLAlchemy's


@pytest.mark.parametrize("path", ["course_session", "sqlalchemy"])
async def test_a_connection_dropped_a_moment_ago_fails_at_most_one_request(engine: AsyncEngine, path: str) -> None:
    session = CourseSession("moment", engine=engine)
    await session.add_items([{"role": "user", "content": "kept"}])
    dropped = await backend_id(engine)
    await kill(engine, dropped)

    async def use() -> None:
        if path == "course_session":
            assert [item["content"] for item in await session.get_items()] == ["kept"]
        else:
            assert await backend_id(engine) != dropped

    failures = 0
    for _ in range(3):
        try:
            await asyncio.wait_for(use(), timeout=10)
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - the one request that met the dead connection (driver-specific error)
            failures += 1
    assert failures <= 1
    assert await backend_id(engine) != dropped
