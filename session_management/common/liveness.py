"""Test a pooled connection before use only when it may have gone stale: pre-ping's safety, not its cost.

SQLAlchemy's ``pool_pre_ping=True`` pings on *every* checkout: one round trip on MySQL, three on asyncpg (it
pings inside a transaction of its own). Under load a connection goes back to the pool and out again within
milliseconds, so most of those pings ask a question whose answer is already known; for the course's store they
are half of a turn's round trips on MySQL and three quarters on PostgreSQL. Pools outside SQLAlchemy (HikariCP's
``aliveBypassWindowMs``, asyncpg's and aiomysql's own pools) skip the check for a connection used a moment ago.
This does the same with SQLAlchemy's public pool events:

* a connection the driver already knows is closed is replaced at once, without a round trip. A server that ends
  a connection (a restart, a kill, MySQL's ``wait_timeout``, PostgreSQL's ``idle_session_timeout``) says so: it
  closes the socket, and the event loop sees it (asyncpg marks the connection closed; for aiomysql the
  connection's stream has reached its end);
* a connection idle in the pool for longer than *idle_seconds* is pinged first, in one round trip (on
  PostgreSQL a simple-protocol `SELECT 1`, not SQLAlchemy's three), for what does not say so: idle-dropping
  firewalls and NAT gateways, a host that vanished. A failed ping replaces every connection older than now, as
  ``pool_pre_ping`` does;
* a new connection and one returned less than *idle_seconds* ago are used as they are.

A caller that recovers from a dead connection itself can ask for a longer idle threshold for its own checkouts
(`idle_threshold`): `CourseSession` does, and retries a read that meets a dead connection (see
``course_session/_pool.py``), so a chat's pauses between a read and a write cost no ping.

What it gives up: a connection that the server dropped in the last *idle_seconds*, silently (without the
driver noticing), fails the one request that uses it next, with a connection error; the driver then knows
it is closed and the next checkout replaces it. ``pool_pre_ping`` has the same race, over a shorter window.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

IDLE_SECONDS = 1.0

# The idle threshold of the checkouts made in this context, when a caller set one (`idle_threshold`).
_THRESHOLD: contextvars.ContextVar[float | None] = contextvars.ContextVar("idle_threshold", default=None)

RETURNED_AT = "session_management.returned_at"  # in a pooled connection's record_info: when it last came back


def known_closed(driver: Any) -> bool:
    """Whether the server has ended this connection, from what the client already knows: no round trip."""
    is_closed = getattr(driver, "is_closed", None)  # asyncpg.Connection: set when the server closed it
    if callable(is_closed):
        return bool(is_closed())
    if getattr(driver, "closed", False):  # aiomysql.Connection: set once a read or write failed
        return True
    # aiomysql reads nothing while idle, so a server that closed the socket (with or without a last error
    # packet first, as MySQL 8's wait_timeout sends) shows only as the end of the connection's stream.
    reader = getattr(driver, "_reader", None)  # PRIVATE to aiomysql; tests/stores/test_liveness.py covers it
    return reader is not None and bool(reader.at_eof() or getattr(reader, "_eof", False))


@contextmanager
def idle_threshold(seconds: float) -> Iterator[None]:
    """Checkouts made inside this block ping a connection only after *seconds* idle (the caller recovers from
    a dead connection that did not announce itself sooner). A context variable: other tasks are not affected."""
    token = _THRESHOLD.set(seconds)
    try:
        yield
    finally:
        _THRESHOLD.reset(token)


def _ping(dialect: Any, dbapi_connection: Any) -> bool:
    """One round trip. On asyncpg a simple query, `SELECT 1` (SQLAlchemy's own ping is BEGIN, a prepared empty
    statement and ROLLBACK: three; the simple query is one message, so PgBouncer's transaction mode is fine)."""
    driver = dbapi_connection.driver_connection
    if dialect.driver == "asyncpg":
        try:
            await_only(driver.execute("SELECT 1"))
        except Exception:
            if known_closed(driver):  # the connection died under the ping
                return False
            raise
        return True
    try:
        return bool(dialect.do_ping(dbapi_connection))
    except dialect.loaded_dbapi.Error as error:
        if not dialect.is_disconnect(error, dbapi_connection, None):
            raise
        return False


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = IDLE_SECONDS) -> None:
    """Install the check on *engine*'s pool (create the engine with ``pool_pre_ping=False``)."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine.pool, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: the connection was invalidated and is gone
            record.info[RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine.pool, "checkout")
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if known_closed(dbapi_connection.driver_connection):
            raise exc.DisconnectionError("the driver reports the connection closed")  # the pool replaces it
        returned_at = record.info.get(RETURNED_AT)  # .info is emptied when the connection is replaced
        threshold = _THRESHOLD.get()
        if returned_at is None or time.monotonic() - returned_at < (idle_seconds if threshold is None
                                                                    else threshold):
            return
        if not _ping(dialect, dbapi_connection):
            raise exc.InvalidatePoolError("ping failed after an idle spell")  # all older connections too
