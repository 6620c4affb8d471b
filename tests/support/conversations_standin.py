"""A stand-in for OpenAI's Conversations API on loopback, for `OpenAIConversationsSession` without a network.

Only what the session calls: create and delete a conversation, add, list (both orders, paginated) and delete
items. Items are normalised the way the API does (an ``{"role", "content": str}`` input becomes a ``message``
item with an id and typed content parts), and every request is counted, so a test can say what a turn costs.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from fastapi import FastAPI, HTTPException, Request


def _normalised(item: dict[str, Any], item_id: str) -> dict[str, Any]:
    item = {**item, "id": item.get("id") or item_id}
    if item.get("type", "message") == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        content: list[dict[str, Any]] = [{"type": part, "text": item["content"]}]
        if part == "output_text":
            content[0]["annotations"] = []
        item = {**item, "type": "message", "status": "completed", "content": content}
    item.setdefault("type", "message")
    return item


def conversations_api() -> FastAPI:
    app = FastAPI()
    conversations: dict[str, list[dict[str, Any]]] = {}
    ids = itertools.count(1)
    app.state.requests = Counter()  # "POST /conversations/{id}/items" -> count
    app.state.conversations = conversations

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        path = "/".join("{id}" if part.startswith(("conv_", "msg_", "fc_", "item_")) else part
                        for part in request.url.path.split("/"))
        app.state.requests[f"{request.method} {path}"] += 1
        return await call_next(request)

    def conversation(conversation_id: str) -> list[dict[str, Any]]:
        if conversation_id not in conversations:
            raise HTTPException(404, {"message": "conversation not found"})
        return conversations[conversation_id]

    @app.post("/v1/conversations")
    async def create(body: dict[str, Any]) -> dict[str, Any]:
        conversation_id = f"conv_{next(ids)}"
        conversations[conversation_id] = [_normalised(item, f"item_{next(ids)}") for item in body.get("items", [])]
        return {"id": conversation_id, "object": "conversation", "created_at": 0, "metadata": {}}

    @app.delete("/v1/conversations/{conversation_id}")
    async def delete(conversation_id: str) -> dict[str, Any]:
        conversation(conversation_id)
        del conversations[conversation_id]
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    @app.post("/v1/conversations/{conversation_id}/items")
    async def add(conversation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        added = [_normalised(item, f"item_{next(ids)}") for item in body["items"]]
        conversation(conversation_id).extend(added)
        return {"object": "list", "data": added, "first_id": added[0]["id"], "last_id": added[-1]["id"],
                "has_more": False}

    @app.get("/v1/conversations/{conversation_id}/items")
    async def items(conversation_id: str, order: str = "desc", limit: int = 20,
                    after: str | None = None) -> dict[str, Any]:
        stored = conversation(conversation_id)
        ordered = stored if order == "asc" else stored[::-1]
        if after is not None:
            ordered = ordered[[item["id"] for item in ordered].index(after) + 1:]
        page = ordered[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(ordered) > limit}

    @app.delete("/v1/conversations/{conversation_id}/items/{item_id}")
    async def delete_item(conversation_id: str, item_id: str) -> dict[str, Any]:
        stored = conversation(conversation_id)
        stored[:] = [item for item in stored if item["id"] != item_id]
        return {"id": conversation_id, "object": "conversation", "created_at": 0, "metadata": {}}

    return app
