"""Lesson 01: SQLiteSession, the simplest memory an agent can have.

    uv run python -m session_management.01_sqlite_session.main

Runs offline by default (no API key); set OPENAI_API_KEY in .env to talk to a real model.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agents import Agent, Runner, SessionSettings, SQLiteSession

from session_management.common import (
    agent_says,
    choose_model,
    heading,
    lesson_parser,
    note,
    run_lesson,
    show_items,
    step,
    user_says,
)
from session_management.common.settings import DATA_DIR, writable_folder


async def ask(agent: Agent, text: str, session: SQLiteSession | None = None) -> str:
    user_says(text)
    result = await Runner.run(agent, text, session=session)
    agent_says(result.final_output)
    return str(result.final_output)


async def main(args: argparse.Namespace) -> None:
    folder = writable_folder(args.data_dir, "lesson 01's database")  # a bad --data-dir fails before any output
    choice = choose_model()
    heading("Lesson 01: SQLiteSession")
    print(f"model: {choice.description}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)
    await without_a_session(agent)
    session = await with_a_session(agent)
    await ids_keep_conversations_apart(agent, session)
    on_disk, db_file = await a_file_survives_a_restart(agent, folder)
    await the_four_operations(agent, on_disk, db_file)
    await pop_item_undoes_a_turn(agent, on_disk)
    run_sync_too()
    session.close()


async def without_a_session(agent: Agent) -> None:
    step("1. Without a session, every run starts from nothing")
    await ask(agent, "Hi! My name is Ada.")
    await ask(agent, "What is my name?")
    note("The second run never saw the first message: nothing carried the history over.")


async def with_a_session(agent: Agent) -> SQLiteSession:
    step("2. With a session, the Runner loads the history before each run and saves the new items after")
    session = SQLiteSession("ada")  # no db_path: an in-memory database, gone when the process ends
    await ask(agent, "Hi! My name is Ada.", session)
    await ask(agent, "What is my name?", session)
    items = await session.get_items()
    note(f"The session now holds {len(items)} items:")
    show_items(items)
    return session


async def ids_keep_conversations_apart(agent: Agent, session: SQLiteSession) -> None:
    step("3. Session ids keep conversations apart")
    grace = SQLiteSession("grace")
    await ask(agent, "My name is Grace.", grace)
    await ask(agent, "What is my name?", grace)
    await ask(agent, "What is my name?", session)
    note("Same agent, different session ids: each user sees only their own history.")
    grace.close()


async def a_file_survives_a_restart(agent: Agent, folder: Path) -> tuple[SQLiteSession, Path]:
    step("4. A file-backed session survives a restart")
    db_file = folder / "conversations.db"
    first = SQLiteSession("ada-on-disk", db_file)
    await first.clear_session()  # start the demo from a clean slate on every run
    await ask(agent, "My name is Ada and I live in London.", first)
    first.close()
    note(f"The process could stop here. The history is in {db_file}.")
    second = SQLiteSession("ada-on-disk", db_file)  # a new object, as after a restart
    await ask(agent, "Where do I live?", second)
    return second, db_file


async def the_four_operations(agent: Agent, second: SQLiteSession, db_file: Path) -> None:
    step("5. The four operations: get_items, add_items, pop_item, clear_session")
    everything = await second.get_items()
    latest_two = await second.get_items(limit=2)
    note(f"get_items() -> {len(everything)} items; get_items(limit=2) -> the latest {len(latest_two)}:")
    show_items(latest_two)
    limited = SQLiteSession("ada-on-disk", db_file, session_settings=SessionSettings(limit=2))
    note(f"SessionSettings(limit=2) makes that the default: {len(await limited.get_items())} items")
    limited.close()

    await second.add_items([{"role": "user", "content": "My favorite color is green."},
                            {"role": "assistant", "content": "Noted: green."}])
    note("add_items() stored two items by hand (no model involved):")
    await ask(agent, "What is my favorite color?", second)


async def pop_item_undoes_a_turn(agent: Agent, second: SQLiteSession) -> None:
    step("5b. pop_item() undoes a turn, e.g. to correct a question")
    await ask(agent, "What is my favourite colour?", second)  # the British spelling: no such fact
    answer = await second.pop_item()  # the newest item: the agent's answer
    question = await second.pop_item()  # then the question itself
    note(f"popped: {answer and answer.get('role')} + {question and question.get('role')} items")
    await ask(agent, "What is my favorite color?", second)
    note(f"History after the correction: {len(await second.get_items())} items, the wrong question gone.")

    await second.clear_session()
    note(f"clear_session() -> {len(await second.get_items())} items left for 'ada-on-disk'")
    second.close()


def run_sync_too() -> None:
    step("6. Runner.run_sync works too (for code that is not async)")
    note("It runs its own event loop, so it cannot be called from inside one; see the README.")


def lesson(args: argparse.Namespace) -> None:
    asyncio.run(main(args))
    sync_example()  # outside asyncio.run: run_sync refuses to run inside an event loop
    print("\nNext: lesson 02 stores the same sessions in PostgreSQL, MySQL or SQLite through SQLAlchemy.")


def sync_example() -> None:
    """Step 6 for real: Runner.run_sync outside any event loop."""
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choose_model().model)
    session = SQLiteSession("sync-user")
    for text in ("My name is Alan.", "What is my name?"):
        user_says(text)
        agent_says(Runner.run_sync(agent, text, session=session).final_output)
    session.close()


if __name__ == "__main__":
    parser = lesson_parser("Lesson 01: SQLiteSession", database=False)
    parser.add_argument("--data-dir", default=str(DATA_DIR / "lesson01"),
                        help="folder for the file-backed session (default: .data/lesson01)")
    run_lesson(lesson, parser.parse_args())
