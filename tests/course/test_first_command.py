"""Each command as a stranger's first command (tests/support/first_commands.py): it exits 0 without a traceback,
writes only under `.data/` in the checkout, and leaves nothing in its temporary folder. What each lesson printed
is compared whole with its transcript by tests/course/test_transcripts.py; chat with its input closed (no /quit) is
tests/course/test_course_cli.py's.
"""

from __future__ import annotations

import pytest

from tests.support.first_commands import COMMANDS, FirstCommand, Outcome


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_first_command_on_a_clean_tree(command: FirstCommand, first_runs: dict[str, Outcome]) -> None:
    outcome = first_runs[command.name]
    assert outcome.returncode == 0, f"exit {outcome.returncode}\n{outcome.output}"
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.output.strip(), "printed nothing"
    outside = sorted(name for name in outcome.new_files if not name.startswith(".data/"))
    assert not outside, f"wrote files outside .data/ in the checkout: {outside}"
    # e.g. lesson 10's throwaway Redis, lesson 08's export folder: removed when the command ends
    assert not outcome.left_in_tmpdir, f"left files in its temporary folder: {sorted(outcome.left_in_tmpdir)}"


def test_chat_on_a_clean_tree_remembers(first_runs: dict[str, Outcome]) -> None:
    outcome = first_runs["chat, /quit"]
    assert "agent> Nice to meet you, Ada!" in outcome.output
    assert ".data/sessions.db" in outcome.new_files  # the default database, created where the README says
