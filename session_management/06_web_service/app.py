"""`create_app`: the chat service, assembled. One engine per process, one session object per request.

The pieces, each in its own module: `routes.py` (the endpoints), `dependencies.py` (the database, the caller and
the caller's conversation, as FastAPI dependencies), `turn.py` (the SDK session that stores a turn at once),
`store.py` (the conversations table's queries), `database.py` (engine and time limits), `gate.py` (auth and
size limit before the body is read), `errors.py` (the one error shape).
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agents import Agent, Model
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from session_management.common import check_connection

from . import errors, store
from .auth import Users
from .database import Database, Timeouts
from .gate import Gate, max_body_bytes
from .routes import router

PAGE = (Path(__file__).resolve().parent / "static" / "index.html").read_text(encoding="utf-8")


def create_app(database_url: str, users: Users, model: str | Model | None = None, *,
               demo_token: str | None = None, timeouts: Timeouts | None = None) -> FastAPI:
    """Build the service. *users* maps bearer token -> user name; *demo_token* pre-fills the page's token box.

    Settings are read here, not at start-up, so a mistake in them is a CourseError before uvicorn runs.
    """
    limits = timeouts or Timeouts.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(database_url, limits)  # one engine, one pool, for the process
        try:
            await check_connection(db.engine)
            await store.prepare(db)
            app.state.db = db
            yield
        finally:
            await db.engine.dispose()

    # No /docs or /redoc: FastAPI's pages load Swagger UI and ReDoc from a CDN, which a closed network cannot
    # reach and which would run third-party script on this origin. /openapi.json (no CDN) describes the API.
    app = FastAPI(title="Lesson 05: a multi-user chat service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.users = dict(users)
    app.state.agent = Agent(name="Assistant", instructions="You are a helpful assistant. Reply concisely.",
                            model=model)
    errors.install(app)
    app.add_middleware(Gate, users=app.state.users, max_body=max_body_bytes())
    app.include_router(router)
    page = PAGE.replace("__DEMO_TOKEN__", html.escape(demo_token or "", quote=True))

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app
