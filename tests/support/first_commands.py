"""Each command as a stranger's first command: a fresh copy of the repository, no .data/, no .env, no settings.

Defect this guards against: lesson 02 failed as the README's first command because the SQLite folder did not
exist yet, and the suite never saw it because other tests had created it. Here every command gets a tree of
its own, as a `git clone` would have it, and a temporary folder of its own (``TMPDIR``), so what it leaves
behind in either can be told.

The runs are made once per test session, side by side (they are independent), by the ``first_runs`` fixture
(tests/conftest.py): course/test_first_command.py checks how each ends, course/test_transcripts.py compares what
each lesson printed with its transcript, and a lesson's own tests check the files it wrote.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import lessons


@dataclass(frozen=True)
class FirstCommand:
    name: str
    module: str
    args: tuple[str, ...] = ()
    stdin: str | None = None


# Lesson 12 crashes a Patroni primary four times, then Galera nodes (about 2 minutes): its drills run
# in-process in lessons/test_lesson_12.py, and its first command without the packages (one line, exit 2) there too.
TOO_SLOW_FOR_A_FIRST_COMMAND = {"12_failover"}


def lesson_folders() -> list[str]:
    folders = (p.parent.name for p in (lessons.REPO_ROOT / "session_management").glob("[0-9][0-9]_*/main.py"))
    return sorted(name for name in folders if name not in TOO_SLOW_FOR_A_FIRST_COMMAND)


def first_commands() -> list[FirstCommand]:
    return [
        *(FirstCommand(name, name) for name in lesson_folders()),
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
    output: str  # stdout and stderr as a terminal shows them, interleaved
    new_files: set[str]  # written in the tree, relative to it
    tree: Path
    tmpdir: Path  # the command's TMPDIR
    left_in_tmpdir: set[str]


def run_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """All first commands, each in its own clean copy with its own TMPDIR, started side by side."""
    env = lessons.stranger_env()
    runs = []
    for command in COMMANDS:
        tree = lessons.clean_copy(tmp_path_factory.mktemp("clone"))
        tmpdir = tmp_path_factory.mktemp("tmpdir")
        before = files_under(tree)
        process = subprocess.Popen(
            [lessons.PYTHON, "-m", lessons.module_name(command.module), *command.args], cwd=tree,
            env={**env, "PYTHONPATH": str(tree), "TMPDIR": str(tmpdir)}, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
        )
        runs.append((command, tree, tmpdir, before, process))
    results = {}
    for command, tree, tmpdir, before, process in runs:
        output, _ = process.communicate(command.stdin, timeout=600)
        results[command.name] = Outcome(process.returncode, output, files_under(tree) - before, tree, tmpdir,
                                        files_under(tmpdir))
    return results
