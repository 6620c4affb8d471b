"""Lesson 02 runs unchanged on every backend, and its transcript shows what it teaches."""

from __future__ import annotations

from tests.lessons import RunHere


def test_lesson_02_on_every_backend(run_here: RunHere, database_url: str, backend: str) -> None:
    done = run_here("02_sqlalchemy_session", "--database", database_url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr
    out = done.stdout
    from_url, tables, conversation, restart, many, errors = out.split("\n--- ")[1:7]
    assert "agent: Your name is Ada." in from_url
    if backend == "mysql":
        assert "create_tables=True failed as expected" in tables and "VARCHAR requires a length" in tables
    else:
        assert "create_tables=True works on this database" in tables
    assert ("agent: Here is what I know: your name is Ada; your favorite language is Python; you live in London."
            in conversation)
    assert "6. assistant: Here is what I know" in conversation  # six stored items, oldest first
    assert "agent: You live in London." in restart
    assert "50 of 50 users got their own name back." in many
    assert "Checked out connections: 0" in many
    assert "A non-JSON item is refused before anything is written: TypeError" in errors
    assert "History unchanged: 8 items." in errors
    assert "Database errors arrive as SQLAlchemyError subclasses" in errors


def test_lesson_02_rerun_is_deterministic(run_here: RunHere, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The lesson clears its own sessions first, so a second run on the same database prints the same."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'rerun.db'}"
    runs = [run_here("02_sqlalchemy_session", "--database", url)
            for _ in range(2)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout
