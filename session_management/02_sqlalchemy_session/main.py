"""Lesson 02: SQLAlchemySession, production session storage on PostgreSQL, MySQL or SQLite.

    uv run python -m session_management.02_sqlalchemy_session.main                      # SQLite file
    uv run python -m session_management.02_sqlalchemy_session.main --database postgres   # docker compose up -d
    uv run python -m session_management.02_sqlalchemy_session.main --database mysql

`main()` is the table of contents: one function per step of the README, in its order.
"""

from __future__ import annotations

import argparse
import asyncio

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.exc import CompileError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from session_management.common import (
    agent_says,
    choose_model,
    create_session_tables,
    heading,
    item_line,
    lesson_parser,
    note,
    open_database,
    redact,
    resolve_database_url,
    run_lesson,
    sdk_store_pool,
    show_items,
    step,
    user_says,
)

USERS = 50
NAMES = ["Ada", "Alan", "Barbara", "Claude", "Dennis", "Edsger", "Frances", "Grace", "Hedy", "Ivan"]


async def ask(agent: Agent, text: str, session: SQLAlchemySession) -> str:
    user_says(text)
    result = await Runner.run(agent, text, session=session)
    agent_says(result.final_output)
    return str(result.final_output)


def is_mysql(engine: AsyncEngine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


async def smallest_program(url: str, agent: Agent) -> None:
    """README step 1: `from_url` builds its own engine; whoever calls it owns that engine and disposes of it."""
    step("1. The smallest program: SQLAlchemySession.from_url")
    session = SQLAlchemySession.from_url(
        "lesson02-from-url",
        url=url,
        engine_kwargs={"pool_pre_ping": True},
        create_tables=not url.startswith("mysql"),  # MySQL cannot: step 3
    )
    try:
        if is_mysql(session.engine):
            await create_session_tables(session.engine)
        await session.clear_session()  # a rerun starts from the same empty history
        await ask(agent, "My name is Ada.", session)
        await ask(agent, "What is my name?", session)
    finally:
        await session.engine.dispose()
    note("session.engine is the engine from_url created; disposing of it closed its connections.")


async def one_engine_per_process(agent: Agent, engine: AsyncEngine) -> None:
    """README step 2: one engine, a cheap session object per conversation, many conversations at once."""
    step(f"2. One engine per process: {USERS} users at once")

    async def conversation(number: int) -> tuple[str, str]:
        name = f"{NAMES[number % len(NAMES)]}{number}"
        session = SQLAlchemySession(f"lesson02-user-{number}", engine=engine)
        await session.clear_session()
        await Runner.run(agent, f"Hello, my name is {name}.", session=session)
        result = await Runner.run(agent, "What is my name?", session=session)
        return name, str(result.final_output)

    results = await asyncio.gather(*(conversation(n) for n in range(USERS)))
    correct = sum(answer == f"Your name is {name}." for name, answer in results)
    for name, answer in results[:3]:
        note(f"{name:>10}: {answer}")
    note(f"... {correct} of {USERS} users got their own name back.")
    note(f"Pool after the burst: {engine.pool.status()}")


async def tables(engine: AsyncEngine) -> None:
    """README step 3: create_tables=True, and why MySQL needs the tables written out."""
    step("3. Tables: create_tables, and MySQL")
    if is_mysql(engine):
        # Fresh table names, so the SDK really has to create them (create_all skips tables that exist).
        probe = SQLAlchemySession("lesson02-probe", engine=engine, create_tables=True,
                                  sessions_table="lesson02_probe_sessions", messages_table="lesson02_probe_messages")
        try:
            await probe.get_items()
        except CompileError as error:
            note(f"create_tables=True failed as expected: {error}")
            note("(openai-agents-python issue 4740: the SDK's String columns have no length, which MySQL requires.)")
        note("So on MySQL the tables are written out: VARCHAR(255) ids, a binary collation, LONGTEXT items.")
    else:
        note("create_tables=True works on this database; the course created the same tables at start-up, "
             "with VARCHAR(255) ids.")
    note("Tables: agent_sessions (one row per session id), agent_messages (one row per item).")
    alice = SQLAlchemySession("lesson02-Alice", engine=engine)
    await alice.clear_session()
    await alice.add_items([{"role": "user", "content": "Alice's secret"}])
    note(f"Session 'lesson02-alice' reads {len(await SQLAlchemySession('lesson02-alice', engine=engine).get_items())} "
         "items of 'lesson02-Alice': ids are compared byte by byte.")


async def session_api(agent: Agent, engine: AsyncEngine) -> None:
    """README step 4: what the Runner calls, and what your own code calls to show, trim or reset a conversation."""
    step("4. The session API")
    session = SQLAlchemySession("lesson02-ada", engine=engine)
    await session.clear_session()
    await ask(agent, "Hi! My name is Ada and I live in London.", session)
    await ask(agent, "My favorite language is Python.", session)
    await ask(agent, "What do you know about me?", session)
    note("get_items(), oldest first:")
    show_items(await session.get_items())
    note("get_items(limit=2), the latest two:")
    show_items(await session.get_items(limit=2))
    note("A new session object with the same id, as after a restart, sees the same rows:")
    again = SQLAlchemySession("lesson02-ada", engine=engine)
    await ask(agent, "Where do I live?", again)
    note(f"pop_item() removed the newest item: {item_line(await again.pop_item())}")
    note(f"Items now: {len(await session.get_items())}.")
    await session.clear_session()
    note(f"clear_session(): get_items() -> {await session.get_items()}, pop_item() -> {await session.pop_item()}")


async def errors(engine: AsyncEngine) -> None:
    """README step 5: the errors a reader meets, each caught where the program can answer."""
    step("5. Errors you will meet")
    session = SQLAlchemySession("lesson02-errors", engine=engine)
    await session.clear_session()
    await session.add_items([{"role": "user", "content": "kept"}])
    try:
        await session.add_items([{"role": "user", "content": object()}])  # type: ignore[list-item, misc]
    except TypeError as error:
        note(f"A non-JSON item is refused before anything is written: TypeError: {error}")
    note(f"History unchanged: {len(await session.get_items())} item.")
    broken = SQLAlchemySession("lesson02-errors", engine=engine, messages_table="no_such_table")
    try:
        await broken.get_items()
    except SQLAlchemyError as error:
        note(f"Missing tables arrive as SQLAlchemyError subclasses: {type(error).__name__}")


async def cleanup(engine: AsyncEngine) -> None:
    """README step 6: engine.dispose() closes the pooled connections, once, when the process stops."""
    step("6. Cleanup: engine.dispose()")
    note(f"Open connections in the pool before: {idle_connections(engine)}")
    await engine.dispose()
    note(f"Open connections in the pool after:  {idle_connections(engine)}")


def idle_connections(engine: AsyncEngine) -> int:
    """Connections waiting in the pool (a QueuePool; SQLite's one-connection pool is one too)."""
    pool = engine.pool
    assert isinstance(pool, QueuePool)  # SQLAlchemy's default for a server, and lesson 02's one-connection SQLite
    return pool.checkedin()


async def main(args: argparse.Namespace) -> None:
    choice = choose_model()
    url = resolve_database_url(args.database)
    heading("Lesson 02: SQLAlchemySession")
    print(f"model   : {choice.description}\ndatabase: {redact(url)}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)

    # open_database checks the server answers (one clear line if not: wrong password, server down, no rights),
    # creates an SQLite file's folder and the SDK's tables (correctly on MySQL too, see step 3), and disposes of
    # the engine when the block ends, even after an error. sdk_store_pool: one pooled connection on an SQLite
    # file, so writers queue in the pool (PITFALLS.md, "SQLite").
    async with open_database(url, **sdk_store_pool(url)) as engine:
        await smallest_program(url, agent)  # makes an engine of its own: from_url's way
        await one_engine_per_process(agent, engine)
        await tables(engine)
        await session_api(agent, engine)
        await errors(engine)
        await cleanup(engine)


if __name__ == "__main__":
    run_lesson(main, lesson_parser("Lesson 02: SQLAlchemySession on SQLite, PostgreSQL or MySQL").parse_args())
