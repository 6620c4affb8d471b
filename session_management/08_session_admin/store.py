"""The SDK's tables as SQLAlchemy Core objects, and the few queries whose SQL differs per database.

Times are the database's own clock, in UTC: the SDK stores ``CURRENT_TIMESTAMP`` (the server's clock, no time
zone), so cut-offs are computed from the server's "now" too. The tool's connection is set to UTC on every
database, so a role or server configured for another time zone cannot move the cut-off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, MetaData, Select, Table, cast, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from session_management.common import CourseError, open_database, redact
from session_management.common.conversations import conversations_table
from session_management.common.schema import session_tables

BATCH = 500  # rows per round trip when streaming an export, sessions per transaction when purging

# The SDK's tables as Core objects. Queries need only names and types; the schema helper has both.
sessions, messages = session_tables(MetaData())
# Lesson 06's table, where it exists: one row per conversation (its id is the session id), with the owner and
# a title made of the first words of the user's first message. It is derived from the session: purge deletes it.
conversations = conversations_table(MetaData())


@asynccontextmanager
async def connect(database: str | None) -> AsyncIterator[AsyncConnection]:
    """A connection to *database* whose SDK tables exist (a one-line error if not)."""
    async with open_database(database, create_tables=False) as engine, engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        if not {sessions.name, messages.name} <= names:
            raise CourseError(
                f"{redact(str(engine.url.render_as_string(hide_password=False)))} has no SDK session tables "
                f"({sessions.name}, {messages.name})",
                "point --database at the database your agents use, or create them (lesson 07: alembic upgrade head)",
            )
        connection.info["conversations"] = conversations.name in names
        await use_utc(connection)
        yield connection


def derived_tables(connection: AsyncConnection) -> list[Table]:
    """Tables whose rows are derived from a session and keyed by its id: lesson 06's, where it exists."""
    return [conversations] if connection.info.get("conversations") else []


async def use_utc(connection: AsyncConnection) -> None:
    """This connection's clock and TIMESTAMP conversions in UTC, whatever the role's or server's time zone."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        await connection.execute(text("SET TIME ZONE 'UTC'"))
    elif dialect in ("mysql", "mariadb"):
        await connection.execute(text("SET time_zone = '+00:00'"))
    await connection.commit()  # PostgreSQL undoes a SET made in a transaction that is rolled back


async def database_now(connection: AsyncConnection) -> datetime:
    """The server's current time as the SDK's columns store it: naive, UTC (see :func:`use_utc`)."""
    if connection.dialect.name == "postgresql":
        # CURRENT_TIMESTAMP is timestamptz there; a timestamp column stores it as LOCALTIMESTAMP.
        return (await connection.execute(select(func.localtimestamp()))).scalar_one()
    value = (await connection.execute(select(func.current_timestamp()))).scalar_one()
    if isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None)


def before(connection: AsyncConnection, column: Any, moment: datetime) -> ColumnElement[bool]:
    """``column < moment``, to the second and correct on SQLite, whose timestamps are text."""
    if connection.dialect.name == "sqlite":
        # CURRENT_TIMESTAMP writes '2026-01-02 03:04:05'; a bound datetime would be '...05.000000', and text
        # comparison would put equal times in the wrong order. datetime() normalises both sides.
        return func.datetime(column) < func.datetime(moment.strftime("%Y-%m-%d %H:%M:%S"))
    return column < moment


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

