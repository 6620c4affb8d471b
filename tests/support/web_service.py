"""Helpers for driving lesson 06's app in process (httpx over ASGI, no server, no sockets)."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text

from session_management.common import OfflineModel, create_engine

app_module = importlib.import_module("session_management.06_web_service.app")
database_module = importlib.import_module("session_management.06_web_service.database")
USERS = {f"token-user-{n:03d}": f"user{n}" for n in range(60)}
ALICE, BOB = "token-user-000", "token-user-001"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def service(database_url: str, **create_app_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app through its lifespan, and a client for it; ``client.app`` is the app."""
    app = app_module.create_app(database_url, USERS, OfflineModel(), **create_app_kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def new_conversation(client: httpx.AsyncClient, token: str, title: str | None = None) -> str:
    response = await client.post("/api/conversations", json={"title": title} if title else {}, headers=auth(token))
    assert response.status_code == 201, response.text
    conversation_id = response.json()["id"]
    assert uuid.UUID(conversation_id).version == 4
    return str(conversation_id)


async def say(client: httpx.AsyncClient, token: str, conversation: str, message: str) -> str:
    response = await client.post(f"/api/conversations/{conversation}/messages", json={"message": message},
                                 headers=auth(token))
    assert response.status_code == 200, response.text
    return str(response.json()["reply"])


async def row_counts(database_url: str) -> dict[str, int]:
    """Rows per table, read on a connection of its own (not through the service or a proxy)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return {table: int(await connection.scalar(text(f"SELECT COUNT(*) FROM {table}")))
                    for table in ("conversations", "agent_sessions", "agent_messages")}
    finally:
        await engine.dispose()
