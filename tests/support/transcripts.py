"""Each lesson's transcript: what its default run prints, kept as data beside the lesson and compared whole.

``session_management/NN_name/transcript.txt`` is what ``uv run python -m session_management.NN_name.main``
prints on a fresh clone, offline: stdout and stderr interleaved, as a terminal shows them. course/test_transcripts.py
compares it whole with that run (the first-command run of tests/support/first_commands.py) and, for a lesson that takes
``--database``, with its runs on PostgreSQL and MySQL: one transcript fits every backend. Its lines are matched
as a README's ``#>`` lines are (:func:`tests.support.snippets.align`): ``...`` inside a line matches any text (ids,
times, paths, what differs between backends), and a line that is only ``...`` matches any run of lines.

``UPDATE_TRANSCRIPTS=1`` makes the test record what each run printed instead of comparing, and rewrite the files
when the module ends (:func:`write_updates`): a line of the old transcript that still matches stays as it was,
its ``...`` with it; a changed line is replaced by the new one with its volatile parts already ``...`` (this
run's folders, temporary names, timestamps, uuids, ports, ciphertext: :func:`masked`); where the backends print
different text the line keeps what they share around a ``...``, and where they print a different number of
lines the difference becomes a line ``...``. The file is written only if it matches every run it was made from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.support.snippets import ANY_LINES, REPO_ROOT, align, line_matches, output_mismatch

FILE_NAME = "transcript.txt"
LESSONS = ("01_sqlite_session", "02_sqlalchemy_session", "03_advanced_sqlite_session", "04_encrypted_session",
           "05_your_own_session", "06_web_service", "07_schema_migrations", "08_session_admin", "09_scaling",
           "10_redis_session", "11_long_conversations")
# Lessons whose tests run them on every backend with --database; the default run is the SQLite one.
BACKEND_LESSONS = ("02_sqlalchemy_session", "04_encrypted_session", "06_web_service", "07_schema_migrations",
                   "08_session_admin")
BACKENDS = ("sqlite", "postgres", "mysql")
# Lesson folders with no transcript, and why.
NOT_TRANSCRIBED = {"12_failover": "a long drill, not run as a first command"}


def update_mode() -> bool:
    return os.environ.get("UPDATE_TRANSCRIPTS", "").strip().lower() in ("1", "true", "yes")


def cases() -> list[tuple[str, str | None]]:
    """(lesson, backend) pairs: a backend lesson once per backend, any other lesson once (backend None)."""
    return [(lesson, backend) for lesson in LESSONS
            for backend in (BACKENDS if lesson in BACKEND_LESSONS else (None,))]


def path(lesson: str) -> Path:
    return REPO_ROOT / "session_management" / lesson / FILE_NAME


def read(lesson: str) -> list[str]:
    """The transcript's lines (none if there is no file yet)."""
    file = path(lesson)
    return file.read_text(encoding="utf-8").splitlines() if file.exists() else []


def lines_of(output: str) -> list[str]:
    """Printed lines as the matcher compares them: trailing spaces dropped."""
    return [line.rstrip() for line in output.splitlines()]


# -- comparing ------------------------------------------------------------------------------------------------

def mismatch(lesson: str, output: str) -> str | None:
    """None when *output* is what the lesson's transcript says, else the transcript beside the output."""
    return output_mismatch(read(lesson), output, heading=f"{lesson}/{FILE_NAME}")


@dataclass(frozen=True)
class Recorded:
    backend: str | None
    output: str
    roots: tuple[str, ...]  # this run's folders and database names, volatile by nature


RECORDED: dict[str, list[Recorded]] = {}


def check(lesson: str, backend: str | None, output: str, roots: Iterable[str | Path] = ()) -> None:
    """Compare *output* with the lesson's transcript (fail with the difference), or in update mode record it."""
    if update_mode():
        RECORDED.setdefault(lesson, []).append(Recorded(backend, output, tuple(str(root) for root in roots if root)))
        return
    difference = mismatch(lesson, output)
    hint = "UPDATE_TRANSCRIPTS=1 uv run pytest tests/course/test_transcripts.py rewrites it (CONTRIBUTING.md)"
    assert difference is None, (f"{lesson} ({backend or 'default run'}) printed something other than its "
                                f"transcript; if the change is meant, {hint}:\n{difference}")


# -- updating -------------------------------------------------------------------------------------------------

