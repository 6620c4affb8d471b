"""Lesson 02: SQLAlchemySession, production session storage on PostgreSQL, MySQL or SQLite.

    uv run python -m session_management.02_sqlalchemy_session.main                      # SQLite file
    uv run python -m session_management.02_sqlalchemy_session.main --database postgres   # docker compose up -d
    uv run python -m session_management.02_sqlalchemy_session.main --database mysql
"""

from __future__ import annotations

import argparse
import asyncio

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.exc import CompileError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    agent_says,
    choose_model,
    create_session_tables,
    heading,
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


async def from_url_demo(url: str, agent: Agent) -> None:
    """`from_url` builds its own engine; whoever calls it owns that engine and must dispose of it."""
    is_mysql = url.startswith("mysql")
    session = SQLAlchemySession.from_url(
        "lesson02-from-url",
        url=url,
        engine_kwargs={"pool_pre_ping": True},
        create_tables=not is_mysql,  # see step 2 for why not on MySQL
    )
    try:
        if is_mysql:
            await create_session_tables(session.engine)
        await session.clear_session()
        await ask(agent, "My name is Ada.", session)
        await ask(agent, "What is my name?", session)
    finally:
        await session.engine.dispose()
    note("session.engine is the engine from_url created; disposing it closes its connections.")


async def create_tables_on_mysql(engine: AsyncEngine) -> None:
    # Fresh table names, so the SDK really has to create them (create_all skips tables that exist).
    probe = SQLAlchemySession("lesson02-probe", engine=engine, create_tables=True,
                              sessions_table="lesson02_probe_sessions", messages_table="lesson02_probe_messages")
    try:
        await probe.get_items()
    except CompileError as error:
        note(f"create_tables=True failed as expected: {error}")
        note("(openai-agents-python issue 4740: the SDK's String columns have no length, which MySQL requires.)")


async def many_users(agent: Agent, engine: AsyncEngine) -> None:
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


async def main(args: argparse.Namespace) -> None:
    choice = choose_model()
    url = resolve_database_url(args.database)
    heading("Lesson 02: SQLAlchemySession")
    print(f"model   : {choice.description}\ndatabase: {redact(url)}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)

    # open_database checks the server answers (one clear line if not: wrong password, server down, no rights),
    # creates an SQLite file's folder and the SDK's tables (correctly on MySQL too, see step 2), and disposes of
    # the engine when the block ends, even after an error. sdk_store_pool: on SQLite, one pooled connection, as the
    # README says (the SDK's add_items fails at once with "database is locked" while another connection writes).
    async with open_database(url, **sdk_store_pool(url)) as engine:
        step("1. SQLAlchemySession.from_url: the quickest start")
        await from_url_demo(url, agent)
        await one_engine(engine)
        session = await a_conversation_with_memory(agent, engine)
        await a_new_session_object(agent, engine)
        await many_users_at_once(agent, engine)
        await error_handling(session, engine)

    step("7. engine.dispose() ran when the `async with` block ended: no connections are left open")


async def one_engine(engine: AsyncEngine) -> None:
    step("2. One engine for the whole application, tables created once")
    if engine.dialect.name in ("mysql", "mariadb"):
        await create_tables_on_mysql(engine)
        note("So on MySQL the course creates the same tables itself: VARCHAR(255) ids, LONGTEXT items.")
    else:
        note("create_tables=True works on this database; the course helper creates the same tables, "
             "with VARCHAR(255) ids.")
    await create_session_tables(engine)
    note("Tables: agent_sessions (one row per session id), agent_messages (one row per item).")


async def a_conversation_with_memory(agent: Agent, engine: AsyncEngine) -> SQLAlchemySession:
    step("3. A conversation with memory")
    session = SQLAlchemySession("lesson02-ada", engine=engine)
    await session.clear_session()
    await ask(agent, "Hi! My name is Ada and I live in London.", session)
    await ask(agent, "My favorite language is Python.", session)
    await ask(agent, "What do you know about me?", session)
    note("Stored items, oldest first:")
    show_items(await session.get_items())
    return session


async def a_new_session_object(agent: Agent, engine: AsyncEngine) -> None:
    step("4. A new session object sees the same rows (as after a restart)")
    again = SQLAlchemySession("lesson02-ada", engine=engine)
    await ask(agent, "Where do I live?", again)


async def many_users_at_once(agent: Agent, engine: AsyncEngine) -> None:
    step(f"5. {USERS} users at once on one engine")
    await many_users(agent, engine)
    note(f"Pool after the burst: {engine.pool.status()}")


async def error_handling(session: SQLAlchemySession, engine: AsyncEngine) -> None:
    step("6. Error handling")
    try:
        await session.add_items([{"role": "user", "content": object()}])  # type: ignore[list-item, misc]
    except TypeError as error:
        note(f"A non-JSON item is refused before anything is written: TypeError: {error}")
    note(f"History unchanged: {len(await session.get_items())} items.")
    broken = SQLAlchemySession("lesson02-ada", engine=engine, messages_table="no_such_table")
    try:
        await broken.get_items()
    except SQLAlchemyError as error:
        note(f"Database errors arrive as SQLAlchemyError subclasses: {type(error).__name__}")


if __name__ == "__main__":
    run_lesson(main, lesson_parser("Lesson 02: SQLAlchemySession on SQLite, PostgreSQL or MySQL").parse_args())
