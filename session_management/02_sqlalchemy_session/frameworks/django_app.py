"""A Django chat endpoint whose agent remembers each conversation in your database (SQLAlchemySession).

    pip install "openai-agents[sqlalchemy]" django uvicorn aiosqlite   # asyncpg: PostgreSQL, aiomysql: MySQL
    export OPENAI_API_KEY=sk-...
    export DATABASE_URL=sqlite+aiosqlite:///sessions.db   # or postgresql+asyncpg://..., mysql+aiomysql://...
    uvicorn django_app:application --port 8000
    curl localhost:8000/chat/ada -H 'content-type: application/json' -d '{"text": "My name is Ada."}'

A whole project in one file: the settings, the view, the URLs and the ASGI application. The view is async and the
ASGI server runs every request on its one event loop, which the engine's connections belong to. Under WSGI
(runserver, gunicorn's sync workers) Django runs each async view on an event loop of its own and the shared
engine breaks: there, write a plain view and hand the agent call to one loop thread, as flask_app.py does.
The SDK's tables are not Django models: Django's migrations leave them alone, create_tables makes them.
"""

import json
import os
import sys
from collections.abc import Awaitable, Callable

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
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


settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1").split(","),
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "only-for-local-development"),
)
agent = Agent(name="Assistant", instructions="Reply concisely.")
engine = create_engine()  # once per process: each worker imports this module once


@csrf_exempt  # a JSON API for other programs, not a form in a browser
@require_POST
async def chat(request: HttpRequest, conversation_id: str) -> JsonResponse:
    session = SQLAlchemySession(conversation_id, engine=engine)  # cheap: an id plus the shared engine
    result = await Runner.run(agent, json.loads(request.body)["text"], session=session)
    return JsonResponse({"reply": result.final_output})


urlpatterns = [path("chat/<str:conversation_id>", chat)]
django_application = get_asgi_application()


async def application(
    scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
) -> None:
    """Django's ASGI app, plus the server's start-up and shutdown events, which Django itself does not handle."""
    if scope["type"] != "lifespan":
        return await django_application(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await create_tables(engine)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await engine.dispose()  # closes the pooled connections, on the loop that opened them
            await send({"type": "lifespan.shutdown.complete"})
            return
