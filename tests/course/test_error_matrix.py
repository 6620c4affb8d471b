"""Every entry point x every expected mistake: exit status 2, one line on stderr that names the fix, no traceback.

The mistakes are real: a closed port, the test servers refusing a wrong password (they use password
authentication), a database or a user that does not exist, a user without rights, a host name that does not
resolve, a server that accepts the connection and never answers (:mod:`tests.support.silent_server`), a MySQL URL
pointed at PostgreSQL's port. The matrix runs each command's ``__main__`` block in-process (the same code path
as the command line, without ~2 s of imports per case); one subprocess per entry point then proves the process
boundary: the exit status and the single line a terminal shows.

Every entry point ends through the course's one runner (``common/cli.py``), which is what makes the matrix hold.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from session_management.common.ports import free_port
from tests.support import lessons
from tests.support.backends import server_url
from tests.support.silent_server import SilentServer

# A frozen server costs this long per case; the normal rows keep the course's default (10 s).
SILENT_TIMEOUT_S = "0.2"
NO_RIGHTS_USER = "course_norights"  # a PostgreSQL role that may log in but not create anything
NO_RIGHTS_DATABASE = "sessions_norights"


@dataclass(frozen=True)
class Servers:
    postgres: str
    mysql: str
    silent_port: int
    closed_port: int
    postgres_no_rights: str
    scratch: Path


def with_parts(url: str, **parts: object) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Mistake:
    name: str
    url: Callable[[Servers], str]
    fix: str  # a regular expression the one line must match: the fix it names
    silent: bool = False  # needs the short connect timeout


MISTAKES = [
    Mistake("unknown name", lambda s: "postgress", r"use sqlite, postgres, mysql"),
    Mistake("malformed URL", lambda s: "postgresql+asyncpg//course@127.0.0.1/sessions", r"use sqlite, postgres, mysql"),
    Mistake("sync driver postgres", lambda s: with_parts(s.postgres, drivername="postgresql"),
            r"write the URL as postgresql\+asyncpg://"),
    Mistake("sync driver mysql", lambda s: with_parts(s.mysql, drivername="mysql+pymysql"),
            r"write the URL as mysql\+aiomysql://"),
    Mistake("refused port postgres", lambda s: with_parts(s.postgres, port=s.closed_port),
            r"start it with `docker compose up -d postgres`"),
    Mistake("refused port mysql", lambda s: with_parts(s.mysql, port=s.closed_port),
            r"start it with `docker compose up -d mysql`"),
    Mistake("wrong password postgres", lambda s: with_parts(s.postgres, password="wrong-password"),
            r"refused the user name or password\. -> check the credentials"),
    Mistake("wrong password mysql", lambda s: with_parts(s.mysql, password="wrong-password"),
            r"refused the user name or password\. -> check the credentials"),
    Mistake("missing database postgres", lambda s: with_parts(s.postgres, database="sessions_missing"),
            r"does not exist .*-> create it \(e\.g\. CREATE DATABASE sessions_missing\)"),
    Mistake("missing database mysql", lambda s: with_parts(s.mysql, database="sessions_missing"),
            r"does not exist .*-> create it \(e\.g\. CREATE DATABASE sessions_missing\)"),
    # PostgreSQL with password authentication does not say whether the role exists (it would tell an attacker
    # which user names are valid): a missing role reads as a wrong user name or password, which it is.
    Mistake("missing role postgres", lambda s: with_parts(s.postgres, username="nobody_here"),
            r"refused the user name or password\. -> check the credentials"),
    Mistake("missing role mysql", lambda s: with_parts(s.mysql, username="nobody_here"),
            r"refused the user name or password\. -> check the credentials"),
    # A user who may log in but not create tables, in an empty database: the lessons that create the SDK's
    # tables say which right to grant; lesson 08, which only reads existing tables, says there are none here.
    Mistake("missing rights postgres", lambda s: s.postgres_no_rights,
            r"(?i)-> grant|has no SDK session tables .*-> .*create them"),
    Mistake("missing rights mysql", lambda s: with_parts(s.mysql, database="mysql"),
            r"cannot open that database.*-> create it .*grant the user access"),
    Mistake("unknown host", lambda s: with_parts(s.postgres, host="no-such-host.invalid"),
            r"Cannot find the host 'no-such-host\.invalid'.*-> check the host name"),
    Mistake("non-numeric port", lambda s: "postgresql+asyncpg://course:course@127.0.0.1:54x2/sessions",
            r"port .* is not a number\. -> write the URL .* numeric port"),
    Mistake("unwritable SQLite path", lambda s: "sqlite+aiosqlite:////proc/no-such-folder/sessions.db",
            r"Cannot create the folder '/proc/no-such-folder' .*-> choose a folder you can write to"),
    Mistake("silent server postgres", lambda s: with_parts(s.postgres, port=s.silent_port),
            rf"No answer from .* within {re.escape(SILENT_TIMEOUT_S)} s.*-> check that", silent=True),
    Mistake("silent server mysql", lambda s: with_parts(s.mysql, port=s.silent_port),
            rf"No answer from .* within {re.escape(SILENT_TIMEOUT_S)} s.*-> check that", silent=True),
    Mistake("mysql URL at the PostgreSQL port", lambda s: with_parts(s.mysql, port=make_url(s.postgres).port),
            rf"No answer from .* within {re.escape(SILENT_TIMEOUT_S)} s.*port belongs to another kind of server",
            silent=True),
]


@dataclass(frozen=True)
class EntryPoint:
    name: str
    module: str
    args: Callable[[str, Path], list[str]]  # (database URL, scratch folder) -> command-line arguments


def database_only(*extra: str) -> Callable[[str, Path], list[str]]:
    return lambda url, scratch: ["--database", url, *extra]


def import_file(scratch: Path) -> str:
    path = scratch / "import.jsonl"
    path.write_text('{"role": "user", "content": "hello"}\n', encoding="utf-8")
    return str(path)


ENTRY_POINTS = [
    EntryPoint("02", "02_sqlalchemy_session", database_only()),
    EntryPoint("04", "04_encrypted_session", database_only()),
    EntryPoint("04 benchmark", "04_encrypted_session.benchmark",
               database_only("--turns", "1", "--reads", "1", "--rounds", "1")),
    EntryPoint("06 demo", "06_web_service", database_only()),
    EntryPoint("06 --serve", "06_web_service",
               lambda url, s: ["--serve", "--port", str(free_port()), "--database", url]),
    EntryPoint("07", "07_schema_migrations", database_only()),
    EntryPoint("08 demo", "08_session_admin", database_only()),
    EntryPoint("08 list", "08_session_admin", lambda url, s: ["list", "--database", url]),
    EntryPoint("08 show", "08_session_admin", lambda url, s: ["show", "someone", "--database", url]),
    EntryPoint("08 export", "08_session_admin", lambda url, s: ["export", "someone", "--database", url]),
    EntryPoint("08 import", "08_session_admin",
               lambda url, s: ["import", import_file(s), "--session-id", "imported", "--database", url]),
    EntryPoint("08 purge", "08_session_admin", lambda url, s: ["purge", "--older-than", "1d", "--database", url]),
    EntryPoint("08 stats", "08_session_admin", lambda url, s: ["stats", "--database", url]),
    EntryPoint("09", "09_scaling", database_only("--concurrency", "1", "--turns", "1")),
    EntryPoint("chat", "session_management", lambda url, s: ["chat", "--database", url]),
]
# Lessons 01 and 03 take no database, only a folder for their SQLite file.
DATA_DIR_ENTRY_POINTS = [EntryPoint("01", "01_sqlite_session", lambda url, s: ["--data-dir", url]),
                         EntryPoint("03", "03_advanced_sqlite_session", lambda url, s: ["--data-dir", url])]
UNWRITABLE_FOLDER = "/proc/no-such-folder/lesson"


async def _prepare_no_rights_user(admin_url: str) -> str:
    """A role that may log in to an empty database of its own but create nothing there (PostgreSQL >= 15:
    only the database owner may create in schema public)."""
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": NO_RIGHTS_USER})
            if not exists:
                await connection.execute(text(f"CREATE ROLE {NO_RIGHTS_USER} LOGIN PASSWORD 'course'"))
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{NO_RIGHTS_DATABASE}"'))
            await connection.execute(text(f'CREATE DATABASE "{NO_RIGHTS_DATABASE}"'))
            await connection.execute(text(f'REVOKE CREATE ON DATABASE "{NO_RIGHTS_DATABASE}" FROM PUBLIC'))
    finally:
        await engine.dispose()
    return with_parts(admin_url, username=NO_RIGHTS_USER, password="course", database=NO_RIGHTS_DATABASE)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    postgres, mysql = server_url("postgres"), server_url("mysql")
    no_rights = asyncio.run(_prepare_no_rights_user(postgres))
    with SilentServer() as silent:
        yield Servers(postgres, mysql, silent.port, free_port(), no_rights, tmp_path_factory.mktemp("matrix"))


@pytest.fixture
def mistake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No reader settings in play; the variables whose absence only adds a warning are set."""
    for name in lessons.READER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("ENCRYPTION_KEY", "wWQ1qz3Mpc9ZzIvQJb1vtdLm0kRcZS2vxd0R2qgGm8s=")
    monkeypatch.setenv("CHAT_USERS", "alice:alice-matrix-token")


