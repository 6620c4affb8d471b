"""Each lesson prints its transcript (support/transcripts.py), whole: the default run, and a backend lesson's run on
PostgreSQL and MySQL. ``UPDATE_TRANSCRIPTS=1`` rewrites the files instead (CONTRIBUTING.md).

The default run is the first-command run (tests/support/first_commands.py): a process on a clean copy, made once for
the session, so this test adds no run of its own; the server backends are run in this process, as the lessons'
own tests ran them before. What a transcript cannot show (rows, files, exit statuses of mistakes) stays in
the lessons' tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support import lessons, readme_samples, transcripts
from tests.support.first_commands import Outcome, lesson_folders
from tests.support.transcripts import ANY_LINES, Recorded


@pytest.fixture(scope="module", autouse=True)
def rewrite_in_update_mode() -> Iterator[None]:
    yield
    if transcripts.update_mode():
        transcripts.write_updates()


@pytest.mark.parametrize(("lesson", "backend"), [
    pytest.param(lesson, backend, id=f"{lesson}-{backend}" if backend else lesson)
    for lesson, backend in transcripts.cases()])
def test_transcript(lesson: str, backend: str | None, first_runs: dict[str, Outcome], request: pytest.FixtureRequest,
                    lesson_env: dict[str, str], capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if backend in (None, "sqlite"):
        outcome = first_runs[lesson]
        code, output, roots = outcome.returncode, outcome.output, (str(outcome.tree), str(outcome.tmpdir))
    else:
        url = request.getfixturevalue("database_url")  # this backend's emptied test database
        done = lessons.run_here(lesson, "--database", url, env=lesson_env, capsys=capsys, monkeypatch=monkeypatch,
                                merged=True)
        code, output = done.returncode, done.stdout
        roots = (str(tmp_path), str(lessons.REPO_ROOT), str(make_url(url).database))
    assert code == 0, f"exit status {code}\n{output}"
    transcripts.check(lesson, backend, output, roots)
    readme = lessons.REPO_ROOT / "session_management" / lesson / "README.md"
    if backend in (None, "sqlite") and any("the default run" in label for label in readme_samples.samples(readme)):
        sample = readme_samples.sample(readme, "the default run")  # what the README shows of this same run
        assert readme_samples.sample_mismatch(sample, output) is None, readme_samples.sample_mismatch(sample, output)


def test_every_lesson_has_a_transcript() -> None:
    folders = [name for name in lesson_folders() if name not in transcripts.NOT_TRANSCRIBED]
    assert list(transcripts.LESSONS) == folders
    assert all(transcripts.path(lesson).is_file() for lesson in folders)


def test_one_extra_or_changed_line_fails(first_runs: dict[str, Outcome]) -> None:
    """The comparison is whole: an output that matches fails with one line added, removed or changed."""
    output = first_runs["01_sqlite_session"].output
    assert transcripts.mismatch("01_sqlite_session", output) is None
    lines = output.splitlines()
    middle = len(lines) // 2
    extra = "\n".join([*lines[:middle], "WARNING: something new", *lines[middle:]])
    missing = "\n".join([*lines[:middle], *lines[middle + 1:]])
    changed = "\n".join([*lines[:middle], lines[middle] + " and more", *lines[middle + 1:]])
    for wrong in (extra, missing, changed, output + "\none more line at the end"):
        difference = transcripts.mismatch("01_sqlite_session", wrong)
        assert difference is not None and "!!" in difference
    assert "WARNING: something new  !!" in str(transcripts.mismatch("01_sqlite_session", extra))


# -- the update mode, on made-up transcripts ----------------------------------------------------------------------

def test_an_update_keeps_wildcards_that_still_match_and_takes_changed_lines() -> None:
    old = ["Lesson", "id: ...", "took ... s", "answer: 41", ANY_LINES, "end"]
    printed = "Lesson\nid: 7f3a\ntook 0.3 s\nanswer: 42\nprogress 1\nprogress 2\nend\n"
    assert transcripts.updated(old, [Recorded(None, printed, ())]) == [
        "Lesson", "id: ...", "took ... s", "answer: 42", ANY_LINES, "end"]
    added = "Lesson\nid: 7f3a\nWARNING: new\ntook 0.3 s\nanswer: 41\nend\n"
    assert transcripts.updated(old, [Recorded(None, added, ())]) == [
        "Lesson", "id: ...", "WARNING: new", "took ... s", "answer: 41", ANY_LINES, "end"]
    assert transcripts.updated(old, [Recorded(None, "Lesson\nid: 1\ntook 2 s\nanswer: 41\nend\n", ())]) == old


def test_an_update_masks_what_changes_from_run_to_run() -> None:
    printed = ("db at /tmp/run7/x.db\nid 4a1c0b38-5d1e-4f55-9e76-0a0b2c3d4e5f at 2026-12-05 17:12:31\n"
               "listening on http://127.0.0.1:44371\n")
    assert transcripts.updated([], [Recorded(None, printed, ("/tmp/run7",))]) == [
        "db at .../x.db", "id ... at ...", "listening on http://127.0.0.1:..."]


def test_an_update_widens_lines_where_backends_differ() -> None:
    runs = [Recorded("postgres", "database: postgresql://h/db\nrows: 4\nok\n", ()),
            Recorded("sqlite", "database: sqlite:///x.sqlite\nrows: 4\nok\n", ()),
            Recorded("mysql", "database: mysql://h/db\nrows: 4\nnote: VARCHAR needs a length\n"
                              "note: so the helper made it\nok\n", ())]
    assert transcripts.updated([], runs) == ["database: ...", "rows: 4", ANY_LINES, "ok"]
    runs[2] = Recorded("mysql", "database: mysql://h/db\nrows: 5\nok\n", ())
    assert transcripts.updated([], runs) == ["database: ...", "rows: ...", "ok"]
