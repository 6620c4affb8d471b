"""The chat service: FastAPI, one engine per process, one SQLAlchemySession per request.

Endpoints (all but `/` and `/api/health` need `Authorization: Bearer <token>`):

    GET    /api/me                                       who the token belongs to
    POST   /api/conversations                            create one          {"title": optional}
    GET    /api/conversations?limit=&offset=             mine, newest first
    GET    /api/conversations/{id}                       one of mine
    GET    /api/conversations/{id}/history               its items, oldest first
    POST   /api/conversations/{id}/messages              send a message      {"message": "..."} -> reply
    POST   /api/conversations/{id}/messages/stream       the same, as server-sent events
    POST   /api/conversations/{id}/undo                  remove the last turn
    DELETE /api/conversations/{id}                       delete it and its history
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from agents import Agent, Model, Runner
from agents.extensions.memory import SQLAlchemySession
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from session_management.common import check_connection, create_engine, item_line

from . import store

MAX_MESSAGE_CHARS = 4000
STATIC = Path(__file__).resolve().parent / "static"
logger = logging.getLogger("lesson05")


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=200)


class NewMessage(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("message")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return value.strip()


class DatabaseUnavailable(Exception):
    """Raised for a database error; becomes a 503 so clients know to retry."""


_bearer = HTTPBearer(auto_error=False)


def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The user whose bearer token this is, or 401."""
    user = request.app.state.users.get(credentials.credentials) if credentials else None
    if user is None:
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return str(user)


User = Annotated[str, Depends(current_user)]


def create_app(database_url: str, users: dict[str, str], model: str | Model | None = None) -> FastAPI:
    """Build the service. *users* maps bearer token -> user name."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url)  # one engine, one pool, for the whole process
        try:
            await check_connection(engine)
            await store.prepare(engine)
            app.state.engine = engine
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="Lesson 05: a multi-user chat service", lifespan=lifespan)
    app.state.users = dict(users)
    agent = Agent(name="Assistant", instructions="You are a helpful assistant. Reply concisely.", model=model)

    async def owned(request: Request, user: str, conversation_id: uuid.UUID) -> store.Conversation:
        conversation = await store.get(request.app.state.engine, user, str(conversation_id))
        if conversation is None:  # someone else's and nonexistent look the same: ids are not confirmed
            raise HTTPException(404, "conversation not found")
        return conversation

    def session_for(request: Request, conversation: store.Conversation) -> SQLAlchemySession:
        return SQLAlchemySession(conversation.id, engine=request.app.state.engine)  # cheap: one per request

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in error.errors()]
        return JSONResponse({"error": "invalid request", "problems": problems}, status_code=422)

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(OSError)
    @app.exception_handler(DatabaseUnavailable)
    async def database_error(_: Request, error: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", error)
        return JSONResponse({"error": "the database is unavailable; please retry shortly"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/health")
    async def health(request: Request) -> dict[str, str]:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/api/me")
    async def me(user: User) -> dict[str, str]:
        return {"user": user}

    @app.post("/api/conversations", status_code=201)
    async def create_conversation(request: Request, user: User, body: NewConversation | None = None) -> dict:
        conversation = await store.create(request.app.state.engine, user, body.title if body else None)
        return conversation.to_json()

    @app.get("/api/conversations")
    async def list_conversations(
        request: Request, user: User,
        limit: Annotated[int, Query(ge=1, le=100)] = 20, offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        page, total = await store.list_for(request.app.state.engine, user, limit, offset)
        next_offset = offset + len(page) if offset + len(page) < total else None
        return {"items": [c.to_json() for c in page], "total": total, "next_offset": next_offset}

    @app.get("/api/conversations/{conversation_id}")
    async def get_conversation(request: Request, user: User, conversation_id: uuid.UUID) -> dict:
        return (await owned(request, user, conversation_id)).to_json()

    @app.get("/api/conversations/{conversation_id}/history")
    async def history(request: Request, user: User, conversation_id: uuid.UUID) -> dict[str, Any]:
        conversation = await owned(request, user, conversation_id)
        items = await session_for(request, conversation).get_items()
        return {"items": items, "lines": [item_line(item) for item in items]}

    async def after_reply(request: Request, conversation: store.Conversation, message: str) -> None:
        title = message[:60] if conversation.title == store.DEFAULT_TITLE else None
        await store.touch(request.app.state.engine, conversation.id, title)

    @app.post("/api/conversations/{conversation_id}/messages")
    async def send(request: Request, user: User, conversation_id: uuid.UUID, body: NewMessage) -> dict[str, str]:
        conversation = await owned(request, user, conversation_id)
        result = await Runner.run(agent, body.message, session=session_for(request, conversation))
        await after_reply(request, conversation, body.message)
        return {"reply": str(result.final_output)}

    @app.post("/api/conversations/{conversation_id}/messages/stream")
    async def send_streamed(
        request: Request, user: User, conversation_id: uuid.UUID, body: NewMessage
    ) -> StreamingResponse:
        conversation = await owned(request, user, conversation_id)
        session = session_for(request, conversation)

        async def events() -> AsyncIterator[str]:
            result = Runner.run_streamed(agent, body.message, session=session)
            try:
                async for event in result.stream_events():
                    if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                        yield f"event: delta\ndata: {json.dumps({'text': event.data.delta})}\n\n"
                await after_reply(request, conversation, body.message)
                yield f"event: done\ndata: {json.dumps({'reply': str(result.final_output)})}\n\n"
            except (SQLAlchemyError, OSError) as error:  # headers are sent: report in-band
                logger.warning("stream failed: %s", error)
                yield f"event: error\ndata: {json.dumps({'error': 'the database is unavailable'})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/conversations/{conversation_id}/undo")
    async def undo(request: Request, user: User, conversation_id: uuid.UUID) -> dict[str, Any]:
        session = session_for(request, await owned(request, user, conversation_id))
        removed = []
        while (item := await session.pop_item()) is not None:  # back to and including the user's message
            removed.insert(0, item)
            if isinstance(item, dict) and item.get("role") == "user":
                break
        return {"removed": len(removed), "lines": [item_line(item) for item in removed]}

    @app.delete("/api/conversations/{conversation_id}", status_code=204)
    async def delete(request: Request, user: User, conversation_id: uuid.UUID) -> Response:
        if not await store.delete_conversation(request.app.state.engine, user, str(conversation_id)):
            raise HTTPException(404, "conversation not found")
        return Response(status_code=204)

    return app
