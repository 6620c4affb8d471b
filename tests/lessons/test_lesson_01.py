"""Lesson 01 as a stranger's first command (tests/support/first_commands.py): what it prints is its transcript
(tests/course/test_transcripts.py); here, what a transcript cannot show: the file the history survives in."""

from __future__ import annotations

import sqlite3

from tests.support.first_commands import Outcome


def test_the_history_file_is_where_the_readme_says(first_runs: dict[str, Outcome]) -> None:
    outcome = first_runs["01_sqlite_session"]
    assert ".data/lesson01/conversations.db" in outcome.new_files  # the README's default folder
    with sqlite3.connect(outcome.tree / ".data" / "lesson01" / "conversations.db") as stored:
        tables = {row[0] for row in stored.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"agent_sessions", "agent_messages"} <= tables  # the SDK's tables
        # the lesson ends with clear_session() on its one on-disk session: no item left behind
        assert stored.execute("SELECT COUNT(*) FROM agent_messages").fetchone() == (0,)
