"""Lesson 04: EncryptedSession on every backend, and the SDK behaviour its README states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agents import SQLiteSession
from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_session_tables
from tests.lessons import REPO_ROOT, RunHere
from tests.readme_api import missing_methods, named_methods

LESSON = REPO_ROOT / "session_management" / "04_encrypted_session"


def key() -> str:
    return Fernet.generate_key().decode()


def test_lesson_04_on_every_backend(run_here: RunHere, database_url: str) -> None:
    done = run_here("04_encrypted_session", "--database", database_url)
    assert done.returncode == 0, done.stderr
    assert "WARNING: ENCRYPTION_KEY is not set" in done.stderr and "Traceback" not in done.stderr
    sections = {s.split(".")[0]: s for s in done.stdout.split("\n--- ")[1:]}
    assert "agent: Your name is Ada." in sections["1"]
    assert '{"__enc__":1,"v":1,"kid":"hkdf-v1","payload":"gAAAAA' in sections["2"]
    assert "rows containing 'name is Ada' or 'color is teal' in plain text: 0" in sections["2"]
    assert "get_items() with the wrong key -> [] (silently empty)" in sections["3"]
    assert "agent: I don't know your name yet" in sections["3"]
    assert "the right key now reads 4 items, the wrong one 2, the database holds 6 rows." in sections["3"]
    assert "after popping the wrong-key turn with its own key: 4 readable items" in sections["3"]
    assert "identical ciphertext? False" in sections["4"] and "decrypts there? False" in sections["4"]
    assert "just written: 1 readable item" in sections["5"]
    assert "after 3 s with ttl=2: 0 readable items, 1 row still in the database" in sections["5"]
    assert "re-encrypted 4 items; new key reads 4, old key reads 0" in sections["6"]
    assert "agent: Your favorite color is teal." in sections["6"]
    assert "The rows stay in agent_messages" in sections["6"]  # for a reader who opens psql to see them


def test_the_key_from_the_environment_is_used(run_here: RunHere, lesson_env: dict[str, str], tmp_path: Path) -> None:
    env = {**lesson_env, "ENCRYPTION_KEY": key()}
    done = run_here("04_encrypted_session", "--database", f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", env=env)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr


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
