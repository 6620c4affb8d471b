"""Lesson 03: AdvancedSQLiteSession. What it prints is its transcript (tests/course/test_transcripts.py); here, what a
transcript cannot show: that its numbers add up, its file, a rerun, and the README's method names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from agents.extensions.memory import AdvancedSQLiteSession

from tests.support import lessons
from tests.support.first_commands import Outcome
from tests.support.lessons import REPO_ROOT, RunHere
from tests.support.readme_api import missing_methods, named_methods

LESSON = REPO_ROOT / "session_management" / "03_advanced_sqlite_session"


def test_the_usage_it_prints_adds_up(first_runs: dict[str, Outcome]) -> None:
    """The transcript (tests/course/test_transcripts.py) holds the numbers; here, that they add up as the SDK says: the
    session's usage is the sum of its turns', and the tool turn took two model requests. (An update of the
    transcript takes whatever numbers are printed; this does not.)"""
    outcome = first_runs["03_advanced_sqlite_session"]
    sections = {s.split(".")[0]: s for s in outcome.output.split("\n--- ")[1:]}
    usage = ast.literal_eval(re.search(r"get_session_usage\(\): (\{.*\})", sections["3"]).group(1))
    rows = [tuple(int(v) for v in line.split()) for line in sections["3"].splitlines()
            if re.fullmatch(r"\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+", line)]
    assert [row[0] for row in rows] == [1, 2, 3]
    assert usage["total_turns"] == 3
    assert all(row[2] > 0 and row[3] > 0 and row[4] == row[2] + row[3] for row in rows)
    for key, column in (("requests", 1), ("input_tokens", 2), ("output_tokens", 3), ("total_tokens", 4)):
        assert usage[key] == sum(row[column] for row in rows), key  # the session total is the sum of its turns
    assert rows[1][1] == 2  # the tool turn took two model requests: the call, then the answer
    assert ".data/lesson03/advanced.db" in outcome.new_files  # the README's default folder


def test_rerun_gives_the_same_transcript(run_here: RunHere, tmp_path: Path) -> None:
    """The second run on the same file prints what the first did (in this process, the file in tmp_path)."""
    runs = [run_here("03_advanced_sqlite_session", "--data-dir", str(tmp_path), env=lessons.stranger_env(),
                     cwd=tmp_path) for _ in range(2)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout and "branches:" in runs[0].stdout


def test_readme_names_only_real_methods() -> None:
    readme = LESSON / "README.md"
    named = named_methods(readme)
    assert {"store_run_usage", "create_branch_from_turn", "get_turn_usage", "switch_to_branch"} <= named
    assert missing_methods(readme, AdvancedSQLiteSession) == set()
    # and the check itself can fail:
    assert missing_methods(readme, object) == named
