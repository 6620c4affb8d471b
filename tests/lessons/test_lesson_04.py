"""Lesson 04: EncryptedSession on every backend, and the SDK behaviour its README states."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from agents import SQLiteSession
from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError, create_engine, create_session_tables
from tests.support.lessons import REPO_ROOT, RunHere
from tests.support.readme_api import missing_methods, named_methods

LESSON = REPO_ROOT / "session_management" / "04_encrypted_session"
rotation = importlib.import_module("session_management.04_encrypted_session.rotation")


def key() -> str:
    return Fernet.generate_key().decode()


def test_the_lesson_ends_on_the_key_it_was_given(run_here: RunHere, lesson_env: dict[str, str],
                                                tmp_path: Path) -> None:
    """With ENCRYPTION_KEY set there is no warning, and the rows the lesson leaves for a reader to inspect are
    readable with that key: the rotation's new key, saved nowhere, is not the one they end on."""
    master, url = key(), f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    done = run_here("04_encrypted_session", "--database", url, env={**lesson_env, "ENCRYPTION_KEY": master})
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    assert "The rows stay in agent_messages" in done.stdout

    async def rows_and_readable() -> tuple[int, int]:
        engine = create_engine(url)
        try:
            store = SQLAlchemySession("lesson04-ada", engine=engine)
            return (len(await store.get_items()),
                    len(await EncryptedSession("lesson04-ada", store, master, ttl=3600).get_items()))
        finally:
            await engine.dispose()

    assert asyncio.run(rows_and_readable()) == (6, 6)


