"""A FastAPI chat endpoint whose agent remembers each conversation in your database (SQLAlchemySession).

    pip install "openai-agents[sqlalchemy]" fastapi uvicorn aiosqlite   # asyncpg: PostgreSQL, aiomysql: MySQL
    export OPENAI_API_KEY=sk-...
    export DATABASE_URL=sqlite+aiosqlite:///sessions.db   # or postgresql+asyncpg://..., mysql+aiomysql://...
    uvicorn fastapi_app:app --port 8000
    curl localhost:8000/chat/ada -H 'content-type: application/json' -d '{"text": "My name is Ada."}'
"""

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from fastapi import FastAPI, Request
from pydantic import BaseModel
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


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One engine per process, made at start-up on the server's event loop, which runs every request.
    app.state.engine = create_engine()
    await create_tables(app.state.engine)
    yield
    await app.state.engine.dispose()  # closes the pooled connections, on the loop that opened them


app = FastAPI(lifespan=lifespan)


class Message(BaseModel):
    text: str


@app.post("/chat/{conversation_id}")
async def chat(conversation_id: str, message: Message, request: Request) -> dict[str, str]:
    # A session object per request is cheap: it is a conversation id plus the shared engine.
    session = SQLAlchemySession(conversation_id, engine=request.app.state.engine)
    result = await Runner.run(agent, message.text, session=session)
    return {"reply": result.final_output}
