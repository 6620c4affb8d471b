"""The course engine's liveness check (`common/liveness.py`) on real servers whose connections we kill.

A connection the server dropped while it sat idle must be replaced without failing anyone; one used a moment
ago is not pinged (that is the point: the benchmark's throughput); one dropped within that moment fails at
most the one request that meets it, and the next request gets a new connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from session_management.common import create_engine, create_session_tables
from session_management.common.course_session import CourseSession
from session_management.common.liveness import IDLE_SECONDS
from tests.backends import SERVER_BACKENDS, reset_database, server_url

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
    dialect = engine.sync_engine.dialect
    real = dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counting)
    return pings


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
