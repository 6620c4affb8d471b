"""The demonstration: seed five sessions, then run every command on them as a reader would type it."""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from agents import Agent, Runner, function_tool
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import choose_model, heading, note, open_database, redact, step
from session_management.common.settings import resolve_database_url

from .cli import PROGRAM, build_parser
from .commands import COMMANDS
from .store import database_now, messages, sessions

DEMO = "demo08-"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city (canned, so the demo runs offline)."""
    return f"Sunny and 21 C in {city}."


async def run_command(database: str, *argv: str) -> None:
    print(f"\n$ {PROGRAM} {' '.join(argv)}", flush=True)
    await COMMANDS[argv[0]](build_parser().parse_args([*argv, "--database", database]))
    sys.stdout.flush()


async def seed(engine: AsyncEngine) -> None:
    """Five demo sessions: three recent conversations (one with a tool call), two idle for 40 and 90 days."""
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choose_model().model,
                  tools=[get_weather])
    chats = {
        "ada": ["My name is Ada.", "What is the weather in London?", "What is my name?"],
        "alan": ["I live in Manchester.", "Where do I live?"],
        "grace": ["Call me Grace. 👩‍💻", "My favorite language is COBOL."],
        "old-40d": ["Hello!"],
        "old-90d": ["Hello!", "My name is Edsger."],
    }
    for name, turns in chats.items():
        session = SQLAlchemySession(DEMO + name, engine=engine)
        await session.clear_session()  # a rerun starts from the same state
        for turn in turns:
            await Runner.run(agent, turn, session=session)
    async with engine.begin() as connection:
        now = await database_now(connection)
        for name, days in (("old-40d", 40), ("old-90d", 90)):
            # Age them on the database clock, as if nobody had written to them since.
            when = now - timedelta(days=days)
            await connection.execute(update(sessions).where(sessions.c.session_id == DEMO + name)
                                     .values(created_at=when, updated_at=when))
            await connection.execute(update(messages).where(messages.c.session_id == DEMO + name)
                                     .values(created_at=when))
    await SQLAlchemySession(DEMO + "ada-copy", engine=engine).clear_session()


async def demo(database: str | None) -> None:
    url = resolve_database_url(database)
    heading("Lesson 08: operating the session store")
    print(f"model   : {choose_model().description}\ndatabase: {redact(url)}")
    step("Seeding five demo sessions (ids starting with demo08-); other sessions are left alone")
    async with open_database(url) as engine:
        await seed(engine)
    note("Every command below is one you can type; the demo passes --prefix demo08- where it matters.")

    step("1. list: sessions with item count and activity, newest first")
    await run_command(url, "list", "--prefix", DEMO)
    await run_command(url, "list", "--prefix", DEMO, "--inactive-for", "30d")

    step("2. show: one conversation, readable (roles, text, tool calls)")
    await run_command(url, "show", DEMO + "ada")

    step("3. export and import: JSON Lines, one item per line, byte for byte")
    with tempfile.TemporaryDirectory() as folder:
        original, copy = Path(folder) / "ada.jsonl", Path(folder) / "copy.jsonl"
        await run_command(url, "export", DEMO + "ada", "--output", str(original))
        print(original.read_text(encoding="utf-8").splitlines()[0][:100] + " ...")
        await run_command(url, "import", str(original), "--session-id", DEMO + "ada-copy")
        await run_command(url, "export", DEMO + "ada-copy", "--output", str(copy))
        same = original.read_bytes() == copy.read_bytes()
        note(f"The copy's export is identical to the original's: {same}")

    step("4. purge: retention, whole sessions inactive longer than the window")
    await run_command(url, "purge", "--older-than", "30d", "--prefix", DEMO, "--dry-run")
    await run_command(url, "purge", "--older-than", "30d", "--prefix", DEMO)
    await run_command(url, "list", "--prefix", DEMO)

    step("5. stats: the whole store at a glance")
    await run_command(url, "stats", "--top", "3")

