"""Lesson 01 runs as the README says, offline, and its transcript shows memory, isolation and persistence."""

from __future__ import annotations

from pathlib import Path

from tests import lessons


def test_lesson_01_transcript(tmp_path: Path) -> None:
    """Run as a stranger's first command: a clean copy of the repository, no .data/, no .env, no settings."""
    tree = lessons.clean_copy(tmp_path)
    done = lessons.run("01_sqlite_session", env=lessons.stranger_env(), cwd=tree)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    sections = out.split("\n--- ")
    without, with_session, isolation, restart, operations = sections[1:6]
    assert "agent: I don't know your name yet" in without
    assert "agent: Your name is Ada." in with_session and "The session now holds 4 items" in with_session
    grace, ada = isolation.split("agent: Your name is ")[1:3]
    assert grace.startswith("Grace.") and ada.startswith("Ada.")
    assert "agent: You live in London." in restart
    assert (tree / ".data" / "lesson01" / "conversations.db").exists()  # the README's default folder
    assert "get_items(limit=2) -> the latest 2" in operations
    assert "SessionSettings(limit=2) makes that the default: 2 items" in operations
    assert "agent: Your favorite color is green." in operations
    assert "History after the correction: 10 items" in out
    assert "clear_session() -> 0 items" in out
    assert out.rstrip().splitlines()[-3] == "  agent: Your name is Alan."  # Runner.run_sync
    assert "Traceback" not in done.stderr
