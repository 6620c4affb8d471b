"""Running the course's commands as a reader does: a subprocess, or the same entry point in-process.

* :func:`run` starts ``python -m <module> ...`` (a lesson, ``session_management`` itself, Alembic) and returns the
  finished process. Every test that needs the process boundary (a first command, an exit status, what a reader
  sees on the terminal) goes through it.
* :func:`run_in_process` runs a module's ``if __name__ == "__main__":`` block in this process, with ``sys.argv``
  set, and returns its exit status: the same code path as the command line, without paying ~6 s of imports per
  run. The error-path matrix uses it.
* :func:`run_here` is :func:`run` in this process (the environment swapped in, the output captured): for the
  tests that check what a lesson does on each backend rather than how a process starts or ends. Starting a
  process costs ~6 s here, most of it ``import agents``; the first-command tests keep the process boundary.
* :func:`clean_copy` makes a tree like a fresh ``git clone`` (the tracked and new files, no ``.data/``, no
  ``.env``), for the "first command on a clean tree" tests.
"""

from __future__ import annotations

import io
import os
import runpy
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Variables a developer's shell or .env may hold that would change what a lesson does; a stranger has none.
READER_SETTINGS = ("DATABASE_URL", "SQLITE_URL", "POSTGRES_URL", "MYSQL_URL", "ENCRYPTION_KEY", "CHAT_USERS",
                   "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT", "DB_CONNECT_TIMEOUT")


def module_name(lesson: str) -> str:
    """``"02_sqlalchemy_session"`` -> ``"session_management.02_sqlalchemy_session.main"``; full names pass."""
    if lesson.startswith(("session_management", "alembic", "tests.")):
        return lesson
    return f"session_management.{lesson}" + ("" if lesson.endswith((".main", ".benchmark")) else ".main")


def lesson_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """An environment for a lesson subprocess: offline, no reader settings, the default SQLite file in *data_dir*.

    Variables are set to empty rather than removed where a `.env` could otherwise fill them in (python-dotenv
    never overrides a variable that is set).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k not in READER_SETTINGS}
    env.update({"OPENAI_API_KEY": "", "DATABASE_URL": "", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT),
                "SQLITE_URL": f"sqlite+aiosqlite:///{data_dir / 'lesson.db'}"})
    env.update(overrides)
    return env


def stranger_env() -> dict[str, str]:
    """The environment of someone who just cloned the repository: none of the course's variables at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k not in READER_SETTINGS
           and k not in ("PYTHONPATH", "REDIS_URL", "REDIS_CLUSTER_URL")}  # lesson 10 starts its own Redis then
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(lesson: str, *args: str, env: dict[str, str], cwd: Path = REPO_ROOT, stdin: str | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m <lesson> *args`` in *cwd* (the checkout, or a clean copy); stdin closed unless given."""
    env = {**env, "PYTHONPATH": str(cwd)}  # the tree under test, not whichever checkout the venv points at
    return subprocess.run(
        [PYTHON, "-m", module_name(lesson), *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
        timeout=timeout, **({} if stdin is not None else {"stdin": subprocess.DEVNULL}),
    )


def start(lesson: str, *args: str, env: dict[str, str], cwd: Path = REPO_ROOT) -> subprocess.Popen[str]:
    """Like :func:`run`, but return at once: several commands can then run side by side."""
    env = {**env, "PYTHONPATH": str(cwd)}
    return subprocess.Popen([PYTHON, "-m", module_name(lesson), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_in_process(lesson: str, *args: str) -> int:
    """Run *lesson*'s ``__main__`` block here with ``sys.argv`` set; return its exit status (0 if it returns)."""
    module = module_name(lesson)
    saved = sys.argv
    sys.argv = [module, *args]
    try:
        with warnings.catch_warnings():  # another test imported the module already: harmless, as runpy reruns it
            warnings.filterwarnings("ignore", "'.*' found in sys.modules after import of package", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved
    return 0


@dataclass(frozen=True)
class Ran:
    """What :func:`run_here` saw: the fields of a finished `subprocess.CompletedProcess` that tests read."""

    returncode: int
    stdout: str
    stderr: str


def run_here(lesson: str, *args: str, env: dict[str, str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch, cwd: Path = REPO_ROOT, stdin: str = "", merged: bool = False) -> Ran:
    """Like :func:`run`, in this process: *env* replaces the environment and *cwd* the working directory for the
    run (both restored after the test), *stdin* is what it reads, and what it printed is returned, not shown.
    With *merged*, stderr goes where stdout goes, so ``stdout`` is both, interleaved as a terminal shows them."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()  # only this run's output
    stderr = sys.stderr
    if merged:
        sys.stderr = sys.stdout
    try:
        code = run_in_process(lesson, *args)
    finally:
        sys.stderr = stderr
    out, err = capsys.readouterr()
    return Ran(code, out, err)


class RunHere(Protocol):
    """The ``run_here`` fixture (tests/conftest.py): :func:`run_here` with the test's lesson environment."""

    def __call__(self, lesson: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT,
                 stdin: str = "") -> Ran: ...


def tree_files(root: Path = REPO_ROOT) -> list[str]:
    """What a clone of *root* would hold: tracked files plus new, not ignored ones (work not yet committed)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
    return sorted({name for name in listing.split("\0") if name and (root / name).is_file()})


def clean_copy(destination: Path) -> Path:
    """Copy the checkout as a fresh clone would have it (no .data/, no .env, no caches) to *destination*."""
    for name in tree_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    return destination


def one_line_error(stderr: str) -> str:
    """The single ``error: ...`` line a failed command printed; fails the test if it printed anything else."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("error: "), stderr
    return lines[0]
