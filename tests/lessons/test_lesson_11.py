"""Lesson 11: the lesson runs first on a clean tree; the SDK facts it teaches; compaction against the stand-in;
the measurement's numbers and plot."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, ModelResponse, RunConfig, Runner, function_tool
from agents.extensions.memory import SQLAlchemySession
from agents.memory import OpenAIResponsesCompactionSession, SessionSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import OfflineModel
from tests.support import lessons
from tests.support.backends import sqlite_engine as sqlite_engine_at

LESSON = "session_management.11_long_conversations"
tool_pairs = importlib.import_module(f"{LESSON}.tool_pairs")
standin = importlib.import_module(f"{LESSON}.compaction_standin")
measure = importlib.import_module(f"{LESSON}.measure")


@function_tool
def get_weather(city: str) -> str:
    return f"sunny in {city}"


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with sqlite_engine_at(tmp_path / "lesson11.db") as engine:
        yield engine


async def tool_history(engine: AsyncEngine) -> SQLAlchemySession:
    session = SQLAlchemySession("tools", engine=engine)
    agent = Agent(name="A", model=OfflineModel(), tools=[get_weather])
    await Runner.run(agent, "What's the weather in Lisbon?", session=session)
    await Runner.run(agent, "Thanks!", session=session)
    return session


async def test_the_sdk_drops_an_orphaned_result_under_a_limit_but_not_from_a_callback(
    sqlite_engine: AsyncEngine,
) -> None:
    """The facts section 3 states: a limit is safe at 0.24.0; a naive callback is not."""
    session = await tool_history(sqlite_engine)
    model = tool_pairs.CheckedModel()
    agent = Agent(name="A", model=model, tools=[get_weather])
    with pytest.raises(tool_pairs.RejectedInput, match="No tool call found for function call output"):
        await Runner.run(agent, "Hm?", session=session,
                         run_config=RunConfig(session_input_callback=tool_pairs.newest_items(4)))
    await session.pop_item()
    await Runner.run(agent, "Hm?", session=session, run_config=RunConfig(session_settings=SessionSettings(limit=4)))
    assert [i.get("type") or i.get("role") for i in model.last_input][:3] == ["message", "user", "message"]
    assert tool_pairs.orphaned_results(model.last_input) == []
    await Runner.run(agent, "And now?", session=session,
                     run_config=RunConfig(session_input_callback=tool_pairs.whole_turns(4)))
    assert model.last_input[0] == {"role": "user", "content": "Thanks!"}  # the newest 4: two whole turns


async def test_a_run_config_limit_of_none_does_not_lift_the_sessions_limit(sqlite_engine: AsyncEngine) -> None:
    session = SQLAlchemySession("limits", engine=sqlite_engine, session_settings=SessionSettings(limit=2))
    await session.add_items([{"role": "user", "content": "My name is Ada."}] +
                            [{"role": "user", "content": f"filler {n}"} for n in range(4)])
    agent = Agent(name="A", model=OfflineModel())
    none = await Runner.run(agent, "What is my name?", session=session,
                            run_config=RunConfig(session_settings=SessionSettings(limit=None)))
    wide = await Runner.run(agent, "What is my name?", session=session,
                            run_config=RunConfig(session_settings=SessionSettings(limit=100)))
    assert none.final_output.startswith("I don't know your name")
    assert wide.final_output == "Your name is Ada."


class RespondingWithIds(OfflineModel):
    """The offline model, but its responses carry an id, as OpenAI's Responses API models' do."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response = await super().get_response(*args, **kwargs)
        return ModelResponse(output=response.output, usage=response.usage, response_id=f"resp_{self._calls}")


async def test_compaction_session_calls_the_compact_endpoint(sqlite_engine: AsyncEngine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAIResponsesCompactionSession against the local stand-in, found through OPENAI_BASE_URL."""
    engine = sqlite_engine
    with standin.CompactionStandIn() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "stand-in")
        underlying = SQLAlchemySession("compacted", engine=engine)
        session = OpenAIResponsesCompactionSession("compacted", underlying, compaction_mode="input")
        offline = Agent(name="A", model=OfflineModel())
        for text in ["My name is Ada.", "One.", "Two."]:
            await Runner.run(offline, text, session=session)
        assert server.requests == []  # no response id: the Runner never asks to compact
        with_ids = Agent(name="A", model=RespondingWithIds())
        for number in range(10):
            await Runner.run(with_ids, f"More {number}.", session=session)
        assert server.requests, "ten non-user items with a response id should trigger compaction"
        assert server.requests[0]["model"] == "gpt-4.1"
        stored = await underlying.get_items()
        assert any(item.get("type") == "compaction" for item in stored)
        before = len(server.requests)
        await session.run_compaction({"force": True})
        assert len(server.requests) == before + 1
        stored = await underlying.get_items()
        assert [item.get("type") for item in stored if item.get("role") != "user"] == ["compaction"]
        assert [item["content"] for item in stored if item.get("role") == "user"][0] == "My name is Ada."


async def test_measurement_rows_and_plot(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    rows = await measure.measure(url, [10, 100], repeats=1)
    assert [(r.items, r.items_sent) for r in rows] == [(10, 11), (100, 101)]
    assert rows[1].tokens_sent > 9 * rows[0].tokens_sent  # tokens grow with the history
    assert all(r.get_all_ms > 0 and r.get_limited_ms > 0 and r.turn_ms > 0 for r in rows)
    measure.plot(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")


def test_the_committed_results_match_the_readme() -> None:
    """The README prints the run its numbers come from: the table there is the saved results.json."""
    folder = lessons.REPO_ROOT / "session_management" / "11_long_conversations"
    rows = json.loads((folder / "results.json").read_text())["rows"]
    readme = (folder / "README.md").read_text()
    assert {r["database"] for r in rows} == {"sqlite", "postgresql", "mysql"}
    assert sorted({r["items"] for r in rows}) == [10, 100, 1000, 10000]
    for r in rows:
        line = (f"{r['database']:<11} {r['items']:>6} {r['get_all_ms']:>12.2f} {r['get_limited_ms']:>12.2f} "
                f"{r['items_sent']:>10} {r['tokens_sent']:>11} {r['turn_ms']:>8.1f}")
        assert line in readme, line
