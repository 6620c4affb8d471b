"""`python -m session_management`: the lesson list and the persistent chat."""

from __future__ import annotations

import subprocess

from tests import lessons
from tests.lessons import REPO_ROOT


def run_cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return lessons.run("session_management", *args, env=env, stdin=stdin)


def test_lists_every_lesson_with_its_command(lesson_env: dict[str, str]) -> None:
    done = run_cli([], lesson_env)
    assert done.returncode == 0, done.stderr
    folders = (REPO_ROOT / "session_management").glob("[0-9][0-9]_*")
    lessons = sorted(folder.name for folder in folders if (folder / "main.py").exists())
    for name in lessons:
        assert f"uv run python -m session_management.{name}.main" in done.stdout
    assert "session_management chat" in done.stdout


def test_chat_remembers_across_processes(lesson_env: dict[str, str], database_url: str) -> None:
    args = ["chat", "--database", database_url, "--session-id", "cli-user"]
    first = run_cli(args, lesson_env, "My name is Ada\nI live in Paris\n/quit\n")
    assert first.returncode == 0, first.stderr
    assert "Nice to meet you, Ada!" in first.stdout

    second = run_cli(args, lesson_env, "What is my name?\n/undo\n/history\n/clear\nWhere do I live?\n")
    assert second.returncode == 0, second.stderr
    assert "(4 stored items)" in second.stdout  # two turns from the first process
    assert "agent> Your name is Ada." in second.stdout
    assert "removed 2 items: user: What is my name?" in second.stdout
    assert "(4 items)" in second.stdout  # /history after /undo
    assert "session cleared" in second.stdout
    assert "agent> I don't know your home town yet" in second.stdout

    other = run_cli(["chat", "--database", database_url, "--session-id", "someone-else"], lesson_env,
                    "What is my name?\n")
    assert "agent> I don't know your name yet" in other.stdout
