"""The shared entry runner every command ends through: one line and exit 2 for a mistake, 130 for Ctrl+C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from session_management.common import CourseError, run_main
from tests.support.lessons import REPO_ROOT


async def fails() -> None:
    raise CourseError("The thing is broken\nin two lines.", "fix it\nlike this")


async def interrupted() -> None:
    raise KeyboardInterrupt


def test_a_course_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_main(fails)
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == "error: The thing is broken in two lines. -> fix it like this\n"
    assert captured.out == ""


def test_ctrl_c_is_quiet_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_main(interrupted)
    assert done.value.code == 130
    assert capsys.readouterr().err == ""


def test_success_returns_the_status() -> None:
    async def ok() -> None:
        return None

    assert run_main(ok) == 0
    assert run_main(lambda: 3) == 3
    assert run_main(lambda: "not a status") == 0


def test_other_errors_are_not_hidden() -> None:
    """Only expected mistakes become one line; a bug keeps its traceback."""
    def bug() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_main(bug)


SLEEPER = """
import asyncio, sys
from pathlib import Path
from session_management.common import run_lesson

async def main(marker: str) -> None:
    Path(marker).write_text("started")
    try:
        await asyncio.sleep(60)
    finally:  # what a with-block's exit does: lesson 12 removes its throwaway cluster here
        Path(marker).write_text("cleaned up")

run_lesson(main, sys.argv[1])
"""


def test_sigterm_unwinds_like_ctrl_c_and_exits_143(tmp_path: Path) -> None:
    """A process boundary is the point: SIGTERM (a timeout, kill) reaches a running lesson, its finally/with
    blocks run, and it ends quietly with 143 (Python's default would end it on the spot, cleanup skipped)."""
    marker = tmp_path / "marker"
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, str(marker)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.read_text() == "started"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    assert err == ""
    assert marker.read_text() == "cleaned up"