def check_one_line(code: int, stderr: str, fix: str) -> None:
    assert code == 2, f"exit status {code}, expected 2; stderr:\n{stderr}"
    line = lessons.one_line_error(stderr)
    assert re.search(fix, line), f"the message does not name the fix /{fix}/:\n{line}"


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e.name)
def test_mistake_is_one_line(entry: EntryPoint, mistake: Mistake, servers: Servers, mistake_env: None,
                             monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    if mistake.silent:
        monkeypatch.setenv("DB_CONNECT_TIMEOUT", SILENT_TIMEOUT_S)
    monkeypatch.chdir(servers.scratch)  # anything a command writes by mistake lands here, not in the checkout
    started = time.monotonic()
    code = lessons.run_in_process(entry.module, *entry.args(mistake.url(servers), servers.scratch))
    elapsed = time.monotonic() - started
    check_one_line(code, capfd.readouterr().err, mistake.fix)
    assert elapsed < 30, f"took {elapsed:.0f} s: some wait is not bounded"


@pytest.mark.parametrize("entry", DATA_DIR_ENTRY_POINTS, ids=lambda e: e.name)
def test_unwritable_data_dir_is_one_line(entry: EntryPoint, mistake_env: None, tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    code = lessons.run_in_process(entry.module, *entry.args(UNWRITABLE_FOLDER, tmp_path))
    check_one_line(code, capfd.readouterr().err, r"Cannot create the folder .*-> choose a folder you can write to")


# One process per command module (lesson 08's subcommands share one entry point, so one of them stands for all).
PROCESS_CHECKS = [entry for entry in [*ENTRY_POINTS, *DATA_DIR_ENTRY_POINTS]
                  if not entry.name.startswith("07 ") or entry.name == "07 list"]


def test_each_entry_point_as_a_process(servers: Servers, tmp_path: Path) -> None:
    """One real process per entry point (started together, they share the cores): exit 2 and one line.

    Each gets a different mistake, so the process boundary is crossed by most kinds of message.
    """
    env = lessons.lesson_env(tmp_path, ENCRYPTION_KEY="wWQ1qz3Mpc9ZzIvQJb1vtdLm0kRcZS2vxd0R2qgGm8s=",
                             CHAT_USERS="alice:alice-matrix-token", DB_CONNECT_TIMEOUT=SILENT_TIMEOUT_S)
    # A stride coprime with the number of mistakes spreads the processes over all kinds of mistake.
    cases = [(entry, MISTAKES[number * 7 % len(MISTAKES)]) for number, entry in enumerate(PROCESS_CHECKS)]
    cases[0] = (cases[0][0], MISTAKES[-1])  # lesson 02 x a MySQL URL at PostgreSQL's port: the 65 s hang once
    started = [(entry, mistake, lessons.start(entry.module, *entry.args(
        UNWRITABLE_FOLDER if entry in DATA_DIR_ENTRY_POINTS else mistake.url(servers), tmp_path), env=env))
        for entry, mistake in cases]
    failures = []
    for entry, mistake, process in started:
        _, stderr = process.communicate(timeout=300)
        fix = r"choose a folder you can write to" if entry in DATA_DIR_ENTRY_POINTS else mistake.fix
        try:
            check_one_line(process.returncode, stderr, fix)
        except AssertionError as error:
            failures.append(f"{entry.name} x {mistake.name}: {error}")
    assert not failures, "\n\n".join(failures)
