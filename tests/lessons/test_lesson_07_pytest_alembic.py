"""Lesson 07's migrations under pytest-alembic, the standard test suite for Alembic projects, on every backend.

pytest-alembic hands its engine to env.py through ``config.attributes["connection"]``, the documented way to run
migrations from tests or from an application; env.py must use it (it used to open an engine of its own).

Its four default tests run on SQLite, PostgreSQL and MariaDB. Of its two experimental tests:

* ``test_downgrade_leaves_no_trace`` runs on SQLite and PostgreSQL. It upgrades and downgrades inside a
  savepoint that it rolls back; MySQL/MariaDB commit every DDL statement at once (no transactional DDL), so
  the rollback cannot undo the revision and the test cannot work there.
* ``test_all_models_register_on_metadata`` runs nowhere: it looks for declarative ORM models imported by
  env.py (from an ``alembic.ini`` in the working directory); the course's target metadata is Core tables
  built per connection, so there is nothing for it to compare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic.config import Config as AlembicConfig
from pytest_alembic import runner
from pytest_alembic import tests as builtin  # a module: its test_* functions are not collected here a second time
from pytest_alembic.config import Config
from pytest_alembic.runner import MigrationContext
from pytest_alembic.tests import experimental
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

INI = "session_management/07_schema_migrations/alembic.ini"


@pytest.fixture
def alembic_runner(database_url: str) -> Iterator[MigrationContext]:
    config = AlembicConfig(INI)
    config.attributes["quiet"] = True  # no logging configuration from the ini inside the test process
    # NullPool: each Alembic command runs its own event loop, and a pooled connection belongs to the loop
    # that opened it.
    engine = create_async_engine(database_url, poolclass=NullPool)
    with runner(config=Config.from_raw_config(config), engine=engine) as context:
        yield context
    asyncio.run(engine.dispose())


DEFAULT_TESTS: list[Callable[[MigrationContext], Any]] = [
    builtin.test_single_head_revision, builtin.test_upgrade, builtin.test_model_definitions_match_ddl,
    builtin.test_up_down_consistency]


@pytest.mark.parametrize("check", DEFAULT_TESTS, ids=lambda check: check.__name__)
def test_pytest_alembic_default(alembic_runner: MigrationContext, check: Callable[[MigrationContext], Any]) -> None:
    check(alembic_runner)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_pytest_alembic_downgrade_leaves_no_trace(alembic_runner: MigrationContext) -> None:
    experimental.test_downgrade_leaves_no_trace(alembic_runner)
