"""Lesson 07's README, command by command, as a reader types it after lessons 02-06 on the same database.

The reader has ``DATABASE_URL`` set to a PostgreSQL or MySQL database and has run the earlier lessons' first
command on it (02, 04 and 06 write there: the SDK's tables made by ``create_tables=True`` or the course's helper,
encrypted rows, lesson 06's tables with rows; 01, 03 and 05 do not read ``DATABASE_URL``). Then every command of
lesson 07's README runs, in order, and each must end with exit status 0. In-process: the same entry points as
the command line, without starting Python per command.
"""

from __future__ import annotations

import io
import logging.config
import re
import shlex
from pathlib import Path

import pytest
from alembic.config import CommandLine, Config

from tests.support.lessons import REPO_ROOT, RunHere

README = REPO_ROOT / "session_management/07_schema_migrations/README.md"
EARLIER = ("02_sqlalchemy_session", "04_encrypted_session", "06_web_service")


def bash_commands(readme: Path, mentioning: str) -> list[list[str]]:
    """The ``uv run ...`` lines of the README's bash blocks that mention *mentioning*, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S)
    return [shlex.split(line, comments=True)[2:] for block in blocks if mentioning in block
            for line in block.splitlines() if line.startswith("uv run ")]


def first_command(lesson: str) -> list[str]:
    """A lesson's default run as its README shows it (``python -m ....main``, no options), without ``uv run``.
    Not merely its first command: lesson 06's first one serves until Ctrl+C."""
    commands = bash_commands(REPO_ROOT / "session_management" / lesson / "README.md", lesson)
    return next(argv for argv in commands if argv[:2] == ["python", "-m"] and len(argv) == 3)


def run_command(argv: list[str], run_here: RunHere, env: dict[str, str],
                capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m MODULE ARGS`` or ``alembic ARGS``, in this process; exit status and what it printed."""
    if argv[:2] == ["python", "-m"]:
        done = run_here(argv[2], *argv[3:], env=env)
        return done.returncode, done.stdout + done.stderr
    return alembic_in_process(argv[1:], capsys)


def alembic_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``alembic ARGS`` as typed, in this process: exit status and what it printed."""
    capsys.readouterr()
    command_line = CommandLine(prog="alembic")
    options = command_line.parser.parse_args(args)
    output = io.StringIO()  # Config's default stdout is the sys.stdout of import time, which capsys does not see
    try:
        toml, ini = command_line._inis_from_config(options)  # as CommandLine.main, with our stdout
        config = Config(file_=ini, toml_file=toml, ini_section=options.name, cmd_opts=options, stdout=output)
        command_line.run_cmd(config, options)
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    captured = capsys.readouterr()
    return code, output.getvalue() + captured.out + captured.err


def check_transcript(stdout: str) -> None:
    """What lesson 07's own run must show, section by section."""
    sections = {s.split(".")[0]: s for s in stdout.split("\n--- ")[1:]}
    assert "tables before: []" in sections["1"] and "alembic current -> 0003 (head)" in sections["1"]
    assert "agent: Your name is Ada." in sections["2"] and "4 items stored" in sections["2"]
    assert "alembic downgrade -1 -> current 0002" in sections["3"]
    assert "the conversation still has 4 items" in sections["3"] and "agent: You live in London." in sections["3"]
    assert "alembic check -> No new upgrade operations detected." in sections["4"]
    assert "alembic check fails: new upgrade operations detected: add_index idx_conversations_owner_updated" \
        in sections["4"]
    assert "current -> (none)" in sections["5"] and "upgrade head -> current 0003 (head): 0001 adopted" in sections["5"]
    assert "old data kept: [{'role': 'user', 'content': 'old data'}]" in sections["5"]
    assert "alembic check -> No new upgrade operations detected." in sections["5"]


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_the_readme_commands_succeed_after_lessons_02_to_06(
        database_url: str, run_here: RunHere, lesson_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**lesson_env, "DATABASE_URL": database_url}
    monkeypatch.setattr(logging.config, "fileConfig", lambda *args, **kwargs: None)  # the ini's handlers: not here
    for lesson in EARLIER:
        code, out = run_command(first_command(lesson), run_here, env, capsys)
        assert code == 0, f"lesson {lesson}: {out}"
    commands = bash_commands(README, "07_schema_migrations")
    assert any("drop_data=yes" in argv for argv in commands)  # the downgrade the README shows is the one that works
    printed = []
    for argv in commands:
        code, out = run_command(argv, run_here, env, capsys)  # run_here left env in os.environ for Alembic too
        assert code == 0, f"{shlex.join(argv)} exited {code}:\n{out}"
        printed.append(out)
    check_transcript(printed[0])  # the lesson itself, on its scratch databases beside the reader's
    assert printed[-1].strip().endswith("No new upgrade operations detected.")
