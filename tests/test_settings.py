"""`--database` resolution and the messages for URLs the course cannot use."""

from __future__ import annotations

import pytest

from session_management.common import CourseError, resolve_database_url
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
