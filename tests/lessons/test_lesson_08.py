"""Lesson 08: the session admin tool on every backend, with seeded data and real timestamps."""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import text, update

from session_management.common import create_engine, create_session_tables
from tests.support.first_commands import Outcome
from tests.support.lessons import RunHere

admin = importlib.import_module("session_management.08_session_admin.main")
store = importlib.import_module("session_management.08_session_admin.store")
BIG = {"role": "user", "content": "🚀 naïve 漢字 " + "x" * (1024 * 1024)}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = admin.main(list(argv))
    except SystemExit as exited:  # a mistake ends through the course's runner: one line, exit 2
        code = exited.code if isinstance(exited.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def seed(url: str, ages: dict[str, timedelta | None]) -> None:
    """Sessions with two items each; *ages* moves a session's activity into the past on the database clock."""
    engine = create_engine(url)
    try:
        await create_session_tables(engine)
        for session_id in ages:
            await SQLAlchemySession(session_id, engine=engine).add_items(
                [{"role": "user", "content": f"hello from {session_id}"}, {"role": "assistant", "content": "hi"}])
        async with engine.begin() as connection:
            now = await store.database_now(connection)
            for session_id, age in ages.items():
                if age is not None:
                    await connection.execute(update(store.sessions).where(store.sessions.c.session_id == session_id)
                                             .values(created_at=now - age, updated_at=now - age))
    finally:
        await engine.dispose()


async def items_of(url: str, session_id: str) -> list[object]:
    engine = create_engine(url)
    try:
        return await SQLAlchemySession(session_id, engine=engine).get_items()
    finally:
        await engine.dispose()


def test_the_demo_leaves_the_sessions_it_kept(first_runs: dict[str, Outcome]) -> None:
    """The demo's default run (a first command, its output its transcript): the purge removed the old sessions'
    rows, the copy and the recent ones are in the database, and their items with them."""
    database = first_runs["08_session_admin"].tree / ".data" / "sessions.db"
    with sqlite3.connect(database) as stored:
        sessions = dict(stored.execute("SELECT s.session_id, COUNT(m.id) FROM agent_sessions s LEFT JOIN "
                                       "agent_messages m ON m.session_id = s.session_id GROUP BY s.session_id"))
        orphans = stored.execute("SELECT COUNT(*) FROM agent_messages WHERE session_id NOT IN "
                                 "(SELECT session_id FROM agent_sessions)").fetchone()
    assert sessions == {"demo08-ada": 8, "demo08-ada-copy": 8, "demo08-alan": 4, "demo08-grace": 4}
    assert orphans == (0,)


def test_list_show_and_stats(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(seed(database_url, {"t-new": None, "t-week": timedelta(days=7), "t-month": timedelta(days=31),
                                    "other": None}))
    code, out, _ = run(capsys, "list", "--prefix", "t-", "--json", "--database", database_url)
    listing = json.loads(out)
    assert code == 0 and listing["total"] == 3
    assert [s["session_id"] for s in listing["sessions"]] == ["t-new", "t-week", "t-month"]  # newest first
    assert all(s["items"] == 2 and s["bytes"] > 0 for s in listing["sessions"])
    code, out, _ = run(capsys, "list", "--prefix", "t-", "--limit", "2", "--page", "2", "--json", "--database",
                       database_url)
    assert [s["session_id"] for s in json.loads(out)["sessions"]] == ["t-month"]
    code, out, _ = run(capsys, "list", "--active-within", "10d", "--prefix", "t-", "--json", "--database",
                       database_url)
    assert [s["session_id"] for s in json.loads(out)["sessions"]] == ["t-new", "t-week"]
    code, out, _ = run(capsys, "list", "--prefix", "t-", "--database", database_url)
    assert out.splitlines()[0].split() == ["session_id", "items", "bytes", "first", "activity", "last", "activity"]
    code, out, _ = run(capsys, "show", "t-week", "--database", database_url)
    assert code == 0 and "user: hello from t-week" in out and "assistant: hi" in out
    code, out, _ = run(capsys, "stats", "--json", "--database", database_url)
    stats = json.loads(out)
    assert stats["sessions"] == 4 and stats["items"] == 8 and stats["orphan_items"] == 0 and stats["bytes"] > 0


def test_export_import_round_trip_is_exact(database_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    items = [{"role": "user", "content": "emoji 👩‍💻 and quotes \" ' \\"}, BIG,
             {"type": "function_call", "name": "f", "arguments": "{\"a\": 1}", "call_id": "c1"}]

    async def write() -> None:
        engine = create_engine(database_url)
        try:
            await create_session_tables(engine)
            await SQLAlchemySession("orig", engine=engine).add_items(items)
        finally:
            await engine.dispose()

    asyncio.run(write())
    exported, again = tmp_path / "orig.jsonl", tmp_path / "copy.jsonl"
    assert run(capsys, "export", "orig", "--output", str(exported), "--database", database_url)[0] == 0
    assert len(exported.read_text(encoding="utf-8").splitlines()) == 1 + 3  # the header, then the items
    assert run(capsys, "import", str(exported), "--session-id", "copy", "--database", database_url)[0] == 0
    assert asyncio.run(items_of(database_url, "copy")) == items
    assert run(capsys, "export", "copy", "--output", str(again), "--database", database_url)[0] == 0
    assert exported.read_bytes() == again.read_bytes()
    code, _, err = run(capsys, "import", str(exported), "--session-id", "copy", "--database", database_url)
    assert code == 2 and "already exists" in err  # no silent merge into an existing session


def test_purge_boundaries_and_dry_run(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    window = timedelta(days=30)
    asyncio.run(seed(database_url, {
        "inside": window - timedelta(seconds=1),   # active one second inside the window: kept
        "outside": window + timedelta(seconds=2),  # idle just longer than the window: deleted
        "fresh": None,
        "ancient": timedelta(days=400),
    }))
    code, out, _ = run(capsys, "purge", "--older-than", "30d", "--dry-run", "--json", "--database", database_url)
    report = json.loads(out)
    assert code == 0 and report["dry_run"] and sorted(report["session_ids"]) == ["ancient", "outside"]
    assert report["items"] == 4
    assert asyncio.run(items_of(database_url, "outside")) != []  # the dry run deleted nothing
    code, out, _ = run(capsys, "purge", "--older-than", "30d", "--database", database_url)
    assert code == 0 and "deleted 2 sessions (4 items)" in out
    for session_id, kept in (("inside", True), ("fresh", True), ("outside", False), ("ancient", False)):
        assert bool(asyncio.run(items_of(database_url, session_id))) is kept, session_id
    code, out, _ = run(capsys, "stats", "--json", "--database", database_url)
    assert json.loads(out)["orphan_items"] == 0  # messages went with their sessions, on SQLite too


def test_bad_arguments_are_one_line_errors(database_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(seed(database_url, {"someone": None}))
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"role": "user", "content": "ok"}\nnot json\n', encoding="utf-8")
    cases = [
        (["show", "nobody"], "no session 'nobody'"),
        (["export", "nobody"], "no session 'nobody'"),
        (["import", str(tmp_path / "missing.jsonl"), "--session-id", "x"], "cannot read"),
        (["import", str(malformed), "--session-id", "x"], "bad.jsonl:2: not a JSON item"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, "--database", database_url)
        assert code == 2, argv
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert asyncio.run(items_of(database_url, "x")) == []  # the malformed file imported nothing
    with pytest.raises(SystemExit) as exited:
        admin.main(["purge", "--older-than", "30 days", "--database", database_url])
    assert exited.value.code == 2
    assert "invalid duration '30 days'" in capsys.readouterr().err


def test_errors_from_the_command_line(run_here: RunHere) -> None:
    """The command-line path in this process (tests/course/test_error_matrix.py runs lesson 08 as a process)."""
    for argv, message in ((["list", "--database", "mysql://u:p@h/d"], "mysql+aiomysql://"),
                          (["purge", "--older-than", "soon"], "invalid duration")):
        done = run_here("08_session_admin", *argv)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr
        assert "Traceback" not in done.stderr


# --- hostile content, empty input, limits, timestamps ----------------------------------------------------------

def test_show_and_list_render_control_characters_visibly(database_url: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    hostile = "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x9b1m \u202etxt.exe\r\nnext"
    asyncio.run(seed(database_url, {f"evil\x1b[2J{hostile}": None}))
    session_id = f"evil\x1b[2J{hostile}"

    async def store_hostile() -> None:
        engine = create_engine(database_url)
        try:
            await SQLAlchemySession(session_id, engine=engine).add_items([{"role": "user", "content": hostile}])
        finally:
            await engine.dispose()

    asyncio.run(store_hostile())
    for argv in (["show", session_id], ["list"], ["stats"], ["show", session_id, "--json"], ["list", "--json"]):
        code, out, _ = run(capsys, *argv, "--database", database_url)
        assert code == 0, argv
        assert not any(char in out for char in "\x1b\x07\x9b\u202e\r"), (argv, out)
    code, out, _ = run(capsys, "show", session_id, "--database", database_url)
    assert "user: \\x1b[2J\\x1b]0;pwned\\x07\\x1b[31mred\\x9b1m \\u202etxt.exe\\r\\nnext" in out  # visible, not lost


def test_list_and_stats_on_an_empty_store_and_no_match(database_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    async def empty_tables() -> None:
        engine = create_engine(database_url)
        try:
            await create_session_tables(engine)
        finally:
            await engine.dispose()

    asyncio.run(empty_tables())
    code, out, err = run(capsys, "stats", "--database", database_url)
    assert code == 0 and "sessions" in out and "Traceback" not in err
    asyncio.run(seed(database_url, {"someone": None}))
    for argv in (["list", "--prefix", "nope"], ["list", "--page", "9"], ["stats", "--top", "1"]):
        code, out, err = run(capsys, *argv, "--database", database_url)
        assert code == 0 and err == "", (argv, err)
    code, out, _ = run(capsys, "list", "--prefix", "nope", "--database", database_url)
    assert out.splitlines()[-1].startswith("page 1 of 1, 0 sessions")


def test_import_refuses_a_file_without_items(database_url: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(seed(database_url, {"someone": None}))
    header_only = tmp_path / "header.jsonl"
    header_only.write_text('{"agents_session_export":1,"created_at":"2026-01-01 00:00:00",'
                           '"updated_at":"2026-01-01 00:00:00"}\n', encoding="utf-8")
    for path in (tmp_path / "empty.jsonl", header_only):
        if not path.exists():
            path.write_text("", encoding="utf-8")
        code, _, err = run(capsys, "import", str(path), "--session-id", "ghost", "--database", database_url)
        assert code == 2 and "holds no session items" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "list", "--prefix", "ghost", "--json", "--database", database_url)
    assert json.loads(out)["total"] == 0  # no empty session was created


def test_export_import_keeps_the_session_times(database_url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(seed(database_url, {"old": timedelta(days=90)}))
    exported = tmp_path / "nested" / "old.jsonl"  # the folder is created
    assert run(capsys, "export", "old", "--output", str(exported), "--database", database_url)[0] == 0
    assert run(capsys, "import", str(exported), "--session-id", "restored", "--database", database_url)[0] == 0
    code, out, _ = run(capsys, "list", "--json", "--database", database_url)
    listed = {s["session_id"]: s for s in json.loads(out)["sessions"]}
    assert listed["restored"]["last_activity"] == listed["old"]["last_activity"]
    assert listed["restored"]["first_activity"] == listed["old"]["first_activity"]
    code, out, _ = run(capsys, "purge", "--older-than", "30d", "--dry-run", "--json", "--database", database_url)
    assert sorted(json.loads(out)["session_ids"]) == ["old", "restored"]  # restored old is still old


@pytest.mark.parametrize("backend", ["mysql"])
def test_an_item_larger_than_max_allowed_packet_names_the_setting(database_url: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(seed(database_url, {"someone": None}))

    async def packet_limit() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                return int(await connection.scalar(text("SELECT @@max_allowed_packet")))
        finally:
            await engine.dispose()

    huge = tmp_path / "huge.jsonl"
    item = json.dumps({"role": "user", "content": "x" * (asyncio.run(packet_limit()) + 1)})
    huge.write_text('{"role":"user","content":"small"}\n' + item + "\n", encoding="utf-8")
    code, _, err = run(capsys, "import", str(huge), "--session-id", "huge", "--database", database_url)
    assert code == 2 and "huge.jsonl:2:" in err and "max_allowed_packet" in err, err
    assert asyncio.run(items_of(database_url, "huge")) == []  # nothing imported
