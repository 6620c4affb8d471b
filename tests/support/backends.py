"""Which real databases the test run can use, and throwaway test databases on them.

SQLite is always available (a fresh file per test). PostgreSQL and MySQL come from ``POSTGRES_URL`` /
``MYSQL_URL`` (environment or ``.env``; else the docker-compose defaults). Tests never touch the lesson
database itself: they use ``<database>_test`` on the same server, created when missing and emptied before
each test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from session_management.common import CourseError, check_connection, create_engine, create_session_tables
from session_management.common.settings import load_env, resolve_database_url

SERVER_BACKENDS = ("postgres", "mysql")
ALL_BACKENDS = ("sqlite", *SERVER_BACKENDS)


@dataclass(frozen=True)
class Availability:
    backend: str
    url: str | None  # the test database's URL, when reachable
    reason: str  # why not, or where


def require_all_backends() -> bool:
    """Whether a missing backend, tool or optional package fails its tests rather than skipping them: under
    ``REQUIRE_ALL_BACKENDS=1`` (what .ci/run sets) or on a CI service (``CI=true``), where everything must be there."""
    required = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip().lower() in ("1", "true", "yes")
    return required or os.environ.get("CI") == "true"


def unavailable(message: str) -> NoReturn:
    """Skip the test with *message* (what is missing and the command that installs it), or fail it when every
    backend is required (:func:`require_all_backends`)."""
    if require_all_backends():
        pytest.fail(f"{message} (REQUIRE_ALL_BACKENDS=1)", pytrace=False)
    pytest.skip(message)


def test_database_url(server_url: str) -> str:
    """``<database>_test`` on the same server (``_test_<suffix>`` with TEST_DATABASE_SUFFIX, for parallel runs)."""
    parsed = make_url(server_url)
    suffix = os.environ.get("TEST_DATABASE_SUFFIX", "").strip()
    name = f"{parsed.database}_test" + (f"_{suffix}" if suffix else "")
    return parsed.set(database=name).render_as_string(hide_password=False)


async def _create_test_database(server_url: str, test_url: str) -> None:
    name = make_url(test_url).database
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                exists = await connection.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if not exists:
                    await connection.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                await connection.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    finally:
        await engine.dispose()


async def _probe(backend: str) -> Availability:
    server_url = resolve_database_url(backend)
    engine = create_engine(server_url)
    try:
        await check_connection(engine, timeout=5)
    except CourseError as error:
        return Availability(backend, None, str(error).replace("\n", " "))
    finally:
        await engine.dispose()
    test_url = test_database_url(server_url)
    try:
        await _create_test_database(server_url, test_url)
    except Exception as error:  # noqa: BLE001 - reported as the reason the backend is unusable
        return Availability(backend, None, f"cannot create the test database {make_url(test_url).database}: {error}")
    return Availability(backend, test_url, make_url(test_url).render_as_string(hide_password=True))


def probe_backends() -> dict[str, Availability]:
    load_env()

    async def probe_all() -> dict[str, Availability]:
        return {backend: await _probe(backend) for backend in SERVER_BACKENDS}

    found = asyncio.run(probe_all())
    AVAILABILITY.update(found)
    return found


# What the probe at the start of the test run found (filled by conftest.py's pytest_sessionstart).
AVAILABILITY: dict[str, Availability] = {}


def server_url(backend: str) -> str:
    """The test database URL for *backend*, or skip (fail under REQUIRE_ALL_BACKENDS=1)."""
    status = AVAILABILITY.get(backend)
    if status is None:
        status = probe_backends()[backend]
    if status.url is None:
        unavailable(f"{backend} unavailable: {status.reason}")
    return status.url


async def drop_all_tables(engine: AsyncEngine) -> None:
    def drop(connection) -> None:
        metadata = MetaData()
        metadata.reflect(connection)
        metadata.drop_all(connection)

    async with engine.begin() as connection:
        await connection.run_sync(drop)


async def reset_database(url: str) -> None:
    engine = create_engine(url)
    try:
        await drop_all_tables(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def sqlite_engine(path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a new SQLite file with the SDK's tables, for tests whose subject is not the database."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await create_session_tables(engine)
        yield engine
    finally:
        await engine.dispose()
