"""Each command as a stranger's first command: a fresh copy of the repository, no .data/, no .env, no settings.

Defect this guards against: lesson 02 failed as the README's first command because the SQLite folder did not
exist yet, and the suite never saw it because other tests had created it. Here every command gets a tree of
its own, as a `git clone` would have it, and must exit 0 without a traceback, writing only under `.data/`.
Lessons 01 and 03 are run this way by their transcript tests (tests/test_lesson_01.py, test_lesson_03.py);
chat with its input closed (no /quit) by tests/test_course_cli.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import lessons

COVERED_BY_TRANSCRIPT_TESTS = {"01_sqlite_session", "03_advanced_sqlite_session"}
# Lesson 12 crashes a Patroni primary four times, then Galera nodes (about 2 minutes): its drills run
# in-process in tests/test_lesson_12.py, and its first command without the packages (one line, exit 2) there too.
TOO_SLOW_FOR_A_FIRST_COMMAND = {"12_failover"}


@dataclass(frozen=True)
class FirstCommand:
    name: str
    module: str
    args: tuple[str, ...] = ()
    stdin: str | None = None


def first_commands() -> list[FirstCommand]:
    folders = sorted(p.parent.name for p in (lessons.REPO_ROOT / "session_management").glob("[0-9][0-9]_*/main.py"))
    return [
        *(FirstCommand(name, name) for name in folders
          if name not in COVERED_BY_TRANSCRIPT_TESTS | TOO_SLOW_FOR_A_FIRST_COMMAND),
        FirstCommand("lesson list", "session_management"),
        FirstCommand("chat, /quit", "session_management", ("chat",), "My name is Ada\n/quit\n"),
    ]


COMMANDS = first_commands()


def files_under(root: Path) -> set[str]:
    found = set()
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [s for s in subfolders if s != "__pycache__"]
        found.update(str(Path(folder, name).relative_to(root)) for name in names)
    return found


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    new_files: set[str]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """All first commands, each in its own clean copy, started side by side (they are independent)."""
    env = lessons.stranger_env()
    runs = []
    for command in COMMANDS:
        tree = lessons.clean_copy(tmp_path_factory.mktemp("clone"))
        before = files_under(tree)
        process = subprocess.Popen(
            [lessons.PYTHON, "-m", lessons.module_name(command.module), *command.args], cwd=tree,
            env={**env, "PYTHONPATH": str(tree)}, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
        )
        runs.append((command, tree, before, process))
    results = {}
    for command, tree, before, process in runs:
        stdout, stderr = process.communicate(command.stdin, timeout=600)
        results[command.name] = Outcome(process.returncode, stdout, stderr, files_under(tree) - before)
    yield results


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_first_command_on_a_clean_tree(command: FirstCommand, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[command.name]
    assert outcome.returncode == 0, f"exit {outcome.returncode}\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.stdout.strip(), "printed nothing"
    outside = sorted(name for name in outcome.new_files if not name.startswith(".data/"))
    assert not outside, f"wrote files outside .data/ in the checkout: {outside}"


def test_chat_on_a_clean_tree_remembers(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["chat, /quit"]
    assert "agent> Nice to meet you, Ada!" in outcome.stdout
    assert ".data/sessions.db" in outcome.new_files  # the default database, created where the README says
