"""Plumbing several lessons share: settings, databases, schema, models (the offline one too), narration and the
command runner.

Lessons import from here so that each ``main.py`` shows only what it teaches. Only what two or more lessons use
lives here (``tests/course/test_layout.py`` keeps it so): the stores the course builds are in
``session_management.stores``, throwaway servers in ``session_management.servers``, and what one lesson uses in
that lesson's folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cli import Ending, run_lesson, run_main
from .console import agent_says, heading, item_line, lesson_parser, note, show_items, step, user_says
from .databases import check_connection, create_engine, open_database, sdk_store_pool
from .errors import CourseError
from .schema import create_session_tables, session_tables
from .settings import load_env, redact, resolve_database_url, writable_folder

if TYPE_CHECKING:
    from .models import choose_model, lesson_model
    from .offline_model import OfflineModel

# Imported on first use: they import the Agents SDK (seconds of start-up), which lesson 08's command-line tool,
# a plain SQLAlchemy program, does not need.
_FROM_THE_SDK = {"choose_model": ".models", "lesson_model": ".models", "OfflineModel": ".offline_model"}


def __getattr__(name: str) -> Any:
    if name in _FROM_THE_SDK:
        import importlib

        return getattr(importlib.import_module(_FROM_THE_SDK[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CourseError",
    "Ending",
    "OfflineModel",
    "agent_says",
    "check_connection",
    "choose_model",
    "create_engine",
    "create_session_tables",
    "heading",
    "item_line",
    "lesson_model",
    "lesson_parser",
    "load_env",
    "note",
    "open_database",
    "redact",
    "resolve_database_url",
    "run_lesson",
    "run_main",
    "sdk_store_pool",
    "session_tables",
    "show_items",
    "step",
    "user_says",
    "writable_folder",
]
