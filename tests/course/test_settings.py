"""`--database` resolution and the messages for URLs the course cannot use."""

from __future__ import annotations

import re

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from session_management.common import CourseError, resolve_database_url
from session_management.common.databases import connect_timeout, pool_settings
from session_management.common.settings import DATA_DIR, DEFAULT_MYSQL_URL, DEFAULT_POSTGRES_URL, redact


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "POSTGRES_URL", "MYSQL_URL", "SQLITE_URL"):
        monkeypatch.delenv(name, raising=False)
    # .env must not leak into these tests: mark it as loaded already.
    monkeypatch.setattr("session_management.common.settings._dotenv_loaded", True)


def test_default_is_an_sqlite_file_in_the_data_folder() -> None:
    url = resolve_database_url(None)
    assert url == f"sqlite+aiosqlite:///{DATA_DIR / 'sessions.db'}"


def test_names_resolve_to_the_compose_servers_by_default() -> None:
    assert resolve_database_url("postgres") == DEFAULT_POSTGRES_URL
    assert resolve_database_url("postgresql") == DEFAULT_POSTGRES_URL
    assert resolve_database_url("mysql") == DEFAULT_MYSQL_URL
    assert resolve_database_url("MariaDB") == DEFAULT_MYSQL_URL


def test_names_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", "postgresql+asyncpg://a:b@db.example:6543/x")
    monkeypatch.setenv("MYSQL_URL", "mysql+aiomysql://a:b@db.example:3307/y")
    monkeypatch.setenv("SQLITE_URL", "sqlite+aiosqlite:///elsewhere.db")
    assert resolve_database_url("postgres") == "postgresql+asyncpg://a:b@db.example:6543/x"
    assert resolve_database_url("mysql") == "mysql+aiomysql://a:b@db.example:3307/y"
    assert resolve_database_url("sqlite") == "sqlite+aiosqlite:///elsewhere.db"


def test_database_url_sets_the_default_as_a_name_or_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql")
    assert resolve_database_url(None) == DEFAULT_MYSQL_URL
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    assert resolve_database_url(None) == "sqlite+aiosqlite:///:memory:"
    assert resolve_database_url("postgres") == DEFAULT_POSTGRES_URL  # an explicit --database wins


def test_urls_pass_through() -> None:
    url = "postgresql+asyncpg://u:p@h:5432/d"
    assert resolve_database_url(url) == url


@pytest.mark.parametrize(
    ("url", "suggestion"),
    [
        ("postgresql://u:p@h/d", "postgresql+asyncpg://"),
        ("postgresql+psycopg2://u:p@h/d", "postgresql+asyncpg://"),
        ("postgres://u:p@h/d", "postgresql+asyncpg://"),
        ("mysql://u:p@h/d", "mysql+aiomysql://"),
        ("mysql+pymysql://u:p@h/d", "mysql+aiomysql://"),
        ("sqlite:///x.db", "sqlite+aiosqlite://"),
    ],
)
def test_sync_drivers_are_refused_with_the_async_scheme(url: str, suggestion: str) -> None:
    with pytest.raises(CourseError) as raised:
        resolve_database_url(url)
    assert suggestion in str(raised.value)
    assert ":p@" not in str(raised.value), "the password must not be printed"


@pytest.mark.parametrize("value", ["not a url", "postgress", "://nothing"])
def test_malformed_values_say_what_is_accepted(value: str) -> None:
    with pytest.raises(CourseError) as raised:
        resolve_database_url(value)
    assert "sqlite, postgres, mysql" in str(raised.value)


def test_unsupported_database() -> None:
    with pytest.raises(CourseError, match="Unsupported database 'oracle'"):
        resolve_database_url("oracle+oracledb://u:p@h/d")


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql+asyncpg://u:secret@h/d") == "postgresql+asyncpg://u:***@h/d"
    assert redact("sqlite+aiosqlite:///:memory:") == "sqlite+aiosqlite:///:memory:"


def env_example() -> dict[str, str]:
    """Every KEY=value in .env.example, commented out or not (a reader may uncomment any of them)."""
    text = (DATA_DIR.parent / ".env.example").read_text(encoding="utf-8")
    return dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(\S*)\s*$", text, re.MULTILINE))


def test_env_example_values_work_where_they_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: DATABASE_URL=sqlite, a name, crashed the README snippets that give it to create_async_engine."""
    values = env_example()
    assert {"DATABASE_URL", "POSTGRES_URL", "MYSQL_URL", "SQLITE_URL", "DB_CONNECT_TIMEOUT"} <= set(values)
    for name in ("DATABASE_URL", "POSTGRES_URL", "MYSQL_URL", "SQLITE_URL"):
        create_async_engine(values[name])  # what the README snippets do with it (parses; no connection yet)
        assert resolve_database_url(values[name]) == values[name]  # what the lessons do with it
    for name in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_CONNECT_TIMEOUT"):
        monkeypatch.setenv(name, values[name])
    assert pool_settings("postgresql")["pool_size"] == int(values["DB_POOL_SIZE"])
    assert connect_timeout() == float(values["DB_CONNECT_TIMEOUT"])


def test_a_non_numeric_port_is_named() -> None:
    with pytest.raises(CourseError, match=r"The port in postgresql\+asyncpg://u:\*\*\*@h:54x2/d is not a number"):
        resolve_database_url("postgresql+asyncpg://u:secret@h:54x2/d")
