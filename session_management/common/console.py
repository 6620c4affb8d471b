"""Narration for lessons: headings, transcripts, and the command-line options every lesson shares."""

from __future__ import annotations

import argparse
from typing import Any

WIDTH = 78


def heading(title: str) -> None:
    print(f"\n{'=' * WIDTH}\n{title}\n{'=' * WIDTH}", flush=True)


def step(title: str) -> None:
    print(f"\n--- {title} ---", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)


def user_says(text: str) -> None:
    print(f"  user : {text}", flush=True)


def agent_says(text: object) -> None:
    print(f"  agent: {text}", flush=True)


def item_line(item: Any) -> str:
    """One readable line for a stored session item (a message, a tool call or a tool result)."""
    if not isinstance(item, dict):
        return repr(item)
    kind = item.get("type")
    if kind == "function_call":
        return f"[tool call] {item.get('name')}({item.get('arguments')})"
    if kind == "function_call_output":
        return f"[tool result] {item.get('output')}"
    content = item.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return f"{item.get('role', kind)}: {content}"


def show_items(items: list[Any], indent: str = "    ") -> None:
    if not items:
        print(f"{indent}(empty)")
    for number, item in enumerate(items, start=1):
        print(f"{indent}{number}. {item_line(item)}")


def lesson_parser(description: str, *, database: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if database:
        parser.add_argument(
            "--database",
            default=None,
            help="sqlite | postgres | mysql | a SQLAlchemy async URL (default: DATABASE_URL, else sqlite)",
        )
    return parser
