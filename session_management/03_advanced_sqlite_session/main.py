"""Lesson 03: AdvancedSQLiteSession, usage analytics, structured queries and conversation branches.

    uv run python -m session_management.03_advanced_sqlite_session.main [--data-dir DIR]
"""

from __future__ import annotations

import argparse
from itertools import zip_longest
from pathlib import Path
from typing import Any, cast

from agents import Agent, Runner, function_tool
from agents.extensions.memory import AdvancedSQLiteSession

from session_management.common import (
    agent_says,
    choose_model,
    heading,
    item_line,
    lesson_parser,
    note,
    run_lesson,
    step,
    user_says,
)
from session_management.common.settings import DATA_DIR, writable_folder

SESSION_ID = "lesson03-ada"


@function_tool
def get_weather(city: str) -> str:
    """Today's weather for a city (a fixed answer: this lesson is about sessions, not weather)."""
    return f"Sunny and 21 C in {city}."


async def ask(agent: Agent, text: str, session: AdvancedSQLiteSession) -> str:
    user_says(text)
    result = await Runner.run(agent, text, session=session)
    await session.store_run_usage(result)  # right after every run, or the turn's usage is never recorded
    agent_says(result.final_output)
    return str(result.final_output)


async def side_by_side(session: AdvancedSQLiteSession, left: str, right: str) -> None:
    """Print two branches' histories next to each other."""
    width = 52
    columns = []
    for branch in (left, right):
        await session.switch_to_branch(branch)
        columns.append([item_line(item)[: width - 2] for item in await session.get_items()])
    print(f"    {left:<{width}}| {right}")
    print(f"    {'-' * width}+{'-' * width}")
    for a, b in zip_longest(*columns, fillvalue=""):
        print(f"    {a:<{width}}| {b}")


async def main(args: argparse.Namespace) -> None:
    folder = writable_folder(args.data_dir, "lesson 03's database")  # a bad --data-dir fails before any output
    choice = choose_model()
    heading("Lesson 03: AdvancedSQLiteSession")
    print(f"model: {choice.description}")
    agent = Agent(name="Assistant", instructions="Reply very concisely. Use tools when they help.",
                  model=choice.model, tools=[get_weather])
    await in_memory(agent)
    db_file = folder / "advanced.db"
    db_file.unlink(missing_ok=True)  # every run starts from the same clean file
    session = AdvancedSQLiteSession(session_id=SESSION_ID, db_path=db_file, create_tables=True)
    await a_conversation_with_a_tool(agent, session, db_file)
    await usage_analytics(session)
    await structured_queries(session)
    await branching(agent, session)
    await switching_and_deleting(agent, session)
    session.close()
    await the_file_keeps_everything(db_file)


async def in_memory(agent: Agent) -> None:
    step("1. In memory: the same constructor without db_path")
    scratch = AdvancedSQLiteSession(session_id="scratch", create_tables=True)  # keyword-only arguments
    await ask(agent, "My name is Grace.", scratch)
    note(f"{len(await scratch.get_items())} items, gone when the object is closed")
    scratch.close()


async def a_conversation_with_a_tool(agent: Agent, session: AdvancedSQLiteSession, db_file: Path) -> None:
    step(f"2. A conversation with a tool call, stored in {db_file.name}; store_run_usage after each run")
    await ask(agent, "My name is Ada and I live in Lisbon.", session)
    await ask(agent, "What's the weather in Lisbon?", session)
    await ask(agent, "What is my favourite colour?", session)


async def usage_analytics(session: AdvancedSQLiteSession) -> None:
    step("3. Usage analytics")
    usage = await session.get_session_usage()
    note(f"get_session_usage(): {usage}")
    note("get_turn_usage(), one row per turn:")
    note(f"{'turn':>4} {'requests':>8} {'input':>7} {'output':>7} {'total':>7}")
    for turn in cast(list[dict[str, Any]], await session.get_turn_usage()):  # no turn number given: a list
        note(f"{turn['user_turn_number']:>4} {turn['requests']:>8} {turn['input_tokens']:>7} "
             f"{turn['output_tokens']:>7} {turn['total_tokens']:>7}")
    note(f"get_tool_usage(): {await session.get_tool_usage()}  (tool, calls, turn)")


async def structured_queries(session: AdvancedSQLiteSession) -> None:
    step("4. Structured queries")
    for turn in await session.get_conversation_turns():
        note(f"turn {turn['turn']}: {turn['content']}")
    found = await session.find_turns_by_content("weather")
    note(f"find_turns_by_content('weather') -> turns {[turn['turn'] for turn in found]}")
    by_turn = await session.get_conversation_by_turns()
    note("get_conversation_by_turns(), the item types of each turn:")
    for number, items in by_turn.items():
        note(f"turn {number}: " + ", ".join(
            str(item["type"]) + (f"({item['tool_name']})" if item["tool_name"] else "") for item in items))


async def branching(agent: Agent, session: AdvancedSQLiteSession) -> None:
    step("5. Branching: re-ask turn 3 differently, without losing the original")
    branch = await session.create_branch_from_turn(3, "rephrased")
    note(f"create_branch_from_turn(3) -> {branch!r}; the branch holds the history before turn 3 "
         f"({len(await session.get_items())} items) and is now current")
    await ask(agent, "My favorite color is teal.", session)
    await ask(agent, "What do you know about me?", session)
    await side_by_side(session, "main", "rephrased")


async def switching_and_deleting(agent: Agent, session: AdvancedSQLiteSession) -> None:
    step("6. Switching, branching by content, deleting")
    await session.switch_to_branch("main")
    await ask(agent, "What is my name?", session)  # main goes on where it was
    weather = await session.create_branch_from_content("weather", "weather-elsewhere")
    note(f"create_branch_from_content('weather') -> {weather!r}, starting before the first matching turn")
    await ask(agent, "What's the weather in Porto?", session)
    note(f"tool usage on {weather!r}: {await session.get_tool_usage()}")
    for info in await session.list_branches():
        note(f"branch {info['branch_id']:<18} messages={info['message_count']:<3} turns={info['user_turns']} "
             f"current={info['is_current']}")
    await session.switch_to_branch("main")
    await session.delete_branch("weather-elsewhere")
    note(f"after delete_branch: {[b['branch_id'] for b in await session.list_branches()]}")
    for branch_id in ("main", "rephrased"):
        note(f"usage on {branch_id!r}: {await session.get_session_usage(branch_id=branch_id)}")


async def the_file_keeps_everything(db_file: Path) -> None:
    step("7. The file keeps everything: a new object on the same file and id")
    reopened = AdvancedSQLiteSession(session_id=SESSION_ID, db_path=db_file)
    branches = [b["branch_id"] for b in await reopened.list_branches()]
    note(f"branches: {branches}; main holds {len(await reopened.get_items())} items; "
         f"usage: {await reopened.get_session_usage()}")
    reopened.close()


if __name__ == "__main__":
    parser = lesson_parser("Lesson 03: AdvancedSQLiteSession", database=False)
    parser.add_argument("--data-dir", default=str(DATA_DIR / "lesson03"),
                        help="folder for the session file (default: .data/lesson03)")
    run_lesson(main, parser.parse_args())
