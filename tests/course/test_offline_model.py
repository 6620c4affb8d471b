"""The offline model: it answers only from the input it is given, through real runs and real sessions."""

from __future__ import annotations

import pytest
from agents import Agent, Runner, function_tool
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import OfflineModel, create_session_tables
from session_management.common.offline_model import answer, read_conversation


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, object]:
    return {"role": "assistant", "type": "message", "content": [{"type": "output_text", "text": text}]}


@pytest.mark.parametrize(
    ("history", "question", "expected"),
    [
        (["My name is Ada."], "What is my name?", "Your name is Ada."),
        (["Hi, I'm Grace Hopper."], "who am I?", "Your name is Grace Hopper."),
        (["call me Linus"], "what's my name?", "Your name is Linus."),
        (["My name is Ada.", "Actually, my name is Ida."], "What is my name?", "Your name is Ida."),
        (["My favorite color is teal"], "What is my favorite color?", "Your favorite color is teal."),
        (["I live in Lisbon and I work at a bakery"], "Where do I live?", "You live in Lisbon."),
        (["I live in Lisbon and I work at a bakery"], "where do I work?", "You work at a bakery."),
        (["I like chess.", "I love tea"], "what do I like?", "You like chess, tea."),
        ([], "What is my name?", "I don't know your name yet: you haven't told me."),
        (["My dog is Rex"], "What is my cat?", "I don't know your cat yet: you haven't told me."),
        (["one", "two"], "how many messages have I sent?", "This is message 3 from you; you sent 2 before it"),
        (["first thing", "second thing"], "what did I just say?", 'You said: "second thing"'),
        (["first thing", "second thing"], "what was my first message?", 'Your first message was: "first thing"'),
    ],
)
def test_rules(history: list[str], question: str, expected: str) -> None:
    items: list[dict[str, object]] = []
    for text in history:
        items += [user(text), assistant("ok")]
    items.append(user(question))
    assert answer(read_conversation(items)).startswith(expected)


def test_assistant_text_is_not_taken_as_a_user_fact() -> None:
    items = [assistant("my name is Bot"), user("what is my name?")]
    assert answer(read_conversation(items)).startswith("I don't know your name")


def test_summary_lists_every_fact_and_the_turn() -> None:
    items = [user("My name is Ada. My favorite language is Python."), assistant("ok"), user("I live in London"),
             assistant("ok"), user("what do you know about me?")]
    reply = answer(read_conversation(items))
    for fact in ("your name is Ada", "your favorite language is Python", "you live in London", "message 3"):
        assert fact in reply


async def test_memory_comes_from_the_session_and_only_from_it(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    agent = Agent(name="Assistant", instructions="Be brief.", model=OfflineModel())
    ada = SQLAlchemySession("ada", engine=engine)
    await Runner.run(agent, "Hello! My name is Ada and I live in Paris.", session=ada)
    recalled = await Runner.run(agent, "What is my name?", session=ada)
    assert recalled.final_output == "Your name is Ada."

    stranger = SQLAlchemySession("stranger", engine=engine)
    forgot = await Runner.run(agent, "What is my name?", session=stranger)
    assert forgot.final_output.startswith("I don't know your name")

    no_session = await Runner.run(agent, "What is my name?")
    assert no_session.final_output.startswith("I don't know your name")

    # A new session object over the same rows (a "restart") still remembers.
    again = SQLAlchemySession("ada", engine=engine)
    where = await Runner.run(agent, "Where do I live?", session=again)
    assert where.final_output == "You live in Paris."


async def test_streaming_gives_the_same_answer_in_pieces(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    agent = Agent(name="Assistant", model=OfflineModel())
    session = SQLAlchemySession("stream", engine=engine)
    await Runner.run(agent, "My name is Ada Lovelace.", session=session)
    streamed = Runner.run_streamed(agent, "What is my name?", session=session)
    deltas = [
        event.data.delta
        async for event in streamed.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    assert len(deltas) > 1
    assert "".join(deltas) == streamed.final_output == "Your name is Ada Lovelace."
    assert len(await session.get_items()) == 4


@function_tool
def get_weather(city: str) -> str:
    """Today's weather for a city."""
    return f"It is sunny in {city}."


@function_tool
def add_numbers(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_calls_are_made_and_their_results_reported(engine: AsyncEngine, streamed: bool) -> None:
    await create_session_tables(engine)
    agent = Agent(name="Assistant", model=OfflineModel(), tools=[get_weather, add_numbers])
    session = SQLAlchemySession("tools", engine=engine)
    if streamed:
        result = Runner.run_streamed(agent, "What's the weather in Lisbon?", session=session)
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, "What's the weather in Lisbon?", session=session)
    assert result.final_output == "get_weather says: It is sunny in Lisbon."
    kinds = [item.get("type") for item in await session.get_items()]
    assert kinds.count("function_call") == 1 and kinds.count("function_call_output") == 1


async def test_no_tool_call_when_nothing_matches() -> None:
    agent = Agent(name="Assistant", model=OfflineModel(), tools=[get_weather])
    result = await Runner.run(agent, "My name is Ada")
    assert result.final_output == "Nice to meet you, Ada! I'll remember that."
    assert all(item.type != "tool_call_item" for item in result.new_items)


async def test_usage_is_reported_and_grows_with_history() -> None:
    agent = Agent(name="Assistant", model=OfflineModel())
    first = await Runner.run(agent, "My name is Ada")
    second = await Runner.run(agent, first.to_input_list() + [user("What is my name?")])
    u1, u2 = first.context_wrapper.usage, second.context_wrapper.usage
    assert u1.requests == 1 and u1.input_tokens > 0 and u1.output_tokens > 0
    assert u1.total_tokens == u1.input_tokens + u1.output_tokens
    assert u2.input_tokens > u1.input_tokens  # the history is part of the input


def test_structured_output_is_refused_clearly() -> None:
    from agents.exceptions import UserError

    agent = Agent(name="Assistant", model=OfflineModel(), output_type=int)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        Runner.run_sync(agent, "give me a number")
