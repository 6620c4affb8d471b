"""Lesson 07's "Alembic in your own project", done as the README says in a temporary project outside the checkout:
``alembic init -t async``, the README's ``models.py`` and ``env.py`` lines, the first revision drafted by
``--autogenerate``, ``upgrade head``, ``check``; then the SDK works on the tables with ``create_tables=False``."""

from __future__ import annotations

import asyncio
import logging.config
import re
import shlex
import sys
from pathlib import Path

import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.ext.asyncio import create_async_engine

from tests.lessons.test_lesson_07_reader import alembic_in_process
from tests.support.lessons import REPO_ROOT

README = REPO_ROOT / "session_management/07_schema_migrations/README.md"


def own_project_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Alembic in your own project", 1)[1].split("\n## ", 1)[0]


def fenced(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


async def sdk_round_trip(url: str) -> list[dict[str, str]]:
    engine = create_async_engine(url)
    try:
        session = SQLAlchemySession("own-project", engine=engine, create_tables=False)
        await session.add_items([{"role": "user", "content": "stored in migrated tables"}])
        return await session.get_items()  # type: ignore[return-value]
    finally:
        await engine.dispose()


def test_alembic_in_your_own_project_as_the_readme_says(
        database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    section = own_project_section()
    [models] = fenced(section, "python")
    [env_lines] = fenced(section, "text")
    project = tmp_path / "app"
    project.mkdir()
    assert not project.resolve().is_relative_to(REPO_ROOT)
    monkeypatch.chdir(project)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(logging.config, "fileConfig", lambda *args, **kwargs: None)  # the ini's handlers: not here
    monkeypatch.delitem(sys.modules, "models", raising=False)
    monkeypatch.syspath_prepend(str(project))  # what `prepend_sys_path = .` in the generated ini does for a CLI run
    (project / "models.py").write_text(models, encoding="utf-8")

    commands = [shlex.split(line)[2:] for block in fenced(section, "bash") for line in block.splitlines()
                if line.startswith("uv run alembic ")]  # `uv add alembic`: installed here already
    assert commands[0][:2] == ["alembic", "init"], commands
    code, out = alembic_in_process(commands[0][1:], capsys)
    assert code == 0, out
    env_py = project / "migrations" / "env.py"
    generated = env_py.read_text(encoding="utf-8")
    assert generated.count("target_metadata = None\n") == 1
    env_py.write_text(generated.replace("target_metadata = None\n", env_lines), encoding="utf-8")

    printed = []
    for argv in commands[1:]:
        code, out = alembic_in_process(argv[1:], capsys)
        assert code == 0, f"alembic {' '.join(argv[1:])}: {out}"
        printed.append(out)
    versions = list((project / "migrations" / "versions").glob("*.py"))
    assert len(versions) == 1 and "op.create_table('agent_sessions'" in versions[0].read_text(encoding="utf-8")
    assert printed[-1].strip().endswith("No new upgrade operations detected.")
    assert asyncio.run(sdk_round_trip(database_url)) == [{"role": "user", "content": "stored in migrated tables"}]
