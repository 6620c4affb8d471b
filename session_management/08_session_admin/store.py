"""The SDK's tables as SQLAlchemy Core objects, and the few queries whose SQL differs per database.

Times are the database's own clock: the SDK stores ``CURRENT_TIMESTAMP`` (the server's clock, no time zone),
so cut-offs are computed from the server's "now" too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, MetaData, Select, cast, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from session_management.common import CourseError, open_database, redact
from session_management.common.schema import session_tables

BATCH = 500  # rows per round trip when streaming an export, sessions per transaction when purging

# The SDK's tables as Core objects. Queries need only names and types; the schema helper has both.
sessions, messages = session_tables(MetaData())


@asynccontextmanager
async def connect(database: str | None) -> AsyncIterator[AsyncConnection]:
    """A connection to *database* whose SDK tables exist (a one-line error if not)."""
    async with open_database(database, create_tables=False) as engine, engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        if not {sessions.name, messages.name} <= names:
            raise CourseError(
                f"{redact(str(engine.url.render_as_string(hide_password=False)))} has no SDK session tables "
                f"({sessions.name}, {messages.name})",
                "point --database at the database your agents use, or create them (lesson 06: alembic upgrade head)",
            )
        yield connection


async def database_now(connection: AsyncConnection) -> datetime:
    """The server's current time as the SDK's columns store it: naive, in the server's (session) time zone."""
    if connection.dialect.name == "postgresql":
        # CURRENT_TIMESTAMP is timestamptz there; a timestamp column stores it as LOCALTIMESTAMP.
        return await connection.scalar(select(func.localtimestamp()))  # type: ignore[no-any-return]
    value = await connection.scalar(select(func.current_timestamp()))
    if isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None)  # type: ignore[no-any-return]


def before(connection: AsyncConnection, column: Any, moment: datetime) -> ColumnElement[bool]:
    """``column < moment``, to the second and correct on SQLite, whose timestamps are text."""
    if connection.dialect.name == "sqlite":
        # CURRENT_TIMESTAMP writes '2026-01-02 03:04:05'; a bound datetime would be '...05.000000', and text
        # comparison would put equal times in the wrong order. datetime() normalises both sides.
        return func.datetime(column) < func.datetime(moment.strftime("%Y-%m-%d %H:%M:%S"))
    return column < moment  # type: ignore[no-any-return]


def byte_length(connection: AsyncConnection, column: Any) -> ColumnElement[int]:
    """Bytes, not characters: what the item costs on disk and on the wire."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return func.length(cast(column, LargeBinary))
    if dialect == "postgresql":
        return func.octet_length(column)
    return func.length(column)  # MySQL's LENGTH counts bytes


def with_prefix(query: Select[Any], prefix: str | None) -> Select[Any]:
    # substr instead of LIKE: no wildcard escaping, and case-sensitive on SQLite too (its LIKE is not).
    if prefix:
        query = query.where(func.substr(sessions.c.session_id, 1, len(prefix)) == prefix)
    return query


async def require_session(connection: AsyncConnection, session_id: str) -> Any:
    row = (await connection.execute(select(sessions).where(sessions.c.session_id == session_id))).first()
    if row is None:
        raise CourseError(f"no session {session_id!r} in this database (try the list command)")
    return row


def stamp(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")

