"""Fixtures: a real database per backend (SQLite always; PostgreSQL and MySQL when reachable).

A backend that is not reachable is skipped with the reason, unless ``REQUIRE_ALL_BACKENDS=1`` (CI), where
that is a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from agents import set_tracing_disabled
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_engine
from tests.support import first_commands, lessons, redis_stores
from tests.support.backends import (
    ALL_BACKENDS,
    AVAILABILITY,
    probe_backends,
    require_all_backends,
    server_url,
)
from tests.support.backends import reset_database as _reset_database

# garbage: each test's garbage collected at its teardown, none while a report is written; pytester: its tests.
pytest_plugins = ["tests.support.garbage", "pytester"]

# In-process runs use the offline model; nothing may try to upload traces.
set_tracing_disabled(True)


def pytest_sessionstart(session: pytest.Session) -> None:
    probe_backends()  # fills tests.support.backends.AVAILABILITY


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = ["database backends: sqlite (always)"]
    for backend, status in AVAILABILITY.items():
        state = "AVAILABLE" if status.url else "UNAVAILABLE"
        lines.append(f"  {backend}: {state} - {status.reason}")
    if require_all_backends():
        lines.append("  REQUIRE_ALL_BACKENDS=1: an unavailable backend fails its tests")
    return lines


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL to an empty database on *backend* (a fresh SQLite file, the emptied test database, or an emptied
    Redis: ``redis`` / ``redis-cluster``, for the contract suite's Redis stores)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    if backend in redis_stores.REDIS_BACKENDS:
        url = request.getfixturevalue("redis_servers")(backend)
        asyncio.run(redis_stores.empty_redis(url, backend == "redis-cluster"))
        return url
    url = server_url(backend)
    asyncio.run(_reset_database(url))
    return url


@pytest.fixture(scope="session")
def redis_servers() -> Iterator[Callable[[str], str]]:
    """backend -> URL of the Redis the run uses for it; throwaway servers start on first use, stop at the end."""
    urls: dict[str, str] = {}
    with ExitStack() as stack:
        yield lambda backend: urls.get(backend) or urls.setdefault(backend, redis_stores.contract_url(backend, stack))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def first_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, first_commands.Outcome]:
    """Every command run once as a stranger's first command, side by side (tests/support/first_commands.py)."""
    return first_commands.run_all(tmp_path_factory)


@pytest.fixture
def lesson_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running a lesson as a subprocess: offline, no .env surprises, data in tmp."""
    return lessons.lesson_env(tmp_path)


@pytest.fixture
def run_here(lesson_env: dict[str, str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> lessons.RunHere:
    """A lesson run in this process with *lesson_env* (or the given env), its output returned (support/lessons.py)."""

    def run(lesson: str, *args: str, env: dict[str, str] | None = None, cwd: Path = lessons.REPO_ROOT,
            stdin: str = "") -> lessons.Ran:
        return lessons.run_here(lesson, *args, env=lesson_env if env is None else env, capsys=capsys,
                                monkeypatch=monkeypatch, cwd=cwd, stdin=stdin)

    return run

