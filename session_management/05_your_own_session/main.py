"""Lesson 05: write your own Session, and hold it to the SDK's contract.

    uv run python -m session_management.05_your_own_session.main
    uv run python -m session_management.contract session_management.05_your_own_session.contract_store:fresh_store
"""

from __future__ import annotations

import argparse
import io
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import aiosqlite
from agents import Agent, Runner

from session_management.common import (
    agent_says,
    choose_model,
    heading,
    lesson_parser,
    note,
    run_lesson,
    step,
    user_says,
)
from session_management.contract.__main__ import run as run_contract

from .chat_store import SCHEMA, ChatSession, ChatStore, decode
from .contract_store import fresh_store


async def remember(folder: Path) -> None:
    connection = await aiosqlite.connect(folder / "chat.db")
    try:
        await connection.execute(SCHEMA)
        store = ChatStore(connection)
        agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choose_model().model)
        for message in ("My name is Ada.", "What is my name?"):
            user_says(message)
            session = ChatSession("ada", store)  # a new object per turn, as a web request would make
            agent_says((await Runner.run(agent, message, session=session)).final_output)
        rows = list(await connection.execute_fetchall("SELECT COUNT(*) FROM items WHERE session_id = 'ada'"))
        note(f"{rows[0][0]} rows in the items table, one per item")
    finally:
        await connection.close()


async def the_four_methods(folder: Path) -> None:
    connection = await aiosqlite.connect(folder / "methods.db")
    try:
        await connection.execute(SCHEMA)
        session = ChatSession("demo", ChatStore(connection), {"limit": 2})
        await session.add_items([{"role": "user", "content": f"message {n}"} for n in range(1, 4)])
        note(f"get_items() with session_settings limit=2 -> {[i['content'] for i in await session.get_items()]}")
        note(f"get_items(limit=3) -> {[i['content'] for i in await session.get_items(limit=3)]}")
        note(f"pop_item() -> {await session.pop_item()}")
        await session.clear_session()
        note(f"after clear_session(): get_items() -> {await session.get_items()}, pop_item() -> "
             f"{await session.pop_item()}")
    finally:
        await connection.close()


async def check_contract() -> None:
    await run_contract(fresh_store, [])


class NewestFirst(ChatSession):
    """A plausible optimisation with a bug: read only the newest *limit* rows in SQL, and forget to reverse them."""

    async def get_items(self, limit: int | None = None) -> list[Any]:
        if limit is None:
            return await super().get_items()
        [rows] = await self.store.run([("SELECT data FROM items WHERE session_id = ? ORDER BY id DESC LIMIT ?",
                                        (self.session_id, limit))])
        return [decode(row[0]) for row in rows]


async def catch_a_bug() -> None:
    def buggy_store() -> Any:
        return fresh_store(NewestFirst)

    printed = io.StringIO()
    with redirect_stdout(printed):
        status = await run_contract(buggy_store, ["limit_is_the_newest_n"])  # the rule the README shows
    print(printed.getvalue().rstrip())
    note(f"exit status {status}: the contract caught it")


async def main(args: argparse.Namespace) -> None:
    heading("Lesson 05: write your own Session")
    print(f"model: {choose_model().description}")
    with tempfile.TemporaryDirectory() as scratch:
        step("1. Your store under an agent: a new session object per turn, the same history")
        await remember(Path(scratch))
        step("2. The four methods and session_settings")
        await the_four_methods(Path(scratch))
    step("3. The contract: every rule the SDK's own store keeps, on yours (python -m session_management.contract)")
    await check_contract()
    step("4. A bug the contract catches: the newest rows, newest first")
    await catch_a_bug()


if __name__ == "__main__":
    run_lesson(main, lesson_parser("Lesson 05: write your own Session", database=False).parse_args())
