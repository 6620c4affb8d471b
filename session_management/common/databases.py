"""Async engines for the lessons: pool defaults, a readiness check, and one clear message per mistake.

Every lesson opens its database with::

    async with open_database(args.database) as engine:
        ...

which resolves the name or URL, creates the engine, proves the server answers, creates the SDK's tables
where asked (correctly on MySQL, see :mod:`.schema`), and always disposes of the engine at the end.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .errors import CourseError
from .settings import ASYNC_DRIVERS, check_async_url, redact, resolve_database_url

CONNECT_TIMEOUT_S = 10.0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise CourseError(f"{name}={raw!r} is not a whole number.", f"set {name} to e.g. {default}") from None


def pool_settings(backend: str) -> dict[str, Any]:
    """Pool defaults for a server database, overridable from the environment.

    ``pool_pre_ping`` tests a pooled connection before use, so a restarted server or a connection the
    server closed while idle (MySQL's ``wait_timeout``) costs a reconnect instead of a failed request.
    ``pool_recycle`` retires connections before such server-side timeouts.
    """
    if backend == "sqlite":
        return {}  # SQLAlchemy picks the right pool for files and for :memory:
    return {
        "pool_pre_ping": True,
        "pool_size": _env_int("DB_POOL_SIZE", 10),
        "max_overflow": _env_int("DB_MAX_OVERFLOW", 20),
        "pool_timeout": _env_int("DB_POOL_TIMEOUT", 30),
        "pool_recycle": 1800,
    }


def create_engine(url: str, **engine_kwargs: Any) -> AsyncEngine:
    """Create an async engine for *url* with the course's pool defaults (*engine_kwargs* win).

    Raises :class:`CourseError` when the URL is malformed, names a sync driver, or its driver package
    is not installed.
    """
    parsed = check_async_url(url)
    backend = parsed.get_backend_name()
    module, _ = ASYNC_DRIVERS[backend]
    try:
        importlib.import_module(module)
    except ImportError:
        raise CourseError(
            f"The database driver {module!r} is not installed.",
            f"install it with `uv add {module}` (or `pip install {module}`)",
        ) from None
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    settings = {**pool_settings(backend), **engine_kwargs}
    return create_async_engine(url, **settings)


def _start_hint(backend: str) -> str:
    if backend == "postgresql":
        return (
            "start it with `docker compose up -d postgres` (or `bash scripts/db-servers.sh start postgres`), "
            "or set POSTGRES_URL in .env to a server you have"
        )
    if backend in ("mysql", "mariadb"):
        return (
            "start it with `docker compose up -d mysql` (or `bash scripts/db-servers.sh start mysql`), "
            "or set MYSQL_URL in .env to a server you have"
        )
    return "check the path in the URL"


def explain_connection_error(url: str, error: BaseException) -> CourseError:
    """Map a failed first connection to one actionable message."""
    parsed = check_async_url(url)
    backend = parsed.get_backend_name()
    where = redact(url)
    original = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    detail = f"{type(original).__name__}: {original}".strip()
    lowered = detail.lower()
    if isinstance(error, TimeoutError) or isinstance(original, TimeoutError):
        return CourseError(f"Timed out connecting to {where}.", _start_hint(backend))
    if "access denied" in lowered and "to database" in lowered:  # MySQL 1044: no such database, or no grant
        return CourseError(
            f"The user in {where} cannot open that database: it does not exist, or the user has no rights on it.",
            f"create it (CREATE DATABASE {parsed.database}) and grant the user access, or fix the name in the URL",
        )
    if any(s in lowered for s in ("password authentication failed", "access denied", "invalidpassword")):
        return CourseError(
            f"The server at {where} refused the user name or password.",
            "check the credentials in the URL (the course's servers use course/course)",
        )
    if any(s in lowered for s in ("does not exist", "unknown database", "invalidcatalogname")):
        return CourseError(
            f"The database named in {where} does not exist on that server.",
            f"create it (e.g. CREATE DATABASE {parsed.database}) or fix the name in the URL",
        )
    if backend == "sqlite":
        return CourseError(f"Cannot open the SQLite database {where}: {detail}", _start_hint(backend))
    return CourseError(f"Cannot reach the database server at {where} ({detail}).", _start_hint(backend))


async def check_connection(engine: AsyncEngine, timeout: float = CONNECT_TIMEOUT_S) -> None:  # noqa: ASYNC109
    """Prove the database answers ``SELECT 1``; raise :class:`CourseError` with a fix if not."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except (OSError, TimeoutError, SQLAlchemyError) as error:
        raise explain_connection_error(url, error) from None


@asynccontextmanager
async def open_database(
    database: str | None = None, *, create_tables: bool = True, **engine_kwargs: Any
) -> AsyncIterator[AsyncEngine]:
    """Resolve *database*, connect, prepare the SDK's tables, and dispose of the engine afterwards."""
    from .schema import create_session_tables  # local import: schema imports nothing from here

    url = resolve_database_url(database)
    engine = create_engine(url, **engine_kwargs)
    try:
        await check_connection(engine)
        if create_tables:
            await create_session_tables(engine)
        yield engine
    finally:
        # Un-disposed aiomysql engines print "Event loop is closed" noise at interpreter exit.
        await engine.dispose()
