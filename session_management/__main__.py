"""`python -m session_management`: list the lessons, or chat with an agent whose memory persists.

    uv run python -m session_management                 # the lessons and how to run each
    uv run python -m session_management chat            # talk; quit; come back; it remembers
    uv run python -m session_management chat --database postgres --session-id ada
"""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession

from session_management.common import choose_model, item_line, open_database, redact, run_lesson, run_main
from session_management.common.settings import resolve_database_url

PACKAGE_DIR = Path(__file__).resolve().parent
CHAT_HELP = "/history  show the stored conversation\n/undo     remove your last turn\n" \
            "/clear    forget everything in this session\n/quit     leave (the history stays)"


def lessons() -> list[tuple[str, str]]:
    """(module folder, one-line title) for every numbered lesson, from its README's first heading."""
    found = []
    for folder in sorted(PACKAGE_DIR.glob("[0-9][0-9]_*")):
        readme = folder / "README.md"
        title = folder.name
        if readme.exists():
            for line in readme.read_text(encoding="utf-8").splitlines():
                if line.startswith("# "):
                    title = line[2:].strip()
                    break
        if (folder / "main.py").exists():
            found.append((folder.name, title))
    return found


def list_lessons() -> None:
    print("Session management for OpenAI Agents SDK agents: the lessons\n")
    for name, title in lessons():
        print(f"  {name:<28} {title}")
        print(f"  {'':<28} uv run python -m session_management.{name}.main")
    print("\nLessons that use a database take --database sqlite|postgres|mysql|URL (default: sqlite).")
    print("Chat with a persistent agent: uv run python -m session_management chat [--database ...]")


async def undo_last_turn(session: SQLAlchemySession) -> list[object]:
    """Pop items back to and including the newest user message; return what was removed, oldest first."""
    removed: list[object] = []
    while (item := await session.pop_item()) is not None:
        removed.insert(0, item)
        if isinstance(item, dict) and item.get("role") == "user":
            break
    return removed


async def chat(database: str | None, session_id: str) -> None:
    choice = choose_model()
    url = resolve_database_url(database)
    async with open_database(url) as engine:
        session = SQLAlchemySession(session_id, engine=engine)
        agent = Agent(name="Assistant", instructions="You are a helpful assistant. Be brief.", model=choice.model)
        stored = await session.get_items()
        print(f"model   : {choice.description}\ndatabase: {redact(url)}\nsession : {session_id!r} "
              f"({len(stored)} stored items)\n{CHAT_HELP}\n")
        while True:
            try:
                line = (await asyncio.to_thread(input, "you> ")).strip()
            except EOFError:
                print()
                break
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            if line == "/history":
                items = await session.get_items()
                for number, item in enumerate(items, start=1):
                    print(f"  {number:>3}. {item_line(item)}")
                print(f"  ({len(items)} items)")
            elif line == "/undo":
                removed = await undo_last_turn(session)
                print(f"  removed {len(removed)} items" + (f": {item_line(removed[0])}" if removed else ""))
            elif line == "/clear":
                await session.clear_session()
                print("  session cleared")
            elif line.startswith("/"):
                print(f"  unknown command {line!r}\n{CHAT_HELP}")
            else:
                result = await Runner.run(agent, line, session=session)
                print(f"agent> {result.final_output}")
        print(f"Bye. Your conversation is kept in session {session_id!r}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m session_management", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="list the lessons (the default)")
    chat_parser = commands.add_parser("chat", help="an interactive chat whose memory survives restarts")
    chat_parser.add_argument("--database", default=None, help="sqlite | postgres | mysql | a SQLAlchemy async URL")
    chat_parser.add_argument("--session-id", default="chat", help="which conversation to continue (default: chat)")
    args = parser.parse_args(argv)
    if args.command == "chat":
        if not re.fullmatch(r"\S{1,255}", args.session_id):
            parser.error("--session-id must be 1-255 characters without spaces")
        return run_main(chat, args.database, args.session_id)
    list_lessons()
    return 0


if __name__ == "__main__":
    run_lesson(main)
