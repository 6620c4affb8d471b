"""A Flask chat endpoint whose agent remembers each conversation in your database (SQLAlchemySession).

    pip install "openai-agents[sqlalchemy]" flask aiosqlite   # asyncpg: PostgreSQL, aiomysql: MySQL
    export OPENAI_API_KEY=sk-...
    export DATABASE_URL=sqlite+aiosqlite:///sessions.db   # or postgresql+asyncpg://..., mysql+aiomysql://...
    flask --app flask_app run --port 8000   # threaded; in production e.g. gunicorn --threads 8 'flask_app:create_app()'
    curl localhost:8000/chat/ada -H 'content-type: application/json' -d '{"text": "My name is Ada."}'

Flask views are plain functions on the server's request threads. The engine's connections belong to the event
loop that opened them, so every agent call goes to one event loop per process, on a thread of its own, and the
engine is made and used only there. Not Runner.run_sync in a view, not an async def view: both run each request
on an event loop of its own, and the shared engine breaks ("attached to a different loop").
"""

import asyncio
import atexit
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from flask import Flask, request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if not os.environ.get("OPENAI_API_KEY"):
    sys.exit("Set OPENAI_API_KEY first: the agent below uses OpenAI's default model.")
DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///sessions.db")

# MySQL/MariaDB only: the SDK's create_tables=True cannot create its tables there (their ids are VARCHAR without
# a length), so these statements do, with a binary collation ("Alice" and "alice" are two conversations).
MYSQL_TABLES = (
    "CREATE TABLE IF NOT EXISTS agent_sessions ("
    " session_id VARCHAR(255) COLLATE utf8mb4_nopad_bin PRIMARY KEY,"
    " created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS agent_messages ("
    " id INTEGER AUTO_INCREMENT PRIMARY KEY,"
    " session_id VARCHAR(255) COLLATE utf8mb4_nopad_bin NOT NULL,"
    " message_data LONGTEXT NOT NULL,"
    " created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " INDEX idx_agent_messages_session_time (session_id, created_at),"
    " FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE) DEFAULT CHARSET=utf8mb4",
)


async def create_tables(engine: AsyncEngine) -> None:
    """The SDK's two tables, if missing (in production, a migration's job)."""
    if engine.dialect.name in ("mysql", "mariadb"):
        async with engine.begin() as connection:
            for statement in MYSQL_TABLES:
                await connection.execute(text(statement))
    else:  # any session id will do: get_items creates the tables first, then finds nothing
        await SQLAlchemySession("-", engine=engine, create_tables=True).get_items()


def create_engine() -> AsyncEngine:
    # SQLite has one writer: one connection queues the writes instead of failing with "database is locked".
    pool = {"pool_size": 1, "max_overflow": 0} if DATABASE_URL.startswith("sqlite") else {}
    return create_async_engine(DATABASE_URL, pool_pre_ping=True, **pool)


agent = Agent(name="Assistant", instructions="Reply concisely.")
T = TypeVar("T")


def create_app() -> Flask:
    """Called once per worker process (flask run and gunicorn find it), after the server forks its workers."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="agents-loop", daemon=True).start()

    def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the process's loop, from any thread; wait for the result."""
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    async def start() -> AsyncEngine:
        engine = create_engine()
        await create_tables(engine)
        return engine

    engine = on_loop(start())

    @atexit.register
    def stop() -> None:  # at shutdown: close the pooled connections on their loop, then stop the loop
        on_loop(engine.dispose())
        loop.call_soon_threadsafe(loop.stop)

    app = Flask(__name__)

    @app.post("/chat/<conversation_id>")
    def chat(conversation_id: str) -> dict[str, str]:
        session = SQLAlchemySession(conversation_id, engine=engine)  # cheap: an id plus the shared engine
        result = on_loop(Runner.run(agent, request.get_json()["text"], session=session))
        return {"reply": result.final_output}

    return app
