"""Fixtures: a real database per backend (SQLite always; PostgreSQL and MySQL when reachable).

A backend that is not reachable is skipped with the reason, unless ``REQUIRE_ALL_BACKENDS=1`` (CI), where
that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agents import set_tracing_disabled
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_engine
from tests.backends import ALL_BACKENDS, Availability, drop_all_tables, probe_backends, require_all_backends
from tests.backends import reset_database as _reset_database

REPO_ROOT = Path(__file__).resolve().parents[1]
# In-process runs use the offline model; nothing may try to upload traces.
set_tracing_disabled(True)
_availability: dict[str, Availability] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _availability.update(probe_backends())


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = ["database backends: sqlite (always)"]
    for backend, status in _availability.items():
        state = "AVAILABLE" if status.url else "UNAVAILABLE"
        lines.append(f"  {backend}: {state} - {status.reason}")
    if require_all_backends():
        lines.append("  REQUIRE_ALL_BACKENDS=1: an unavailable backend fails its tests")
    return lines


def server_url(backend: str) -> str:
    """The test database URL for *backend*, or skip (fail under REQUIRE_ALL_BACKENDS=1)."""
    status = _availability.get(backend)
    if status is None:
        status = probe_backends()[backend]
        _availability[backend] = status
    if status.url is None:
        message = f"{backend} unavailable: {status.reason}"
        if require_all_backends():
            pytest.fail(f"{message} (REQUIRE_ALL_BACKENDS=1)", pytrace=False)
        pytest.skip(message)
    return status.url


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> str:
    """A URL to an empty database on *backend* (a fresh SQLite file, or the emptied test database)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    url = server_url(backend)
    asyncio.run(_reset_database(url))
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def lesson_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running a lesson as a subprocess: offline, no .env surprises, data in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    # Set-but-empty, so a developer's .env cannot switch the run online (python-dotenv never overrides).
    env["OPENAI_API_KEY"] = ""
    env["DATABASE_URL"] = ""
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["SQLITE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'lesson.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable

__all__ = ["PYTHON", "REPO_ROOT", "drop_all_tables"]
