"""Configuration: `.env` loading and the `--database` names every lesson accepts.

A lesson's ``--database`` takes ``sqlite``, ``postgres``, ``mysql`` or any SQLAlchemy async URL.
The names resolve, in order, from the environment (``.env`` included):

* ``sqlite``   -> ``SQLITE_URL``, else a file ``.data/sessions.db`` in the repository (git-ignored)
* ``postgres`` -> ``POSTGRES_URL``, else the docker-compose server on 127.0.0.1:5432
* ``mysql``    -> ``MYSQL_URL``, else the docker-compose server on 127.0.0.1:3306

With no ``--database`` at all, ``DATABASE_URL`` (a name or a URL) is used, else ``sqlite``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dotenv import load_dotenv
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .errors import CourseError

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / ".data"

# The same credentials as docker-compose.yml, .env.example and scripts/db-servers.sh.
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://course:course@127.0.0.1:5432/sessions"
DEFAULT_MYSQL_URL = "mysql+aiomysql://course:course@127.0.0.1:3306/sessions"

DATABASE_NAMES = ("sqlite", "postgres", "mysql")
_ALIASES = {"postgresql": "postgres", "pg": "postgres", "mariadb": "mysql", "sqlite3": "sqlite"}

# The async driver the course uses for each backend, and how a reader installs it.
ASYNC_DRIVERS = {
    "postgresql": ("asyncpg", "postgresql+asyncpg"),
    "mysql": ("aiomysql", "mysql+aiomysql"),
    "mariadb": ("aiomysql", "mysql+aiomysql"),
    "sqlite": ("aiosqlite", "sqlite+aiosqlite"),
}

_dotenv_loaded = False


def load_env() -> None:
    """Load the repository's `.env` once. Variables already set in the environment win."""
    global _dotenv_loaded
    if not _dotenv_loaded:
        load_dotenv(REPO_ROOT / ".env", override=False)
        _dotenv_loaded = True


def default_sqlite_url() -> str:
    return f"sqlite+aiosqlite:///{DATA_DIR / 'sessions.db'}"


def resolve_database_url(database: str | None = None) -> str:
    """Turn a ``--database`` value (or nothing) into a SQLAlchemy async URL, validated.

    Raises :class:`CourseError` for a malformed URL or a synchronous driver, with the fix.
    """
    load_env()
    value = (database or os.environ.get("DATABASE_URL") or "sqlite").strip()
    name = _ALIASES.get(value.lower(), value.lower())
    if name == "sqlite":
        value = os.environ.get("SQLITE_URL") or default_sqlite_url()
    elif name == "postgres":
        value = os.environ.get("POSTGRES_URL") or DEFAULT_POSTGRES_URL
    elif name == "mysql":
        value = os.environ.get("MYSQL_URL") or DEFAULT_MYSQL_URL
    check_async_url(value)
    return value


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ValueError:  # make_url's int() of a port such as "abc"
        raise CourseError(
            f"The port in {redact(url)} is not a number.",
            "write the URL as scheme://user:password@host:PORT/dbname with a numeric port, e.g. 5432 or 3306",
        ) from None
    except ArgumentError:
        raise CourseError(
            f"{redact(url)!r} is neither a database name nor a valid database URL.",
            "use sqlite, postgres, mysql, or a URL such as "
            "postgresql+asyncpg://user:password@host:5432/dbname",
        ) from None
    return parsed


def check_async_url(url: str) -> URL:
    """Validate that *url* parses and names an async driver the course supports."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgres":  # Heroku-style scheme, which SQLAlchemy does not accept
        raise CourseError(
            f"{redact(url)} uses the scheme 'postgres://', which SQLAlchemy does not know.",
            "write the URL as postgresql+asyncpg://... (package 'asyncpg')",
        )
    if backend not in ASYNC_DRIVERS:
        raise CourseError(
            f"Unsupported database {backend!r} in {redact(url)}.",
            "the course supports sqlite+aiosqlite://, postgresql+asyncpg:// and mysql+aiomysql:// URLs",
        )
    driver = parsed.get_driver_name()
    module, scheme = ASYNC_DRIVERS[backend]
    if driver != module:
        raise CourseError(
            f"{redact(url)} uses the synchronous driver {driver!r}; sessions need an async driver.",
            f"write the URL as {scheme}://... (package {module!r})",
        )
    return parsed


def writable_folder(path: str | Path, what: str) -> Path:
    """Create *path* (and its parents) if missing; a folder that cannot be made is a :class:`CourseError`."""
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CourseError(
            f"Cannot create the folder {str(folder)!r} for {what}: {error.strerror or error}.",
            "choose a folder you can write to",
        ) from None
    return folder


def redact(url: str) -> str:
    """The URL with its password hidden, for printing."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _hide_password_by_hand(url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def _hide_password_by_hand(url: str) -> str:
    """Hide the password of a URL that does not parse (``scheme://user:password@...``)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
