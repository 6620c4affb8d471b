"""CourseSession's own promises beyond the Session contract (that is tests/contract/test_session_behaviour.py):
the class per database, the SDK-shaped constructor, and the SQLAlchemy internals it relies on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agents.memory import SessionSettings
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only, greenlet_spawn

from session_management.common import create_engine, create_session_tables
from session_management.common.liveness import known_closed
from session_management.stores.course_session import (
    CourseSession,
    MySQLCourseSession,
    PostgresCourseSession,
    SQLiteCourseSession,
)
from session_management.stores.course_session._pool import KEEP_SECONDS, borrow, kept, pool_capacity
from session_management.stores.course_session.sqlite import _busy_timeout

CLASSES = {"sqlite": SQLiteCourseSession, "postgres": PostgresCourseSession, "mysql": MySQLCourseSession}


async def test_one_class_per_database(engine: AsyncEngine, backend: str) -> None:
    session = CourseSession("who", engine=engine)
    assert type(session) is CLASSES[backend]
    assert isinstance(session, CourseSession)


def test_an_unsupported_database_is_named() -> None:
    oracle = type("Engine", (), {"dialect": type("Dialect", (), {"name": "oracle"})()})()
    with pytest.raises(ValueError, match="not 'oracle'; use SQLAlchemySession"):
        CourseSession("x", engine=oracle)


def test_engine_is_read_only(tmp_path: Path) -> None:
    session = CourseSession("x", engine=create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"))
    with pytest.raises(AttributeError):
        session.engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")  # type: ignore[misc]


def test_table_names_are_checked_before_they_reach_sql(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ValueError, match="table name"):
        CourseSession("x", engine=engine, messages_table="m; DROP TABLE agent_sessions")


async def test_from_url_like_the_sdk(database_url: str) -> None:
    session = CourseSession.from_url("from-url", url=database_url, session_settings={"limit": 1})
    try:
        await create_session_tables(session.engine)
        assert session.session_settings == SessionSettings(limit=1)
        await session.add_items([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        assert await session.get_items() == [{"role": "user", "content": "b"}]
    finally:
        await session.engine.dispose()


async def test_sqlite_engine_configured_once_by_its_own_event_registry(tmp_path: Path) -> None:
    first = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    second = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    try:
        CourseSession("x", engine=first)
        CourseSession("y", engine=first)
        assert event.contains(first.sync_engine, "connect", _busy_timeout)
        assert not event.contains(second.sync_engine, "connect", _busy_timeout)  # no shared registry to confuse
        async with first.connect() as connection:
            assert await connection.scalar(text("PRAGMA busy_timeout")) == 5000
    finally:
        await first.dispose()
        await second.dispose()


async def test_sqlite_writers_of_one_process_queue_in_turn(tmp_path: Path) -> None:
    """Twenty concurrent writers on one engine: each write transaction runs from BEGIN IMMEDIATE to COMMIT before
    the next begins, queued in the process instead of contending for the file in SQLite's busy handler (which
    sleeps in steps of up to 100 ms). Nothing lost either."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    statements: list[str] = []

    def record(statement: str) -> None:  # SQLite's own trace: what reaches the database, by any route
        if statement in ("BEGIN IMMEDIATE", "COMMIT"):
            statements.append(statement)

    @event.listens_for(engine.sync_engine, "connect")
    def trace(dbapi_connection: Any, _: Any) -> None:
        await_only(dbapi_connection.driver_connection.set_trace_callback(record))

    try:
        await create_session_tables(engine)
        sessions = [CourseSession(f"writer-{n}", engine=engine) for n in range(20)]
        await asyncio.gather(*(s.add_items([{"role": "user", "content": f"{n}"}]) for n, s in enumerate(sessions)))
        assert statements == ["BEGIN IMMEDIATE", "COMMIT"] * 20  # never two write transactions open at once
        assert [await s.get_items() for s in sessions] == [[{"role": "user", "content": f"{n}"}] for n in range(20)]
    finally:
        await engine.dispose()


# -- the SQLAlchemy internals course_session/_pool.py relies on: these fail when an upgrade changes them --------
def test_pool_capacity_reads_pool_size_plus_max_overflow() -> None:
    url = "postgresql+asyncpg://u:p@127.0.0.1:1/db"  # never connects
    assert pool_capacity(create_async_engine(url, pool_size=3, max_overflow=4)) == 7
    assert pool_capacity(create_async_engine(url, pool_size=3, max_overflow=0)) == 3
    assert pool_capacity(create_async_engine(url, pool_size=3, max_overflow=-1)) is None  # unlimited


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_connection_whose_transaction_we_ended_goes_back_without_a_reset(engine: AsyncEngine) -> None:
    """Kept, then given back by the sweeper without the pool's ROLLBACK (PRIVATE ``_close_special``); a connection
    left inside a transaction is not kept, and the pool rolls it back."""
    resets: list[bool] = []

    def on_reset(_dbapi: Any, _record: Any, state: Any) -> None:
        resets.append(state.transaction_was_reset)

    event.listen(engine.sync_engine.pool, "reset", on_reset)
    async with borrow(engine) as connection:
        connection.transaction_ended = True
    await given_back(engine)
    async with borrow(engine) as connection:
        begin = "BEGIN" if engine.dialect.name == "postgresql" else "START TRANSACTION"
        await (connection.driver.execute(begin) if engine.dialect.name == "postgresql"
               else connection.driver.query(begin))
    assert resets == [True, False]  # True: the pool skipped its ROLLBACK; False: it sent one
    assert engine.sync_engine.pool.checkedout() == 0


