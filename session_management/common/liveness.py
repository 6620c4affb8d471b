"""Test a pooled connection before use only when it may have gone stale: pre-ping's safety, not its cost.

SQLAlchemy's ``pool_pre_ping=True`` pings on *every* checkout: one round trip on MySQL, three on asyncpg (it
pings inside a transaction of its own). Under load a connection goes back to the pool and out again within
milliseconds, so most of those pings ask a question whose answer is already known; for the course's store they
are half of a turn's round trips on MySQL and three quarters on PostgreSQL. Pools outside SQLAlchemy (HikariCP's
``aliveBypassWindowMs``, asyncpg's and aiomysql's own pools) skip the check for a connection used a moment ago.
This does the same with SQLAlchemy's public pool events:

* a connection the driver already knows is closed (the server ended it and the event loop saw it) is replaced
  at once, without a round trip;
* a connection idle in the pool for longer than *idle_seconds* is pinged first, as ``pool_pre_ping`` would
  (a restart, MySQL's ``wait_timeout`` and idle-dropping firewalls all need idle time to bite); a failed ping
  replaces every connection older than now, as ``pool_pre_ping`` does;
* a new connection and one returned less than *idle_seconds* ago are used as they are.

What it gives up: a connection that the server dropped in the last *idle_seconds*, silently (without the
driver noticing), fails the one request that uses it next, with a connection error; the driver then knows
it is closed and the next checkout replaces it. ``pool_pre_ping`` has the same race, over a shorter window.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine

IDLE_SECONDS = 1.0

_RETURNED_AT = "session_management.returned_at"


def _known_closed(driver: Any) -> bool:
    """What the driver object already knows, without asking the server."""
    is_closed = getattr(driver, "is_closed", None)  # asyncpg.Connection
    if callable(is_closed):
        return bool(is_closed())
    return bool(getattr(driver, "closed", False))  # aiomysql.Connection: set once a read or write failed


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = IDLE_SECONDS) -> None:
    """Install the check on *engine*'s pool (create the engine with ``pool_pre_ping=False``)."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine.pool, "checkin")
    def returned(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: the connection was invalidated and is gone
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine.pool, "checkout")
    def check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if _known_closed(dbapi_connection.driver_connection):
            raise exc.DisconnectionError("the driver reports the connection closed")  # the pool replaces it
        returned_at = record.info.get(_RETURNED_AT)  # .info is emptied when the connection is replaced
        if returned_at is None or time.monotonic() - returned_at < idle_seconds:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            raise exc.InvalidatePoolError("ping failed after an idle spell")  # all older connections too
