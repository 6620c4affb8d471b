"""Lesson 04: EncryptedSession, history encrypted at rest in any database.

    uv run python -m session_management.04_encrypted_session.main [--database sqlite|postgres|mysql|URL]

The key comes from ENCRYPTION_KEY (generate one with
`uv run python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`); without it
the run uses a throwaway key, says so, and clears its rows at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from datetime import UTC, datetime

from agents import Agent, Runner, TResponseInputItem
from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    agent_says,
    choose_model,
    heading,
    lesson_parser,
    load_env,
    note,
    open_database,
    redact,
    resolve_database_url,
    run_lesson,
    step,
    user_says,
)

from .rotation import KeyRingSession, check_key, rotate_key

SESSION_ID = "lesson04-ada"


def encryption_key() -> tuple[str, bool]:
    """The lesson's master key and whether it is saved somewhere (ENCRYPTION_KEY), validated."""
    load_env()
    key = os.environ.get("ENCRYPTION_KEY", "").strip()
    if key:
        return check_key(key), True
    print("WARNING: ENCRYPTION_KEY is not set, so this run uses a random key. Anything it encrypts is unreadable\n"
          "         after the process ends. Set ENCRYPTION_KEY in .env (see the README) to keep data.",
          file=sys.stderr)
    return Fernet.generate_key().decode("ascii"), False


def token_time(row: str) -> datetime:
    """The creation time every Fernet token carries in clear (bytes 1-8, big-endian seconds): no key needed."""
    token = base64.urlsafe_b64decode(json.loads(row)["payload"])
    return datetime.fromtimestamp(int.from_bytes(token[1:9], "big"), UTC)


async def stored_rows(engine: AsyncEngine, session_id: str) -> list[str]:
    """What the database really holds for a session: the raw message_data column."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT message_data FROM agent_messages WHERE session_id = :sid ORDER BY created_at, id"),
            {"sid": session_id},
        )
        return [row[0] for row in result]


async def ask(agent: Agent, message: str, session: EncryptedSession) -> str:
    user_says(message)
    result = await Runner.run(agent, message, session=session)
    agent_says(result.final_output)
    return str(result.final_output)


async def rotation(agent: Agent, engine: AsyncEngine, key: str, session: EncryptedSession) -> None:
    """Step 6: the app reads both keys while one transaction per session re-encrypts the rows in place."""
    new_key = Fernet.generate_key().decode("ascii")
    before = await stored_times(engine, SESSION_ID)
    app = KeyRingSession(SESSION_ID, SQLAlchemySession(SESSION_ID, engine=engine), [new_key, key], ttl=3600)
    await ask(agent, "What is my favorite color?", app)  # the app, switched: writes new, reads both
    done = await rotate_key(SESSION_ID, engine, key, new_key)
    rotated = EncryptedSession(SESSION_ID, SQLAlchemySession(SESSION_ID, engine=engine), new_key, ttl=3600)
    note(f"re-encrypted {done.rotated} rows in one transaction ({done.already_new} were already under the new "
         f"key); the new key alone reads {len(await rotated.get_items())}, the old one "
         f"{len(await session.get_items())}.")
    after = await stored_times(engine, SESSION_ID)
    kept = after[: len(before)] == before
    note(f"token times and created_at of the old rows unchanged (so the TTL did not restart)? {kept}")
    await rotate_key(SESSION_ID, engine, new_key, key)  # the new key was never saved: back to the lesson's
    note("The lesson rotates back to its own key: a rotation's new key must be saved before the old one goes.")


async def stored_times(engine: AsyncEngine, session_id: str) -> list[tuple[datetime, str]]:
    """Each row's token time and created_at, oldest first: what a rotation must not change."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT message_data, created_at FROM agent_messages WHERE session_id = :sid ORDER BY id"),
            {"sid": session_id},
        )
        return [(token_time(data), str(created)) for data, created in result]


