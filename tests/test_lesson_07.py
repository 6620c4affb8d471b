"""Lesson 07: the session admin tool on every backend, with seeded data and real timestamps."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import update

from session_management.common import create_engine, create_session_tables
from tests.conftest import PYTHON, REPO_ROOT

admin = importlib.import_module("session_management.07_session_admin.main")
store = importlib.import_module("session_management.07_session_admin.store")
BIG = {"role": "user", "content": "🚀 naïve 漢字 " + "x" * (1024 * 1024)}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = admin.main(list(argv))
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


def test_demo_on_every_backend(lesson_env: dict[str, str], database_url: str) -> None:
    done = subprocess.run([PYTHON, "-m", "session_management.07_session_admin.main", "--database", database_url],
                          cwd=REPO_ROOT, env=lesson_env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[tool call] get_weather" in out and "assistant: Your name is Ada." in out
    assert "The copy's export is identical to the original's: True" in out
    assert "would delete 2 sessions (6 items)" in out and "nothing deleted" in out
    assert "deleted 2 sessions (6 items)" in out
    final_list = out.split("purge --older-than 30d --prefix demo07-\n")[1].split("--- 5.")[0]
    assert "demo07-old-40d" not in final_list.split("list --prefix demo07-")[1]
    assert "Traceback" not in done.stderr


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


def test_errors_from_the_command_line(lesson_env: dict[str, str]) -> None:
    for argv, message in ((["list", "--database", "mysql://u:p@h/d"], "mysql+aiomysql://"),
                          (["purge", "--older-than", "soon"], "invalid duration")):
        done = subprocess.run([PYTHON, "-m", "session_management.07_session_admin.main", *argv], cwd=REPO_ROOT,
                              env=lesson_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr
        assert "Traceback" not in done.stderr
