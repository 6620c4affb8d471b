"""Every friendly database error, really triggered: a closed port, a missing driver, bad credentials."""

from __future__ import annotations

import re
import sys

import pytest
from sqlalchemy.engine import make_url

from session_management.common import CourseError, check_connection, create_engine, open_database
from session_management.common.databases import explain_connection_error
from session_management.common.ports import free_port
from tests.support.lessons import REPO_ROOT


@pytest.mark.parametrize(
    ("url", "service"),
    [
        ("postgresql+asyncpg://course:course@127.0.0.1:{port}/sessions", "docker compose up -d postgres"),
        ("mysql+aiomysql://course:course@127.0.0.1:{port}/sessions", "docker compose up -d mysql"),
    ],
)
async def test_server_not_running_says_how_to_start_it(url: str, service: str) -> None:
    engine = create_engine(url.format(port=free_port()))
    try:
        with pytest.raises(CourseError) as raised:
            await check_connection(engine, timeout=5)
    finally:
        await engine.dispose()
    message = str(raised.value)
    assert "Cannot reach the database server" in message
    assert service in message
    assert "course:course" not in message


@pytest.mark.parametrize(("module", "url"), [
    ("asyncpg", "postgresql+asyncpg://u:p@127.0.0.1/d"),
    ("aiomysql", "mysql+aiomysql://u:p@127.0.0.1/d"),
    ("aiosqlite", "sqlite+aiosqlite:///:memory:"),
])
def test_missing_driver_names_the_package(monkeypatch: pytest.MonkeyPatch, module: str, url: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(CourseError) as raised:
        create_engine(url)
    assert f"uv add {module}" in str(raised.value)


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_wrong_password_and_unknown_database(database_url: str) -> None:
    wrong_password = make_url(database_url).set(password="not-the-password")
    engine = create_engine(wrong_password.render_as_string(hide_password=False))
    try:
        with pytest.raises(CourseError, match="refused the user name or password"):
            await check_connection(engine, timeout=10)
    finally:
        await engine.dispose()

    unknown = make_url(database_url).set(database="no_such_database_here")
    engine = create_engine(unknown.render_as_string(hide_password=False))
    try:
        with pytest.raises(CourseError, match="does not exist"):  # (or, on MySQL, no rights on it)
            await check_connection(engine, timeout=10)
    finally:
        await engine.dispose()


async def test_open_database_creates_tables_and_disposes(database_url: str) -> None:
    async with open_database(database_url) as engine:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert {"agent_sessions", "agent_messages"} <= names
    # disposed: the pool holds no connections any more
    assert engine.pool.checkedout() == 0


def test_sqlite_file_folder_is_created(tmp_path) -> None:
    target = tmp_path / "nested" / "deeper" / "s.db"
    create_engine(f"sqlite+aiosqlite:///{target}")
    assert target.parent.is_dir()


async def _server_version(url: str) -> tuple[str, tuple[int, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            dialect = connection.dialect
            kind = "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
            return kind, tuple(dialect.server_version_info or ())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_docker_compose_runs_the_versions_the_tests_verify(database_url: str, backend: str) -> None:
    """docker-compose.yml's images are the servers this test run uses (in CI: Debian 12's PostgreSQL 15 and
    MariaDB 10.11), and the README names the same versions."""
    compose = (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    images = dict(re.findall(r"^\s+image:\s*([\w.-]+):([\w.-]+)\s*$", compose, re.MULTILINE))
    kind, version = await _server_version(database_url)
    if kind == "postgresql":
        assert images["postgres"] == str(version[0]), f"compose runs postgres:{images['postgres']}, tests {version}"
        expected = f"PostgreSQL {version[0]}"
    else:
        assert kind == "mariadb", f"the tests run on MySQL {version}; compose ships mariadb:{images.get('mariadb')}"
        assert images["mariadb"] == f"{version[0]}.{version[1]}", f"compose: {images['mariadb']}, tests {version}"
        expected = f"MariaDB {version[0]}.{version[1]}"
    assert expected in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("error", "expected"), [
    ('role "ada" does not exist', r"has no user \(role\) named 'ada'.*CREATE ROLE"),
    ('database "shop" does not exist', r"database named in .* does not exist.*CREATE DATABASE shop"),
    ('permission denied for database "shop"', r"may not connect to the database 'shop'.*GRANT CONNECT"),
])
def test_postgres_errors_are_told_apart(error: str, expected: str) -> None:
    """Defect: any "does not exist" read as a missing database, a missing role included. (A server with password
    authentication reports a missing role as a failed password; with trust or peer authentication it says
    'role ... does not exist', the asyncpg exception used here.)"""
    import asyncpg

    kinds = {"role": asyncpg.InvalidAuthorizationSpecificationError, "database": asyncpg.InvalidCatalogNameError,
             "permission": asyncpg.InsufficientPrivilegeError}
    original = kinds[error.split()[0]](error)
    message = str(explain_connection_error("postgresql+asyncpg://ada:pw@127.0.0.1:5432/shop", original))
    assert re.search(expected, message), message
