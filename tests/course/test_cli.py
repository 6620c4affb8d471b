"""The shared entry runner every command ends through: one line and exit 2 for a mistake, 130 for Ctrl+C."""

from __future__ import annotations

import pytest

from session_management.common import CourseError, run_main


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