_VOLATILE = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "..."),  # uuids
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?"), "..."),  # timestamps
    (re.compile(r"\b(127\.0\.0\.1|localhost):\d+"), r"\1:..."),  # ports chosen at run time
    (re.compile(r"gAAAAA[\w-]+=*"), "gAAAAA..."),  # Fernet tokens
    (re.compile(r"\btmp[a-z0-9_]{8}\b"), "..."),  # tempfile's names
)


def masked(line: str, roots: Iterable[str]) -> str:
    """*line* with what changes from run to run replaced by ``...``: *roots* (this run's folders, database
    names) and :data:`_VOLATILE`. The result always matches *line* (else *line* is returned)."""
    result = line
    for root in sorted(roots, key=len, reverse=True):
        result = result.replace(root, "...")
    for pattern, replacement in _VOLATILE:
        result = pattern.sub(replacement, result)
    result = re.sub(r"(?:\.\.\.){2,}", "...", result)
    if result == ANY_LINES and line != ANY_LINES:  # one line, not a run of lines
        return line
    return result if line_matches(result, line) else line


def _groups(template: list[str], printed: list[str]) -> list[tuple[bool, list[str], list[str]]]:
    """The alignment as (matched, template lines, printed lines) groups; differences next to each other form one
    group, so a group that did not match is the region where the two differ."""
    groups: list[tuple[bool, list[str], list[str]]] = []
    for step in align(template, printed):
        wanted = [template[step.expected]] if step.expected is not None else []
        got = [printed[number] for number in step.printed]
        if not step.matched and groups and not groups[-1][0]:
            groups[-1][1].extend(wanted)
            groups[-1][2].extend(got)
        else:
            groups.append((step.matched, wanted, got))
    return groups


def replaced(template: list[str], printed: list[str]) -> list[str]:
    """*template* where it still matches *printed*; *printed*'s lines where it does not."""
    return [line for matched, wanted, got in _groups(template, printed) for line in (wanted if matched else got)]


def _common_suffix(a: str, b: str) -> str:
    size = 0
    while size < min(len(a), len(b)) and a[-1 - size] == b[-1 - size]:
        size += 1
    return a[len(a) - size:]


def widened(pattern: str, line: str) -> str:
    """A line pattern that matches what *pattern* matched and *line* too: their common start and end around
    ``...``."""
    if line_matches(pattern, line):
        return pattern
    head = pattern.split("...")[0]
    prefix = os.path.commonprefix([head, line]).rstrip(".")
    tail = pattern.split("...")[-1] if "..." in pattern else pattern[len(prefix):]
    suffix = _common_suffix(tail, line[len(prefix):]).lstrip(".")
    return f"{prefix}...{suffix}"  # nothing in common: ``...``, which stands for this line and the others


def widened_to(template: list[str], printed: list[str]) -> list[str]:
    """*template* widened so that it matches *printed* as well: the same number of differing lines are widened
    one by one, a different number becomes a line ``...``."""
    lines: list[str] = []
    for matched, wanted, got in _groups(template, printed):
        if matched:
            lines.extend(wanted)
        elif len(wanted) == len(got):
            lines.extend(widened(pattern, line) for pattern, line in zip(wanted, got, strict=True))
        else:
            lines.append(ANY_LINES)
    return [line for number, line in enumerate(lines)
            if not (line == ANY_LINES and number and lines[number - 1] == ANY_LINES)]


def updated(old: list[str], runs: list[Recorded]) -> list[str]:
    """The transcript for *runs* (the default run first), keeping what of *old* still holds."""
    first, *others = sorted(runs, key=lambda run: (run.backend or "sqlite") != "sqlite")
    new = replaced(old, [masked(line, first.roots) for line in lines_of(first.output)])
    for run in others:
        new = widened_to(new, [masked(line, run.roots) for line in lines_of(run.output)])
    for run in runs:
        difference = output_mismatch(new, run.output, heading="updated transcript")
        if difference is not None:  # a bug here, not in the lesson: never write a file that does not match
            raise AssertionError(f"the updated transcript does not match the {run.backend} run:\n{difference}")
    return new


def write_updates() -> list[Path]:
    """Rewrite the transcripts of the lessons recorded in update mode; return the files that changed."""
    changed = []
    for lesson, runs in sorted(RECORDED.items()):
        old = read(lesson)
        new = updated(old, runs)
        if new != old:
            path(lesson).write_text("\n".join(new) + "\n", encoding="utf-8")
            changed.append(path(lesson))
    RECORDED.clear()
    return changed