async def given_back(engine: AsyncEngine) -> None:
    """Wait until every kept connection is back in the pool (within two KEEP_SECONDS); fail after three."""
    for _ in range(150):
        if engine.sync_engine.pool.checkedout() == 0:
            return
        await asyncio.sleep(KEEP_SECONDS / 50)
    raise AssertionError(f"still checked out after {3 * KEEP_SECONDS} s: {engine.sync_engine.pool.status()}")


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_kept_connection_is_reused_without_the_pool_then_given_back(engine: AsyncEngine) -> None:
    """Turns in quick succession check one connection out of the pool once; idle, it goes back within
    KEEP_SECONDS (the pool's checkin event fires once)."""
    await create_session_tables(engine)
    await given_back(engine)
    checkouts: list[int] = []
    checkins: list[int] = []
    event.listen(engine.sync_engine.pool, "checkout", lambda *_: checkouts.append(1))
    event.listen(engine.sync_engine.pool, "checkin", lambda *_: checkins.append(1))
    session = CourseSession("kept", engine=engine)
    for number in range(5):
        await session.add_items([{"role": "user", "content": f"turn {number}"}])
        assert len(await session.get_items(limit=2)) == min(2, number + 1)
    assert len(checkouts) == 1  # ten borrows, one pool checkout
    assert engine.sync_engine.pool.checkedout() == 1  # kept, not lost
    await given_back(engine)
    assert len(checkins) == 1


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_connection_is_not_kept_from_someone_waiting_on_the_pool(engine: AsyncEngine) -> None:
    """Another user of the engine (here: a plain checkout) waits on an exhausted pool: the connection goes back at
    once, and that user gets it: a connection is kept only while the pool could lend another."""
    small = create_engine(str(engine.url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
    try:
        async with borrow(small) as connection:
            connection.transaction_ended = True
            other = asyncio.ensure_future(small.raw_connection())  # waits: the only connection is ours
            await asyncio.sleep(0.05)
            driver = connection.driver
        assert kept(small) == 0  # given back on leaving the block, not kept for KEEP_SECONDS
        raw = await asyncio.wait_for(other, 5)
        assert raw.driver_connection is driver
        await greenlet_spawn(raw.close)
    finally:
        await small.dispose()


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_a_kept_connection_the_server_closed_is_replaced(engine: AsyncEngine) -> None:
    """The server ends a kept connection (a restart, an idle timeout): the next borrow sees it closed, without a
    round trip, discards it and takes a new one, with no error."""
    killer = create_engine(str(engine.url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
    try:
        postgres = engine.dialect.name == "postgresql"
        async with borrow(engine) as connection:
            if postgres:
                backend = await connection.driver.fetchval("SELECT pg_backend_pid()")
            else:
                async with connection.driver.cursor() as cursor:
                    await cursor.execute("SELECT CONNECTION_ID(); COMMIT")
                    backend = (await cursor.fetchone())[0]
                    while await cursor.nextset():
                        pass
            connection.transaction_ended = True
            driver = connection.driver
        assert kept(engine) == 1
        async with killer.connect() as other:
            await other.execute(text(f"SELECT pg_terminate_backend({backend})" if postgres else f"KILL {backend}"))
        for _ in range(50):  # the server's goodbye reaches the client's event loop
            if known_closed(driver):
                break
            await asyncio.sleep(0.02)
        assert known_closed(driver)
        async with borrow(engine) as connection:
            assert connection.driver is not driver
            connection.transaction_ended = True
        assert kept(engine) == 1  # the new one; the dead one is gone
    finally:
        await killer.dispose()


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_dispose_closes_the_kept_connections(engine: AsyncEngine) -> None:
    async with borrow(engine) as connection:
        connection.transaction_ended = True
        driver = connection.driver
    assert not known_closed(driver) and engine.sync_engine.pool.checkedout() == 1  # kept
    await engine.dispose()
    assert known_closed(driver)  # closed with the pool, not left open until garbage collection
    async with borrow(engine) as connection:  # the engine still works, on a new connection
        assert connection.driver is not driver
        connection.transaction_ended = True
