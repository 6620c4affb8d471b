"""Lesson 03: AdvancedSQLiteSession, offline, with usage, queries and branches asserted from the transcript."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from agents.extensions.memory import AdvancedSQLiteSession

from tests import lessons
from tests.lessons import REPO_ROOT, RunHere
from tests.readme_api import missing_methods, named_methods

LESSON = REPO_ROOT / "session_management" / "03_advanced_sqlite_session"


def run_lesson(tree: Path) -> str:
    """The lesson as a stranger's first command in *tree* (a clean copy: no .data/, no .env, no settings)."""
    done = lessons.run("03_advanced_sqlite_session", env=lessons.stranger_env(), cwd=tree)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_transcript(tmp_path: Path) -> None:
    out = run_lesson(lessons.clean_copy(tmp_path))
    sections = {s.split(".")[0]: s for s in out.split("\n--- ")[1:]}
    assert "agent: get_weather says: Sunny and 21 C in Lisbon." in sections["2"]

    usage = ast.literal_eval(re.search(r"get_session_usage\(\): (\{.*\})", sections["3"]).group(1))
    rows = [tuple(int(v) for v in line.split()) for line in sections["3"].splitlines()
            if re.fullmatch(r"\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+", line)]
    assert [row[0] for row in rows] == [1, 2, 3]
    assert usage["total_turns"] == 3
    assert all(row[2] > 0 and row[3] > 0 and row[4] == row[2] + row[3] for row in rows)
    for key, column in (("requests", 1), ("input_tokens", 2), ("output_tokens", 3), ("total_tokens", 4)):
        assert usage[key] == sum(row[column] for row in rows), key  # the session total is the sum of its turns
    assert rows[1][1] == 2  # the tool turn took two model requests: the call, then the answer
    assert "get_tool_usage(): [('get_weather', 1, 2)]" in sections["3"]

    assert "find_turns_by_content('weather') -> turns [2]" in sections["4"]
    assert "turn 2: user, function_call(get_weather), function_call_output, assistant" in sections["4"]

    table = [line for line in sections["5"].splitlines() if "|" in line and "---" not in line]
    main_side = [line.split("|")[0].strip() for line in table[1:]]
    branch_side = [line.split("|")[1].strip() for line in table[1:]]
    assert main_side[:6] == branch_side[:6]  # the shared history before turn 3
    assert main_side[6] == "user: What is my favourite colour?"
    assert branch_side[6] == "user: My favorite color is teal."
    assert "your favorite color is teal" in sections["5"]
    assert main_side != branch_side

    assert "agent: Your name is Ada." in sections["6"]  # main went on where it was
    assert "tool usage on 'weather-elsewhere': [('get_weather', 1, 2)]" in sections["6"]
    assert "after delete_branch: ['main', 'rephrased']" in sections["6"]
    assert "branches: ['main', 'rephrased']; main holds 10 items" in sections["7"]
    assert (tmp_path / ".data" / "lesson03" / "advanced.db").exists()  # the README's default folder


def test_rerun_gives_the_same_transcript(run_here: RunHere, tmp_path: Path) -> None:
    """In-process (the first run as a process is test_transcript's): the second run prints what the first did."""
    runs = [run_here("03_advanced_sqlite_session", env=lessons.stranger_env(), cwd=tmp_path) for _ in range(2)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout and "branches:" in runs[0].stdout


def test_readme_names_only_real_methods() -> None:
    readme = LESSON / "README.md"
    named = named_methods(readme)
    assert {"store_run_usage", "create_branch_from_turn", "get_turn_usage", "switch_to_branch"} <= named
    assert missing_methods(readme, AdvancedSQLiteSession) == set()
    # and the check itself can fail:
    assert missing_methods(readme, object) == named
