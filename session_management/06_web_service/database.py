"""The service's database: one engine per process, and a time limit on everything that touches it.

A database that stops answering (a network partition, a frozen VM, a server stopped with SIGSTOP) does not
refuse connections: it accepts them and never replies. Without limits a request then waits on the driver's
defaults (asyncpg: 60 s to connect, no limit on a query; aiomysql: no limit on a read) and the service hangs.
So every database step here has a deadline, and the driver and pool get matching limits of their own:

* ``CHAT_DB_TIMEOUT`` (seconds, default 5): each database step of a request (a lookup, loading the history,
  saving a turn) must finish within it, else the request answers 503. The same value bounds connecting
  (asyncpg ``timeout``, aiomysql ``connect_timeout``), a PostgreSQL command (asyncpg ``command_timeout`` and the
  server's ``statement_timeout``) and waiting for a pooled connection (``pool_timeout``).
* ``CHAT_HEALTH_TIMEOUT`` (seconds, default 2): ``GET /api/health`` answers within it, 200 or 503.

The model's own time is not bounded here: a real model may take many seconds to answer, and no connection is
held while it thinks. Nor is SQLite's: a file has no network to fail, and its writers queue on the file's
lock (the SDK retries while it is locked), so under a burst a deadline would turn waiting into errors.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError, create_engine
from session_management.common.databases import sdk_store_pool


def seconds_setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise CourseError(f"{name}={raw!r} is not a number of seconds between 0 and 600.",
                          f"set {name} to e.g. {default:g}, or unset it")
    return value


@dataclass(frozen=True)
class Timeouts:
    database: float = 5.0
    health: float = 2.0

    @classmethod
    def from_env(cls) -> Timeouts:
        return cls(database=seconds_setting("CHAT_DB_TIMEOUT", cls.database),
                   health=seconds_setting("CHAT_HEALTH_TIMEOUT", cls.health))


def engine_options(url: str, timeouts: Timeouts) -> dict[str, Any]:
    """Engine keyword arguments that bound every wait, per driver."""
    seconds = timeouts.database
    # hide_parameters: SQLAlchemy's error messages include the statement's parameters, which here are users'
    # messages; with this they say "[SQL parameters hidden]" instead, so logs never hold users' text.
    options: dict[str, Any] = {"hide_parameters": True}
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        options["connect_args"] = {
            "timeout": seconds,  # connecting
            "command_timeout": seconds,  # each query, on the client
            "server_settings": {"statement_timeout": str(int(seconds * 1000))},  # each query, on the server
        }
    elif backend in ("mysql", "mariadb"):
        options["connect_args"] = {"connect_timeout": max(1, round(seconds))}  # aiomysql has no read timeout
    else:
        options["connect_args"] = {"timeout": 30}  # SQLite: how long a writer waits for the file's lock
        # One pooled connection (lesson 02): a transaction that reads before it writes fails at once ("database
        # is locked") while another connection of the process writes; with one connection, requests queue.
        options.update(sdk_store_pool(url))
    if backend != "sqlite":
        options["pool_timeout"] = seconds  # waiting for a free connection in the pool
    return options


class Database:
    """The engine and the deadline every database step runs under."""

    def __init__(self, url: str, timeouts: Timeouts) -> None:
        self.engine: AsyncEngine = create_engine(url, **engine_options(url, timeouts))
        # The SDK's SQLAlchemySession registers its SQLite connection hook (busy timeout, WAL) on the engine the
        # first time a session is built on it. Built per request, that first time would race the first burst's
        # connections ("deque mutated during iteration"); built here, before any connection, it cannot.
        SQLAlchemySession("-", engine=self.engine)
        self.timeouts = timeouts
        self._bounded = self.engine.dialect.name != "sqlite"

    def deadline(self) -> asyncio.Timeout:
        """``async with db.deadline():`` - a TimeoutError (503) if the block takes longer than CHAT_DB_TIMEOUT."""
        return asyncio.timeout(self.timeouts.database if self._bounded else None)
