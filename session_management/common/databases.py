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
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .errors import CourseError
from .liveness import ping_when_idle
from .settings import ASYNC_DRIVERS, check_async_url, load_env, redact, resolve_database_url, writable_folder

DEFAULT_CONNECT_TIMEOUT_S = 10.0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise CourseError(f"{name}={raw!r} is not a whole number.", f"set {name} to e.g. {default}") from None


def connect_timeout() -> float:
    """Seconds a new connection may take, handshake and login included (``DB_CONNECT_TIMEOUT``, default 10)."""
    load_env()
    raw = os.environ.get("DB_CONNECT_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise CourseError(f"DB_CONNECT_TIMEOUT={raw!r} is not a positive number of seconds.",
                          "set DB_CONNECT_TIMEOUT to e.g. 10")
    return value


def _bounded_connect(connect: Callable[..., Awaitable[Any]], seconds: float) -> Callable[..., Awaitable[Any]]:
    """The driver's ``connect`` with a deadline on the whole connection set-up.

    aiomysql's ``connect_timeout`` covers only the TCP connect: a server that accepts and never sends its
    greeting (a frozen server, or a PostgreSQL port given a mysql:// URL) would hold the handshake for as long
    as the operating system keeps the socket (65 s and more). One deadline around the whole call bounds it.
    """

    async def connect_within_deadline(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.wait_for(connect(*args, **kwargs), seconds)

    return connect_within_deadline


def connect_arguments(backend: str, module: str) -> dict[str, Any]:
    """Driver arguments that bound the wait for a server that is down, frozen or of another kind."""
    if backend == "sqlite":
        return {}
    seconds = connect_timeout()
    driver = importlib.import_module(module)
    arguments: dict[str, Any] = {"async_creator_fn": _bounded_connect(driver.connect, seconds)}
    if backend == "postgresql":
        arguments["timeout"] = seconds  # asyncpg's own connect timeout (default 60 s)
    else:
        arguments["connect_timeout"] = seconds  # aiomysql: the TCP connect
    return arguments


def pool_settings(backend: str) -> dict[str, Any]:
    """Pool defaults for a server database, overridable from the environment.

    A pooled connection is tested before use when it has sat idle (:mod:`.liveness`), so a restarted server
    or a connection the server closed while idle (MySQL's ``wait_timeout``) costs a reconnect instead of a
    failed request; ``pool_pre_ping=True`` tests it at every checkout instead, at a round trip or three each.
    ``pool_recycle`` retires connections before such server-side timeouts.
    """
    if backend == "sqlite":
        return {}  # SQLAlchemy picks the right pool for files and for :memory:
    return {
        "pool_size": _env_int("DB_POOL_SIZE", 10),
        "max_overflow": _env_int("DB_MAX_OVERFLOW", 20),
        "pool_timeout": _env_int("DB_POOL_TIMEOUT", 30),
        "pool_recycle": 1800,
    }


def sdk_store_pool(url: str) -> dict[str, Any]:
    """Engine keyword arguments for the SDK's `SQLAlchemySession`: ONE pooled connection on SQLite (lesson 02).

    The SDK's ``add_items`` reads, then writes, in one transaction, and SQLite fails such a transaction at once
    ("database is locked") while another connection writes: one connection makes its callers queue instead. An
    in-memory database has one connection already (SQLAlchemy's StaticPool, which takes no pool size).
    """
    parsed = make_url(url)
    on_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    return {"pool_size": 1, "max_overflow": 0} if on_file else {}


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
        writable_folder(Path(parsed.database).parent, f"the SQLite database {parsed.database}")
    settings = {**pool_settings(backend), **engine_kwargs}
    settings["connect_args"] = {**connect_arguments(backend, module), **settings.get("connect_args", {})}
    engine = create_async_engine(url, **settings)
    if backend != "sqlite" and "pool_pre_ping" not in engine_kwargs:  # the caller's choice wins
        ping_when_idle(engine)
    return engine


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


def _original(error: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's wrapper (and aiomysql's "Can't connect" wrapper)."""
    original = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    cause = original.__cause__
    if isinstance(cause, OSError | TimeoutError) and "can't connect" in str(original).lower():
        return cause
    return original


def explain_connection_error(url: str, error: BaseException) -> CourseError:
    """Map a failed first connection to one actionable message."""
    parsed = check_async_url(url)
    backend = parsed.get_backend_name()
    where = redact(url)
    original = _original(error)
    detail = f"{type(original).__name__}: {original}".strip()
    found = _no_answer(parsed, where, error, original) or _refused(parsed, where, detail.lower())
    if found is not None:
        return found
    if backend == "sqlite":
        return CourseError(f"Cannot open the SQLite database {where}: {detail}",
                           "check that the file's folder exists and that you may write to it")
    return CourseError(f"Cannot reach the database server at {where} ({detail}).", _start_hint(backend))


def _no_answer(parsed: URL, where: str, error: BaseException, original: BaseException) -> CourseError | None:
    """A server that never answered, or a host name that does not resolve."""
    if isinstance(error, TimeoutError) or isinstance(original, TimeoutError):
        backend = parsed.get_backend_name()
        return CourseError(
            f"No answer from {where} within {connect_timeout():g} s: the server is frozen or overloaded, or the "
            f"port belongs to another kind of server.",
            f"check that {parsed.host}:{parsed.port} is a {backend} server that answers; " + _start_hint(backend),
        )
    if isinstance(original, socket.gaierror):
        return CourseError(f"Cannot find the host {parsed.host!r} of {where} ({original.strerror}).",
                           "check the host name in the URL (the course's servers run on 127.0.0.1)")
    return None


def _refused(parsed: URL, where: str, lowered: str) -> CourseError | None:
    """A server that answered and said no: no such user or database, no rights, a wrong password."""
    user, database = parsed.username, parsed.database
    if parsed.get_backend_name() == "postgresql":
        if "role" in lowered and "does not exist" in lowered:
            return CourseError(f"The server at {where} has no user (role) named {user!r}.",
                               f"create it (CREATE ROLE \"{user}\" LOGIN PASSWORD '...') or fix the user in the URL")
        if "permission denied for database" in lowered or "connect privilege" in lowered:
            return CourseError(f"The user {user!r} may not connect to the database {database!r} at {where}.",
                               f'grant it: GRANT CONNECT ON DATABASE "{database}" TO "{user}"')
    if "access denied" in lowered and "to database" in lowered:  # MySQL 1044: no such database, or no grant
        return CourseError(
            f"The user in {where} cannot open that database: it does not exist, or the user has no rights on it.",
            f"create it (CREATE DATABASE {database}) and grant the user access (GRANT ALL ON {database}.* TO ...), "
            "or fix the name in the URL",
        )
    if any(s in lowered for s in ("password authentication failed", "access denied", "invalidpassword")):
        return CourseError(
            f"The server at {where} refused the user name or password.",
            "check the credentials in the URL (the course's servers use course/course)",
        )
    if any(s in lowered for s in ("unknown database", "invalidcatalogname")) or (
        "database" in lowered and "does not exist" in lowered
    ):
        return CourseError(
            f"The database named in {where} does not exist on that server.",
            f"create it (e.g. CREATE DATABASE {database}) or fix the name in the URL",
        )
    return None


def explain_schema_error(url: str, error: OSError | SQLAlchemyError) -> CourseError:
    """Creating the SDK's tables failed after the connection worked: almost always missing rights."""
    parsed = check_async_url(url)
    detail = str(_original(error)).splitlines()[0] if str(_original(error)) else type(error).__name__
    return CourseError(
        f"The user {parsed.username!r} cannot create the session tables in {redact(url)}: {detail}",
        "grant it the right to create tables (PostgreSQL: GRANT CREATE ON SCHEMA public TO the user; MySQL: "
        "GRANT ALL ON the database), or create the tables once with lesson 07's migrations as a user who may",
    )


async def check_connection(engine: AsyncEngine, timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Prove the database answers ``SELECT 1``; raise :class:`CourseError` with a fix if not.

    *timeout* defaults to the connect timeout (``DB_CONNECT_TIMEOUT``) plus a little for the query.
    """
    url = engine.url.render_as_string(hide_password=False)
    try:
        async with asyncio.timeout(timeout if timeout is not None else connect_timeout() + 2):
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
            try:
                await create_session_tables(engine)
            except (OSError, SQLAlchemyError) as error:
                raise explain_schema_error(url, error) from None
        yield engine
    finally:
        # Un-disposed aiomysql engines print "Event loop is closed" noise at interpreter exit.
        await engine.dispose()
