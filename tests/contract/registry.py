"""The session stores the contract suite (``tests/contract/test_session_behaviour.py``) holds to the SDK's contract.

A store joins every contract case, on every backend it names, by adding ONE ``Store`` entry to ``STORES``.
The SDK's own class (``sdk_sqlalchemy``) is the control: a case that fails for the control is either our
misreading of the contract or a documented SDK bug (strict xfail in the suite).

The interface, for a new entry::

    Store(
        name="my_store",                        # the test id; unique
        backends=("postgres", "mysql"),         # names the ``database_url`` fixture in tests/conftest.py
                                                # resolves to an emptied test database (sqlite, postgres, mysql
                                                # today; add e.g. "redis" there, in tests/support/backends.py)
        connect=my_connect,                     # url -> async context manager yielding the backend HANDLE:
                                                # whatever the store needs (an AsyncEngine with the tables made,
                                                # a redis client, ...); it is closed/disposed on exit. Return
                                                # an ``Opened`` (tests/support/opened.py), not an @asynccontextmanager:
                                                # Runner.run_sync closes suspended async generators
        session=my_session,                     # (handle, session_id, session_settings) -> a Session; settings
                                                # is None, a SessionSettings or a dict, passed through as given
        write_raw=my_write_raw,                 # async (handle, session_id, text) -> None: append ONE stored
                                                # item whose stored form is exactly *text* (e.g. not JSON), as
                                                # the newest item, the way another tool would corrupt a row
        compaction_snapshot=False,              # True if the store implements the SDK's atomic suffix
                                                # replacement (``_get_compaction_snapshot``, as SQLAlchemySession)
    )

Every case gets a fresh, empty database (``database_url``), calls ``connect`` once and makes as many sessions
on the one handle as it needs (separate objects with one session id behave like separate requests). Cases
use only the ``Session`` protocol (``get_items``, ``add_items``, ``pop_item``, ``clear_session``,
``session_settings``), ``write_raw``, and, where declared, ``_get_compaction_snapshot``. A wrapper store (a
summarizing session over an SQL store, say) builds its ``connect`` / ``write_raw`` from the wrapped entry's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from agents.extensions.memory import SQLAlchemySession
from agents.memory import Session, SessionSettings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import OfflineModel, create_engine, create_session_tables, sdk_store_pool
from session_management.stores.course_session import CourseSession
from session_management.stores.summarizing_session import ModelSummarizer, SummarizingSession
from tests.support import redis_stores as r
from tests.support.opened import Opened

Settings = SessionSettings | dict[str, Any] | None
SQL_BACKENDS = ("sqlite", "postgres", "mysql")


@dataclass(frozen=True)
class Store:
    name: str
    backends: tuple[str, ...]
    connect: Callable[[str], AbstractAsyncContextManager[Any]]
    session: Callable[[Any, str, Settings], Session]
    write_raw: Callable[[Any, str, str], Awaitable[None]]
    compaction_snapshot: bool = False


# -- SQL stores: the handle is an AsyncEngine on the SDK's tables ----------------------------------------------
def sql_engine(url: str, **engine_kwargs: Any) -> Opened[AsyncEngine]:
    async def open_engine() -> AsyncEngine:
        engine = create_engine(url, **engine_kwargs)
        try:
            await create_session_tables(engine)
        except BaseException:
            await engine.dispose()
            raise
        return engine

    return Opened(open_engine, AsyncEngine.dispose)


def sdk_sql_engine(url: str) -> Opened[AsyncEngine]:
    """The engine lesson 02 tells a reader to give the SDK's store (``sdk_store_pool``): on SQLite, ONE pooled
    connection. With more, its add_items (read, then write, in one transaction) and its per-connection
    ``PRAGMA journal_mode = WAL`` fail at once with "database is locked" while another connection writes: the suite
    saw it now and then in the concurrency cases (an SDK trait, documented in lesson 02; not the contract's subject).
    The lock a cancelled SDK write can leave behind is another matter: see read_after_cancel in the contract suite."""
    return sql_engine(url, **sdk_store_pool(url))


async def sql_write_raw(engine: AsyncEngine, session_id: str, stored: str) -> None:
    """One row in SQLAlchemySession's tables, as a migration or another tool might leave it."""
    async with engine.begin() as connection:
        exists = await connection.scalar(
            text("SELECT 1 FROM agent_sessions WHERE session_id = :sid"), {"sid": session_id}
        )
        if not exists:
            await connection.execute(text("INSERT INTO agent_sessions (session_id) VALUES (:sid)"),
                                     {"sid": session_id})
        await connection.execute(
            text("INSERT INTO agent_messages (session_id, message_data) VALUES (:sid, :data)"),
            {"sid": session_id, "data": stored},
        )


def sdk_sqlalchemy(engine: AsyncEngine, session_id: str, settings: Settings) -> Session:
    return SQLAlchemySession(session_id, engine=engine, create_tables=False, session_settings=settings)


def course_session(engine: AsyncEngine, session_id: str, settings: Settings) -> Session:
    return CourseSession(session_id, engine=engine, session_settings=settings)


def summarizing_sqlalchemy(engine: AsyncEngine, session_id: str,
                           settings: SessionSettings | dict[str, Any] | None) -> Session:
    store = SQLAlchemySession(session_id, engine=engine, create_tables=False, session_settings=settings)
    return SummarizingSession(store, max_items=1_000_000, summarizer=ModelSummarizer(OfflineModel()))


STORES: dict[str, Store] = {
    store.name: store
    for store in (
        Store("sdk_sqlalchemy", SQL_BACKENDS, sdk_sql_engine, sdk_sqlalchemy, sql_write_raw, compaction_snapshot=True),
        Store("course_session", SQL_BACKENDS, sql_engine, course_session, sql_write_raw, compaction_snapshot=True),
        # Lesson 11's wrapper over the SDK's store, with a budget the cases never reach: indistinguishable from it.
        Store("summarizing_sqlalchemy", SQL_BACKENDS, sdk_sql_engine, summarizing_sqlalchemy, sql_write_raw),
        # Lesson 10: the SDK's RedisSession is the control for the course's store on one server and on a cluster.
        Store("sdk_redis", ("redis",), r.connect_standalone, r.sdk_redis, r.write_raw_sdk),
        Store("course_redis", ("redis",), r.connect_standalone, r.course_redis, r.write_raw_course),
        Store("course_redis_cluster", ("redis-cluster",), r.connect_cluster, r.course_redis, r.write_raw_course),
    )
}

# The entries that write through the SDK's SQLAlchemySession, and so share its known bugs (the contract suite's
# MySQL deadlock on racing first writes, the SQLite lock after a cancelled write).
SDK_SQL_STORES = frozenset(name for name, store in STORES.items() if store.connect is sdk_sql_engine)
