"""Alembic environment for the course: the connection or URL Alembic is given, else the course's settings.

Where the database comes from, first match wins:

1. ``config.attributes["connection"]``: a connection (or engine) the caller opened, the documented way to run
   migrations from a test or from an application's start-up. It is used as it is, never closed here.
2. ``-x database=sqlite|postgres|mysql|URL`` on the command line.
3. ``sqlalchemy.url``, set the standard way: in alembic.ini, or ``config.set_main_option("sqlalchemy.url", ...)``.
4. The course's ``DATABASE_URL`` (``.env``), else its SQLite file: the same rule as every lesson's --database.

`target_metadata` describes the schema the migrations must produce, built from the same definitions the
lessons use (the SDK's tables from `session_management.common.schema`, lesson 06's tables from
`session_management.common.conversations`), so `alembic check` reports any drift between them and the database.
Alembic does not compare collations; `compare_type` below adds that for the id and owner columns on MySQL.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Column, Connection, MetaData, String, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeEngine

from session_management.common import create_engine, resolve_database_url
from session_management.common.conversations import course_tables
from session_management.common.schema import mysql_session_id_collation, session_tables

config = context.config
if config.config_file_name is not None and not config.attributes.get("quiet"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """`-x database=...`, else `sqlalchemy.url`, else the course's default (DATABASE_URL, else SQLite)."""
    chosen = context.get_x_argument(as_dictionary=True).get("database") or config.get_main_option("sqlalchemy.url")
    return resolve_database_url(chosen)


def target_metadata(connection: Connection) -> MetaData:
    metadata = MetaData()
    collation = None
    if connection.dialect.name in ("mysql", "mariadb"):
        collation = mysql_session_id_collation(connection)
    session_tables(metadata, session_id_collation=collation)
    course_tables(metadata, mysql_collation=collation)
    return metadata


def compare_type(migration: Any, inspected: Column[Any], declared: Column[Any], inspected_type: TypeEngine[Any],
                 declared_type: TypeEngine[Any]) -> bool | None:
    """True when a column differs in a way that changes behaviour and Alembic alone would not say so.

    Alembic skips a length the database does not state (the SDK's own tables have unbounded VARCHAR ids on
    PostgreSQL, where the course's refuse ids over 255 characters) and never compares collations (under
    MySQL's case-insensitive ones "alice" reads "Alice"'s history). None: Alembic's own comparison decides.
    """
    dialect = migration.dialect
    if dialect.name == "sqlite":
        return None  # SQLite ignores lengths and has no collations on these columns
    declared_type = declared_type.dialect_impl(dialect)
    wanted_length = getattr(declared_type, "length", None)
    if isinstance(declared_type, String) and wanted_length is not None:
        if getattr(inspected_type, "length", None) != wanted_length:
            return True
    wanted_collation = getattr(declared_type, "collation", None)
    if dialect.name in ("mysql", "mariadb") and wanted_collation:
        # From information_schema: SHOW CREATE TABLE, which reflection reads, omits a table's default collation.
        actual = migration.connection.scalar(text(
            "SELECT collation_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = :table AND column_name = :column"),
            {"table": declared.table.name, "column": declared.name})
        if actual != wanted_collation:
            return True
    return None


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(connection),
        compare_type=compare_type,  # Alembic's comparison, plus lengths it skips and collations on MySQL
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_on_async_engine(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)


async def run_on_own_engine() -> None:
    engine = create_engine(database_url())
    try:
        await run_on_async_engine(engine)
    finally:
        await engine.dispose()


def run_on_given(connectable: Any) -> None:
    """Migrate through what the caller handed over, leaving it open: it is theirs."""
    if isinstance(connectable, Connection):
        run_migrations(connectable)
    elif isinstance(connectable, AsyncEngine):
        asyncio.run(run_on_async_engine(connectable))  # Alembic's commands are synchronous: no loop is running
    elif isinstance(connectable, AsyncConnection):
        raise SystemExit("Give Alembic a synchronous connection: inside `await async_connection.run_sync(fn)`, "
                         "set config.attributes['connection'] to the connection fn receives.")
    else:  # an Engine, or anything with connect() that yields a Connection
        with connectable.connect() as connection:  # Alembic commits what it began, and only that
            run_migrations(connection)


if context.is_offline_mode():
    raise SystemExit("This course runs migrations online only: drop --sql.")
if config.attributes.get("connection") is not None:
    run_on_given(config.attributes["connection"])
else:
    asyncio.run(run_on_own_engine())
