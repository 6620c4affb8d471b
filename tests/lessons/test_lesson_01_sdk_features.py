"""The SDK features a session meets (lesson 01's page SDK_FEATURES.md), beyond what its blocks print.

The blocks themselves run in tests/course/test_readme_snippets.py; here: OpenAIConversationsSession against a loopback
stand-in of the Conversations API (what is stored where, and what a turn costs in requests), and a run
interrupted for approval, resumed from its serialised state in another process.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents import Agent, OpenAIConversationsSession, Runner, SQLiteSession, function_tool
from agents.memory.openai_conversations_session import start_openai_conversations_session
from openai import AsyncOpenAI

from session_management.common import OfflineModel
from tests.support.conversations_standin import conversations_api
from tests.support.snippets import REPO_ROOT, extract

PAGE = Path(__file__).resolve().parents[2] / "session_management" / "01_sqlite_session" / "SDK_FEATURES.md"


@pytest.fixture
async def client() -> AsyncOpenAI:  # type: ignore[misc]
    app = conversations_api()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://standin")
    openai = AsyncOpenAI(api_key="not-a-key", base_url="http://standin/v1", http_client=http, max_retries=0)
    openai.standin = app  # type: ignore[attr-defined]
    yield openai
    await http.aclose()


async def test_openai_conversations_session_keeps_the_history_on_the_api_side(client: AsyncOpenAI) -> None:
    agent = Agent(name="Assistant", model=OfflineModel())
    conversation_id = await start_openai_conversations_session(client)
    first = OpenAIConversationsSession(conversation_id=conversation_id, openai_client=client)
    await Runner.run(agent, "My name is Ada.", session=first)
    requests = client.standin.state.requests  # type: ignore[attr-defined]
    requests.clear()
    # A new session object (another process, another day) on the same conversation id remembers.
    later = OpenAIConversationsSession(conversation_id=conversation_id, openai_client=client)
    result = await Runner.run(agent, "What is my name?", session=later)
    assert result.final_output == "Your name is Ada."
    # What one turn costs: the page's claim, counted.
    turn = sum(requests.values())
    assert dict(requests) == {"GET /v1/conversations/{id}/items": 1, "POST /v1/conversations/{id}/items": 2}
    assert f"a turn is {turn} requests to OpenAI" in " ".join(PAGE.read_text(encoding="utf-8").split())
    stored = client.standin.state.conversations[conversation_id]  # type: ignore[attr-defined]
    assert [item["role"] for item in stored] == ["user", "assistant", "user", "assistant"]
    assert (await later.pop_item())["role"] == "assistant"  # type: ignore[index]
    assert len(await later.get_items()) == 3


RESUME = """
import asyncio
from pathlib import Path
from agents import Agent, Runner, RunState, SQLiteSession, set_tracing_disabled
from session_management.common import OfflineModel
from tests.lessons.test_lesson_01_sdk_features import delete_account, kinds
set_tracing_disabled(True)

async def main():
    agent = Agent(name="Admin", tools=[delete_account], model=OfflineModel())
    session = SQLiteSession("admin-1", "admin.db")
    state = await RunState.from_string(agent, Path("pending.json").read_text())
    for request in state.get_interruptions():
        state.approve(request)
    result = await Runner.run(agent, state, session=session)
    print(result.final_output)
    print(kinds(await session.get_items()))
asyncio.run(main())
"""


def test_a_run_interrupted_for_approval_resumes_in_another_process(tmp_path: Path) -> None:
    """Stopped here; resumed in a new process from the saved state text and the same SQLite file."""

    async def stop() -> list[str]:
        agent = Agent(name="Admin", tools=[delete_account], model=OfflineModel())
        session = SQLiteSession("admin-1", str(tmp_path / "admin.db"))
        result = await Runner.run(agent, "Please delete account for bob", session=session)
        (tmp_path / "pending.json").write_text(result.to_state().to_string())  # noqa: ASYNC240 - a test's file
        stored = kinds(await session.get_items())
        session.close()
        return stored

    assert asyncio.run(stop()) == ["user", "function_call"]
    done = subprocess.run([sys.executable, "-c", RESUME], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                               "OPENAI_API_KEY": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["delete_account says: account of bob deleted",
                                        "['user', 'function_call', 'function_call_output', 'assistant']"]


@function_tool(needs_approval=True)
def delete_account(user: str) -> str:
    """Delete a user's account."""
    return f"account of {user} deleted"


def kinds(items: list[Any]) -> list[str]:
    return [item.get("role") or item["type"] for item in items]


def test_every_block_of_the_page_runs() -> None:
    """The page says every block runs: none of its blocks is compile-only (or an excerpt, which is not run)."""
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "Every block runs as shown" in text
    assert [snippet.mode for snippet in extract(PAGE) if snippet.mode not in ("run", "backends", "continue")] == []


def test_the_round_trips_a_turn_costs_are_lesson_09s_counts() -> None:
    """The root README and this page state what a turn costs on a database server; lesson 09 counted it on the
    wire (counted.json): the SDK's SQLAlchemySession, and a store written against the driver (its floor, which
    the course's CourseSession matches)."""
    counted = json.loads((REPO_ROOT / "session_management" / "09_scaling" / "counted.json").read_text())["results"]

    def typical(store: str) -> int:
        values = [row["round_trips_per_turn"] for row in counted
                  if row["store"] == store and row["round_trips_per_turn"] is not None]
        assert values, f"counted.json has no counted turn of {store}"
        return round(statistics.median(values))

    sdk, lean = typical("sdk_sqlalchemy"), typical("floor")
    assert typical("course_session") == lean
    root = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    page = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert f"`SQLAlchemySession` costs about {sdk} round trips" in root and f"the driver needs {lean} " in root
    assert f"about {sdk} round trips" in page and f"`SQLAlchemySession`, {lean} with a store" in page
