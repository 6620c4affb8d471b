"""`python -m session_management`: the lesson list and the persistent chat."""

from __future__ import annotations

import subprocess

from tests.support import lessons
from tests.support.lessons import REPO_ROOT, RunHere


def test_lists_every_lesson_with_its_command(run_here: RunHere) -> None:
    done = run_here("session_management")  # as a process: tests/course/test_first_command.py ("lesson list")
    assert done.returncode == 0, done.stderr
    folders = (REPO_ROOT / "session_management").glob("[0-9][0-9]_*")
    lessons = sorted(folder.name for folder in folders if (folder / "main.py").exists())
    for name in lessons:
        assert f"uv run python -m session_management.{name}.main" in done.stdout
    assert "session_management chat" in done.stdout


def test_chat_remembers_across_processes(run_here: RunHere, lesson_env: dict[str, str], database_url: str,
                                         backend: str) -> None:
    """On SQLite, two real processes one after another (the file is what carries the memory); on the servers,
    two runs in this process, each with an engine of its own, so the memory can only come from the database.
    The third run, another user who must see nothing, is in this process everywhere."""

    def chat(session_id: str, stdin: str) -> lessons.Ran | subprocess.CompletedProcess[str]:
        args = ["chat", "--database", database_url, "--session-id", session_id]
        if backend == "sqlite":
            return lessons.run("session_management", *args, env=lesson_env, stdin=stdin)
        return run_here("session_management", *args, stdin=stdin)

    first = chat("cli-user", "My name is Ada\nI live in Paris\n/quit\n")
    assert first.returncode == 0, first.stderr
    assert "Nice to meet you, Ada!" in first.stdout

    second = chat("cli-user", "What is my name?\n/undo\n/history\n/clear\nWhere do I live?\n")
    assert second.returncode == 0, second.stderr
    assert "(4 stored items)" in second.stdout  # two turns from the first process
    assert "agent> Your name is Ada." in second.stdout
    assert "removed 2 items: user: What is my name?" in second.stdout
    assert "(4 items)" in second.stdout  # /history after /undo
    assert "session cleared" in second.stdout
    assert "agent> I don't know your home town yet" in second.stdout

    other = run_here("session_management", "chat", "--database", database_url, "--session-id", "someone-else",
                     stdin="What is my name?\n")
    assert "agent> I don't know your name yet" in other.stdout
