"""A chat service in one file: one engine per process, one SQLAlchemySession per request."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import create_async_engine

agent = Agent(name="Assistant", instructions="Reply concisely.")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One engine (and its pool of connections) for the whole process: made at start-up, closed at shutdown.
    app.state.engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///chat.db"))
    # The SDK's two tables, if missing. On MySQL the SDK cannot create them (lesson 02); in production a
    # migration does (lesson 07).
    await SQLAlchemySession("-", engine=app.state.engine, create_tables=True).get_items()
    yield
    await app.state.engine.dispose()


app = FastAPI(lifespan=lifespan)


class Message(BaseModel):
    message: str


@app.post("/conversations/{conversation_id}/messages")
async def send(conversation_id: str, body: Message, request: Request) -> dict[str, str]:
    # A session per request: the conversation's id and the shared engine; it holds no connection of its own.
    session = SQLAlchemySession(conversation_id, engine=request.app.state.engine)
    result = await Runner.run(agent, body.message, session=session)
    return {"reply": str(result.final_output)}
