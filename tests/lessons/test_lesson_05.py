"""Lesson 05 (write your own Session) and the contract command a reader runs on their own store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.lessons import RunHere
from tests.support.snippets import REPO_ROOT, _line_pattern, extract

LESSON = REPO_ROOT / "session_management" / "05_your_own_session"


def test_the_store_in_the_readme_is_the_lessons_file() -> None:
    first = extract(LESSON / "README.md")[0]
    assert first.code == (LESSON / "chat_store.py").read_text(encoding="utf-8")
    assert 40 <= len(first.code.splitlines()) <= 75  # a file a reader copies, not a package


def test_the_readme_shows_what_step_4_prints(run_here: RunHere) -> None:
    done = run_here("05_your_own_session")
    assert done.returncode == 0, done.stderr  # the whole output is the transcript's (tests/course/test_transcripts.py)
    sections = {s.split(".")[0]: s for s in done.stdout.split("\n--- ")[1:]}
    # What the README shows for step 4 is what step 4 prints: the one broken rule it explains, nothing else.
    readme = (LESSON / "README.md").read_text(encoding="utf-8")
    shown = readme.split("## A bug it catches")[1].split("```text\n")[1].split("```")[0].splitlines()
    printed = sections["4"].splitlines()
    for line in filter(None, shown):
        assert any(_line_pattern(line).fullmatch(out.rstrip()) for out in printed), f"step 4 does not print {line!r}"
    assert sum(line.startswith("BROKEN") for line in printed) == sum(line.startswith("BROKEN") for line in shown) == 1


def test_the_usage_block_pasted_without_a_key_ends(tmp_path: Path) -> None:
    """A stranger pasted the usage block and ran it with no API key: the run failed, and the process never exited
    (the open aiosqlite connection's thread kept it alive). Pasted as the README says now, chat_store.py and
    main.py in an empty folder, it ends at once with the SDK's error."""
    store, usage = extract(LESSON / "README.md")[:2]
    assert [file.name for file in usage.files] == ["chat_store.py"]
    (tmp_path / "chat_store.py").write_text(store.code, encoding="utf-8")
    (tmp_path / "main.py").write_text(usage.code, encoding="utf-8")
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "VIRTUAL_ENV", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    done = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "OPENAI_API_KEY" in done.stderr, done.stderr


READER_STORE = '''
from contextlib import asynccontextmanager

from agents import SQLiteSession


class Forgetful(SQLiteSession):
    """A deliberate bug: pop_item returns the newest item but leaves it stored."""

    async def pop_item(self):
        items = await self.get_items(limit=1)
        return items[0] if items else None


@asynccontextmanager
async def sdk(session_class=SQLiteSession):
    sessions = []

    def make(session_id, settings=None):
        session = session_class(session_id, session_settings=settings)  # each its own in-memory database...
        sessions.append(session)
        return session

    shared = {}

    def make_shared(session_id, settings=None):  # ...so one object per id, as a file would share the rows
        if session_id not in shared:
            shared[session_id] = make(session_id)
        shared[session_id].session_settings = make(session_id, settings).session_settings
        return shared[session_id]

    yield make_shared
    for session in sessions:
        session.close()


def forgetful():
    return sdk(Forgetful)
'''


def test_the_contract_command_checks_a_store_written_outside_the_repository(tmp_path: Path) -> None:
    """As the README says: the contract folder copied into a reader's project, run on their store (here the
    SDK's SQLiteSession, the control, and a copy of it with a bug), with the course not importable."""
    shutil.copytree(REPO_ROOT / "session_management" / "contract", tmp_path / "contract",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "my_store.py").write_text(textwrap.dedent(READER_STORE), encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    rules = ["--rule", "pop_returns_the_newest", "--rule", "limit_is_the_newest_n", "--rule", "concurrent_pops"]

    def contract(factory: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "contract", f"my_store:{factory}", *rules], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    probe = subprocess.run([sys.executable, "-c", "import session_management"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0, "the course is importable from the reader's project: the test proves nothing"
    control = contract("sdk")
    assert control.returncode == 0, control.stdout + control.stderr
    assert "3 of 3 rules hold" in control.stdout
    buggy = contract("forgetful")
    assert buggy.returncode == 1, buggy.stdout + buggy.stderr
    assert "BROKEN pop_returns_the_newest" in buggy.stdout and "ok     limit_is_the_newest_n" in buggy.stdout
    mistake = subprocess.run([sys.executable, "-m", "contract", "my_store"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert mistake.returncode != 0 and "is not module:factory" in mistake.stderr
    assert "Traceback" not in mistake.stderr
