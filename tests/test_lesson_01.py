"""Lesson 01 runs as the README says, offline, and its transcript shows memory, isolation and persistence."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import PYTHON, REPO_ROOT


def test_lesson_01_transcript(lesson_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "session_management.01_sqlite_session.main", "--data-dir", str(tmp_path)],
        cwd=REPO_ROOT, env=lesson_env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    sections = out.split("\n--- ")
    without, with_session, isolation, restart, operations = sections[1:6]
    assert "agent: I don't know your name yet" in without
    assert "agent: Your name is Ada." in with_session and "The session now holds 4 items" in with_session
    grace, ada = isolation.split("agent: Your name is ")[1:3]
    assert grace.startswith("Grace.") and ada.startswith("Ada.")
    assert "agent: You live in London." in restart
    assert (tmp_path / "conversations.db").exists()
    assert "get_items(limit=2) -> the latest 2" in operations
    assert "SessionSettings(limit=2) makes that the default: 2 items" in operations
    assert "agent: Your favorite color is green." in operations
    assert "History after the correction: 10 items" in out
    assert "clear_session() -> 0 items" in out
    assert out.rstrip().splitlines()[-3] == "  agent: Your name is Alan."  # Runner.run_sync
    assert "Traceback" not in done.stderr
