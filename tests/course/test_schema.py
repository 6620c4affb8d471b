"""The course's schema helper: the SDK's own tables, usable by SQLAlchemySession on every backend."""

from __future__ import annotations

import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import CompileError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError, create_session_tables, resolve_database_url


def big_item(size: int) -> dict[str, str]:
    return {"role": "user", "content": "x" * size}


async def test_tables_match_the_sdk_names_columns_and_index(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    probe = SQLAlchemySession("probe", engine=engine)  # the SDK's own definition, never created
    sdk_tables = {table.name: table for table in probe._metadata.sorted_tables}

    def describe(connection):
        inspector = inspect(connection)
        return {
            name: (
                {column["name"] for column in inspector.get_columns(name)},
                {tuple(index["column_names"]) for index in inspector.get_indexes(name)},
            )
            for name in inspector.get_table_names()
        }

    async with engine.connect() as connection:
        ours = await connection.run_sync(describe)
    for name, table in sdk_tables.items():
        columns, indexes = ours[name]
        assert columns == {column.name for column in table.columns}
        for index in table.indexes:
            assert tuple(column.name for column in index.columns) in indexes


async def test_a_1mb_item_and_emoji_round_trip_through_the_sdk(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    session = SQLAlchemySession("big", engine=engine, create_tables=False)
    emoji = {"role": "user", "content": "naïve café 👩‍💻🚀 漢字 — ok"}
    large = big_item(1024 * 1024)
    await session.add_items([emoji, large])
    stored = await session.get_items()
    assert stored == [emoji, large]
    # ensure_ascii=False stores emoji as real 4-byte UTF-8, which MySQL accepts only as utf8mb4
    raw = SQLAlchemySession("raw", engine=engine, ensure_ascii=False)
    await raw.add_items([emoji])
    assert await raw.get_items() == [emoji]


async def test_create_is_idempotent_and_keeps_data(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    session = SQLAlchemySession("keep", engine=engine)
    await session.add_items([{"role": "user", "content": "still here"}])
    await create_session_tables(engine)
    assert await session.get_items() == [{"role": "user", "content": "still here"}]


@pytest.mark.parametrize(("first", "second"), [("Alice", "alice"), ("alice", "alice "), ("a", "á")])
async def test_session_ids_differing_in_case_or_spaces_are_different_sessions(
    engine: AsyncEngine, first: str, second: str
) -> None:
    await create_session_tables(engine)
    one = SQLAlchemySession(first, engine=engine)
    other = SQLAlchemySession(second, engine=engine)
    await one.add_items([{"role": "user", "content": f"I am {first!r}"}])
    assert await other.get_items() == []
    await other.clear_session()
    assert len(await one.get_items()) == 1


async def test_sdk_create_tables_fails_on_mysql_which_is_why_the_helper_exists(
    backend: str, engine: AsyncEngine
) -> None:
    """Upstream issue 4740. If this starts passing on MySQL, the lesson's warning can be retired."""
    session = SQLAlchemySession("sdk-created", engine=engine, create_tables=True)
    if backend == "mysql":
        with pytest.raises(CompileError, match="VARCHAR requires a length"):
            await session.add_items([{"role": "user", "content": "hi"}])
    else:
        await session.add_items([{"role": "user", "content": "hi"}])
        assert len(await session.get_items()) == 1


@pytest.mark.parametrize("backend", ["mysql"])
async def test_mysql_columns_are_longtext_and_binary(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    async with engine.connect() as connection:
        rows = (await connection.execute(text(
            "SELECT column_name, data_type, collation_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = 'agent_messages'"
        ))).all()
    columns = {row[0]: (row[1], row[2]) for row in rows}
    assert columns["message_data"][0] == "longtext"
    assert columns["session_id"][1].startswith("utf8mb4_") and "bin" in columns["session_id"][1]


def test_postgresql_alone_means_psycopg_3() -> None:
    """Lesson 02's README: with SQLAlchemy 2.1, `postgresql://` is psycopg (3), a driver the course cannot use."""
    assert make_url("postgresql://user@host/db").get_dialect().driver == "psycopg"
    with pytest.raises(CourseError, match=r"synchronous driver 'psycopg'.*postgresql\+asyncpg://"):
        resolve_database_url("postgresql://user@host/db")


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_long_session_id_fits_the_sdks_tables_but_not_the_courses(engine: AsyncEngine) -> None:
    """Lesson 02's README and schema.py: VARCHAR(255) ids here, unbounded VARCHAR in the SDK's own tables."""
    long_id = "x" * 300
    sdk = SQLAlchemySession(long_id, engine=engine, create_tables=True,
                            sessions_table="sdk_sessions", messages_table="sdk_messages")
    await sdk.add_items([{"role": "user", "content": "hi"}])
    assert len(await sdk.get_items()) == 1
    await create_session_tables(engine)
    with pytest.raises(DBAPIError, match="too long"):
        await SQLAlchemySession(long_id, engine=engine).add_items([{"role": "user", "content": "hi"}])