async def main(args: argparse.Namespace) -> None:
    choice = choose_model()
    url = resolve_database_url(args.database)
    heading("Lesson 04: EncryptedSession")
    print(f"model   : {choice.description}\ndatabase: {redact(url)}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)

    async with open_database(url) as engine:
        key, saved = encryption_key()  # after the database check, so a database mistake is the only message
        session = await wrap_any_session(agent, engine, key)
        await what_the_database_holds(engine)
        await a_wrong_key(agent, engine, session)
        await one_key_per_session(engine, key, session)
        await ttl(engine, key)
        await rotating_the_key(agent, engine, key, session, saved)


async def wrap_any_session(agent: Agent, engine: AsyncEngine, key: str) -> EncryptedSession:
    step("1. Wrap any session: EncryptedSession(session_id, underlying_session, encryption_key, ttl)")
    underlying = SQLAlchemySession(SESSION_ID, engine=engine)
    await underlying.clear_session()
    session = EncryptedSession(SESSION_ID, underlying, key, ttl=3600)
    await ask(agent, "My name is Ada and my favorite color is teal.", session)
    await ask(agent, "What is my name?", session)
    note("The agent remembers: items are decrypted on the way out of the database.")
    return session


async def what_the_database_holds(engine: AsyncEngine) -> None:
    step("2. What the database actually holds")
    rows = await stored_rows(engine, SESSION_ID)
    note(f"{len(rows)} rows in agent_messages; the first one, as stored:")
    note(rows[0][:110] + ("..." if len(rows[0]) > 110 else ""))
    # Phrases with spaces, because a ciphertext is base64 text: a bare "Ada" turns up in it by chance
    # about once in a hundred runs, while a space never does.
    clues = ("name is Ada", "color is teal")
    leaked = [row for row in rows if any(clue in row for clue in clues)]
    note(f"rows containing {' or '.join(map(repr, clues))} in plain text: {len(leaked)}")
    note(f"but anyone can read when each item was written (in clear in the token): "
         f"{token_time(rows[0]):%Y-%m-%d %H:%M:%S} UTC")


async def a_wrong_key(agent: Agent, engine: AsyncEngine, session: EncryptedSession) -> None:
    step("3. A wrong key: no error, just no history")
    wrong_key = Fernet.generate_key().decode()
    wrong = EncryptedSession(SESSION_ID, SQLAlchemySession(SESSION_ID, engine=engine), wrong_key)
    note(f"get_items() with the wrong key -> {await wrong.get_items()} (silently empty)")
    await ask(agent, "What is my name?", wrong)
    note("Worse, that run stored two new items encrypted with the wrong key in the same session:")
    note(f"the right key now reads {len(await session.get_items())} items, the wrong one "
         f"{len(await wrong.get_items())}, the database holds {len(await stored_rows(engine, SESSION_ID))} rows.")
    note("Never call pop_item() with a wrong key on SQLAlchemySession: it discards unreadable items while "
         "looking for a readable one (see the README).")
    for _ in range(2):  # remove the wrong-key turn, newest first, with the key that wrote it
        await wrong.pop_item()
    note(f"after popping the wrong-key turn with its own key: {len(await session.get_items())} readable items")


async def one_key_per_session(engine: AsyncEngine, key: str, session: EncryptedSession) -> None:
    step("4. One key per session, derived from the master key and the session id")
    other_id = "lesson04-grace"
    other = EncryptedSession(other_id, SQLAlchemySession(other_id, engine=engine), key)
    await other.clear_session()
    same_item: TResponseInputItem = {"role": "user", "content": "identical text"}
    await session.add_items([same_item])
    await other.add_items([same_item])
    mine, theirs = (await stored_rows(engine, SESSION_ID))[-1], (await stored_rows(engine, other_id))[-1]
    note(f"same plaintext, same master key, different sessions -> identical ciphertext? {mine == theirs}")
    copied = await SQLAlchemySession(SESSION_ID, engine=engine).get_items(limit=1)
    await SQLAlchemySession(other_id, engine=engine).add_items(copied)  # an attacker copies a row across
    readable = await other.get_items()
    note(f"a row copied from {SESSION_ID!r} into {other_id!r} decrypts there? {len(readable) == 2}")
    await session.pop_item()
    await other.clear_session()


async def ttl(engine: AsyncEngine, key: str) -> None:
    step("5. TTL: old items expire on read")
    ttl_id = "lesson04-ttl"
    short_lived = EncryptedSession(ttl_id, SQLAlchemySession(ttl_id, engine=engine), key, ttl=2)
    await short_lived.clear_session()
    await short_lived.add_items([{"role": "user", "content": "this expires"}])
    note(f"just written: {len(await short_lived.get_items())} readable item")
    await asyncio.sleep(3.2)  # Fernet timestamps are whole seconds, so wait past ttl + 1
    note(f"after 3 s with ttl=2: {len(await short_lived.get_items())} readable items, "
         f"{len(await stored_rows(engine, ttl_id))} row still in the database")
    await short_lived.clear_session()


async def rotating_the_key(agent: Agent, engine: AsyncEngine, key: str, session: EncryptedSession,
                           saved: bool) -> None:
    step("6. Rotating the key without stopping the app")
    await rotation(agent, engine, key, session)
    if saved:
        note(f"The rows stay in agent_messages (session_id {SESSION_ID!r}), readable with your ENCRYPTION_KEY, "
             "so you can look at the ciphertext with psql, mysql or sqlite3; the next run clears them.")
    else:
        await session.clear_session()
        note("ENCRYPTION_KEY is not set, so the key was a throwaway: the lesson clears its rows, which nobody "
             "could read again.")


if __name__ == "__main__":
    run_lesson(main, lesson_parser("Lesson 04: EncryptedSession").parse_args())
