"""Lesson 11: long conversations: what they cost, limits, trimming, summaries and compaction on any backend.

    uv run python -m session_management.11_long_conversations.main                      # SQLite file
    uv run python -m session_management.11_long_conversations.main --database postgres   # or mysql, or a URL
    uv run python -m session_management.11_long_conversations.measure --help              # the full measurement
"""

from __future__ import annotations

import argparse
import uuid

from agents import Agent, RunConfig, Runner, function_tool
from agents.extensions.memory import SQLAlchemySession
from agents.memory import OpenAIResponsesCompactionSession, Session, SessionSettings
from openai import AsyncOpenAI
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    agent_says,
    choose_model,
    heading,
    item_line,
    lesson_parser,
    note,
    open_database,
    redact,
    resolve_database_url,
    run_lesson,
    show_items,
    step,
    user_says,
)
from session_management.stores.summarizing_session import SummarizingSession

from .compaction_standin import CompactionStandIn
from .measure import measure, print_table
from .tool_pairs import CheckedModel, RejectedInput, newest_items, whole_turns

CHATTER = ["Any tips for a rainy Sunday?", "Tell me something about octopuses.", "Recommend a board game.",
           "How long should I steep green tea?", "What is a good name for a cat?", "Is it going to be a long week?"]


def fresh(name: str) -> str:
    """A new session id per run, so every run of the lesson prints the same story."""
    return f"lesson11-{name}-{uuid.uuid4().hex[:8]}"


async def ask(agent: Agent, text: str, session: Session, run_config: RunConfig | None = None) -> str:
    user_says(text)
    result = await Runner.run(agent, text, session=session, run_config=run_config)
    agent_says(result.final_output)
    return str(result.final_output)


async def the_problem(url: str) -> None:
    step("1. A session only grows: every turn reads and sends the whole history")
    rows = await measure(url, [10, 100, 1000], repeats=1)  # one sample each: `measure` takes medians
    print_table(rows)
    note("items sent = the history + the new message; tokens estimated as 1 per 4 characters of JSON.")
    note("The read and the tokens grow with the history; `measure` runs 10,000 items and draws the plot.")


async def limits(agent: Agent, engine: AsyncEngine) -> None:
    step("2. SessionSettings(limit=N): the reads shrink, the storage does not")
    session_id = fresh("limit")
    session = SQLAlchemySession(session_id, engine=engine, session_settings=SessionSettings(limit=6))
    await ask(agent, "My name is Ada.", session)
    for text in CHATTER[:3]:
        await ask(agent, text, session)
    await ask(agent, "What is my name?", session)
    stored = await SQLAlchemySession(session_id, engine=engine).get_items()  # no limit: every row
    note(f"the model saw the newest 6 stored items; the database holds {len(stored)} and keeps growing.")
    override = RunConfig(session_settings=SessionSettings(limit=100))
    await ask(agent, "What is my name?", session, override)
    note("RunConfig(session_settings=...) overrides the session's limit for one run (here: 100).")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 degrees and sunny in {city}"


async def the_trap(engine: AsyncEngine) -> None:
    step("3. The trap: a trim that splits a tool call from its result")
    note("(offline model here, checking its input the way OpenAI's Responses API does)")
    model = CheckedModel()
    agent = Agent(name="Assistant", model=model, tools=[get_weather])
    session = SQLAlchemySession(fresh("tools"), engine=engine)
    await ask(agent, "What's the weather in Lisbon?", session)
    await ask(agent, "Thanks!", session)
    show_items(await session.get_items())
    try:
        await ask(agent, "And tomorrow?", session, RunConfig(session_input_callback=newest_items(4)))
    except RejectedInput as error:
        note(f"newest_items(4) sent the tool result without its call. OpenAI's Responses API answers: {error}")
        await session.pop_item()  # the question the failed run stored
    await ask(agent, "And tomorrow?", session, RunConfig(session_settings=SessionSettings(limit=4)))
    note(f"SessionSettings(limit=4) is safe at 0.24.0: the Runner dropped the orphaned result "
         f"({len(model.last_input) - 1} history items sent).")
    await ask(agent, "What about Porto?", session, RunConfig(session_input_callback=whole_turns(4)))
    note(f"whole_turns(4) cuts only before a user message: {len(model.last_input) - 1} history items sent.")


async def summaries(agent: Agent, engine: AsyncEngine) -> None:
    step("4. SummarizingSession: a budget, a summary of the oldest part, nothing lost")
    session_id = fresh("summary")
    session = SummarizingSession(
        SQLAlchemySession(session_id, engine=engine),
        max_items=8,  # keep the newest half verbatim, summarise the rest
        archive=SQLAlchemySession(f"{session_id}:archive", engine=engine),
    )
    await ask(agent, "My name is Ada and my favourite colour is teal.", session)
    for text in CHATTER:
        await ask(agent, text, session)
    await ask(agent, "What is my favourite colour?", session)
    show_items(await session.get_items())
    archived = await session.archive.get_items()  # type: ignore[union-attr]  # given above
    last = session.compactions[-1]
    note(f"{len(session.compactions)} summaries so far, each one transaction (atomic={last.atomic}); "
         f"the archive holds the {len(archived)} items they replaced.")


async def compaction(engine: AsyncEngine) -> None:
    step("5. OpenAIResponsesCompactionSession, against a local stand-in for /v1/responses/compact")
    with CompactionStandIn() as server:
        underlying = SQLAlchemySession(fresh("compaction"), engine=engine)
        client = AsyncOpenAI(base_url=server.base_url, api_key="stand-in")  # not OpenAI: a local server
        session = OpenAIResponsesCompactionSession(underlying.session_id, underlying, client=client,
                                                   compaction_mode="input")
        agent = Agent(name="Assistant", model=choose_model().model)
        for text in ["My name is Ada.", *CHATTER[:2]]:
            await ask(agent, text, session)
        await session.run_compaction({"force": True})
        request = server.requests[-1]
        note(f"it called POST /v1/responses/compact with model={request['model']} and "
             f"{len(request['input'])} input items, and stored what came back:")
        for number, item in enumerate(await session.get_items(), start=1):
            shown = (item_line(item) if item.get("type") != "compaction"
                     else f"[compaction] {item.get('encrypted_content')}")
            print(f"    {number}. {shown}")
    note("OpenAI's answer keeps your messages and folds the rest into one encrypted item only OpenAI reads.")


async def main(args: argparse.Namespace) -> None:
    url = resolve_database_url(args.database)
    choice = choose_model()
    heading("Lesson 11: long conversations")
    print(f"database: {redact(url)}")
    print(f"model:    {choice.description}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)
    await the_problem(url)
    async with open_database(url) as engine:
        await limits(agent, engine)
        await the_trap(engine)
        await summaries(agent, engine)
        await compaction(engine)


if __name__ == "__main__":
    run_lesson(main, lesson_parser("Lesson 11: long conversations").parse_args())
