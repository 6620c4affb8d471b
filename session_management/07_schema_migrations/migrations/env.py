"""Alembic environment for the course: async engine, URL from the course's settings.

`target_metadata` describes the schema the migrations must produce, built from the same definitions the
lessons use (the SDK's tables from `session_management.common.schema`, lesson 05's tables from
`session_management.common.conversations`), so `alembic check` reports any drift between them and the database.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, MetaData

from session_management.common import create_engine, resolve_database_url
from session_management.common.conversations import course_tables
from session_management.common.schema import mysql_session_id_collation, session_tables

config = context.config
if config.config_file_name is not None and not config.attributes.get("quiet"):
    fileConfig(config.config_file_name)


def database_url() -> str:
    """`config.attributes["database_url"]` (programmatic use), `-x database=...`, else the course default."""
    return config.attributes.get("database_url") or resolve_database_url(context.get_x_argument(as_dictionary=True)
                                                                         .get("database"))


def target_metadata(connection: Connection) -> MetaData:
    metadata = MetaData()
    collation = None
    if connection.dialect.name in ("mysql", "mariadb"):
        collation = mysql_session_id_collation(connection)
    session_tables(metadata, session_id_collation=collation)
    course_tables(metadata, mysql_collation=collation)
    return metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(connection),
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("This course runs migrations online only: drop --sql.")
asyncio.run(run_async_migrations())