@pytest.mark.parametrize("bad", ["correct horse battery staple", "c2hvcnQ=", key()[:-2]])
def test_a_key_that_is_not_a_fernet_key_is_refused(run_here: RunHere, lesson_env: dict[str, str], tmp_path: Path,
                                                   bad: str) -> None:
    env = {**lesson_env, "ENCRYPTION_KEY": bad}
    done = run_here("04_encrypted_session", "--database", f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", env=env)
    assert done.returncode != 0
    assert "ENCRYPTION_KEY is not a Fernet key" in done.stderr and "Fernet.generate_key()" in done.stderr
    assert "Traceback" not in done.stderr


async def test_stored_rows_hold_no_plaintext(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    session = EncryptedSession("u", SQLAlchemySession("u", engine=engine), key())
    secret = "my card number is 4111 1111 1111 1111, my name is Zoë"
    await session.add_items([{"role": "user", "content": secret}])
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT message_data FROM agent_messages"))).scalars().all()
    assert len(rows) == 1
    # Only fragments with a space or a non-ASCII letter: the stored text is base64, in which short words such
    # as "Zo" appear by chance, but never a space or "ë".
    assert all(fragment not in rows[0] for fragment in ("4111 1111", "card number", "Zoë", "Zo\\u00eb"))
    assert " " not in rows[0].split('"payload":', 1)[1]
    assert await session.get_items() == [{"role": "user", "content": secret}]


async def test_wrong_key_reads_nothing_and_does_not_crash(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    right = EncryptedSession("u", SQLAlchemySession("u", engine=engine), key())
    await right.add_items([{"role": "user", "content": "private"}])
    wrong = EncryptedSession("u", SQLAlchemySession("u", engine=engine), key())
    assert await wrong.get_items() == []
    assert await right.get_items() == [{"role": "user", "content": "private"}]


async def test_pop_with_wrong_key_destroys_history_on_sqlalchemy(engine: AsyncEngine) -> None:
    """The README's warning, proven: one pop_item with the wrong key empties a SQLAlchemySession."""
    await create_session_tables(engine)
    right = EncryptedSession("u", SQLAlchemySession("u", engine=engine), key())
    await right.add_items([{"role": "user", "content": f"m{n}"} for n in range(4)])
    wrong = EncryptedSession("u", SQLAlchemySession("u", engine=engine), key())
    assert await wrong.pop_item() is None
    assert await SQLAlchemySession("u", engine=engine).get_items() == []


async def test_pop_with_wrong_key_leaves_sqlite_session_alone(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    right = EncryptedSession("u", SQLiteSession("u", db), key())
    await right.add_items([{"role": "user", "content": f"m{n}"} for n in range(4)])
    wrong = EncryptedSession("u", SQLiteSession("u", db), key())
    with pytest.raises(InvalidToken):  # the README says so: the item stays, and pop_item raises
        await wrong.pop_item()
    assert len(await right.get_items()) == 4


def test_readme_names_only_real_methods_and_numbers_from_the_benchmark() -> None:
    readme = LESSON / "README.md"
    assert missing_methods(readme, EncryptedSession, SQLAlchemySession) == set()
    assert {"get_items", "pop_item", "add_items"} <= named_methods(readme)
    text_ = readme.read_text(encoding="utf-8")
    assert "AES-128" in text_ and not re.search(r"uses AES-256", text_)


def test_benchmark_runs(run_here: RunHere, tmp_path: Path) -> None:
    done = run_here("04_encrypted_session.benchmark", "--database",
                    f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", "--turns", "10", "--reads", "2", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()
            if line.startswith(("plain ", "encrypted "))}
    assert set(rows) == {"plain", "encrypted"} and all(float(v) > 0 for r in rows.values() for v in r)


# -- key rotation (rotation.py): any age, times kept, the app writing meanwhile; the kill drill is
# tests/lessons/test_crash_drills.py --------------------------------------------------------------------------------
DAY = 24 * 3600


async def old_key_history(engine: AsyncEngine, session_id: str, old_key: str, ages: list[int]) -> list[Any]:
    """Items under *old_key* whose tokens are *ages* seconds old, written as EncryptedSession writes them."""
    await create_session_tables(engine)
    cipher = rotation.session_cipher(session_id, old_key)
    items = [{"role": "user", "content": f"item {n}"} for n in range(len(ages))]
    now = int(time.time())
    await SQLAlchemySession(session_id, engine=engine).add_items([
        {"__enc__": 1, "v": 1, "kid": "hkdf-v1",
         "payload": cipher.encrypt_at_time(json.dumps(item).encode(), now - age).decode()}
        for item, age in zip(items, ages, strict=True)])
    return items


async def columns(engine: AsyncEngine, session_id: str) -> tuple[list[str], list[str]]:
    """The rows' created_at and the session's updated_at: what lesson 08's purge reads."""
    async with engine.connect() as connection:
        created = (await connection.execute(text("SELECT created_at FROM agent_messages WHERE session_id = :s "
                                                 "ORDER BY id"), {"s": session_id})).scalars().all()
        updated = (await connection.execute(text("SELECT updated_at FROM agent_sessions WHERE session_id = :s"),
                                            {"s": session_id})).scalars().all()
    return list(map(str, created)), list(map(str, updated))


async def test_rotation_takes_any_age_and_keeps_the_ttl_and_the_timestamps(engine: AsyncEngine) -> None:
    old, new = key(), key()
    items = await old_key_history(engine, "aged", old, [90 * DAY, 40 * DAY, 60, 0])  # past a 30-day TTL, and not
    before = await columns(engine, "aged")
    done = await rotation.rotate_key("aged", engine, old, new)
    assert (done.rotated, done.already_new) == (4, 0)
    assert await columns(engine, "aged") == before
    store = SQLAlchemySession("aged", engine=engine)
    assert await EncryptedSession("aged", store, new, ttl=100 * DAY).get_items() == items
    assert await EncryptedSession("aged", store, new, ttl=30 * DAY).get_items() == items[2:]  # the TTL still counts
    assert await EncryptedSession("aged", store, old, ttl=100 * DAY).get_items() == []
    again = await rotation.rotate_key("aged", engine, old, new)  # a rerun finds nothing to do
    assert (again.rotated, again.already_new) == (0, 4)


async def test_rotation_while_the_app_writes_loses_no_turn(engine: AsyncEngine) -> None:
    """The app on KeyRingSession([new, old]) writes turns while the rotation runs: all are readable afterwards
    with the new key alone, in order. Counted: turns started while the rotation ran, and turns lost (0)."""
    old, new = key(), key()
    history = await old_key_history(engine, "busy", old, [0] * 200)
    app = rotation.KeyRingSession("busy", SQLAlchemySession("busy", engine=engine), [new, old], ttl=DAY)
    written: list[Any] = []
    rotating: asyncio.Future[Any] | None = None
    during = 0
    for number in range(30):
        if number == 5:  # the rotation starts while the app is busy, and the app does not wait for it
            rotating = asyncio.ensure_future(rotation.rotate_key("busy", engine, old, new))
        during += rotating is not None and not rotating.done()
        turn = [{"role": "user", "content": f"turn {number}"}, {"role": "assistant", "content": f"ok {number}"}]
        await app.add_items(turn)
        written.extend(turn)
    assert rotating is not None
    done = await rotating
    assert during >= 1, "no turn was written while the rotation ran"
    new_only = EncryptedSession("busy", SQLAlchemySession("busy", engine=engine), new, ttl=DAY)
    stored = await new_only.get_items()
    lost = [item for item in history + written if item not in stored]
    assert lost == [] and stored == history + written
    assert done.rotated == 200


async def test_rotation_refuses_rows_neither_key_reads(engine: AsyncEngine) -> None:
    old, new, stranger = key(), key(), key()
    await old_key_history(engine, "mixed", old, [0, 0])
    await EncryptedSession("mixed", SQLAlchemySession("mixed", engine=engine), stranger).add_items(
        [{"role": "user", "content": "written with another key"}])
    before = await SQLAlchemySession("mixed", engine=engine).get_items()
    with pytest.raises(CourseError, match="1 rows that neither key reads: nothing was rotated"):
        await rotation.rotate_key("mixed", engine, old, new)
    assert await SQLAlchemySession("mixed", engine=engine).get_items() == before
    with pytest.raises(CourseError, match="not a Fernet key"):
        await rotation.rotate_key("mixed", engine, "a passphrase", new)
