"""What the service answers, as pydantic models: the routes name them (``response_model=``), so FastAPI checks
every answer against its model and ``/openapi.json`` types every response, for generated clients and fuzzers.

The request bodies are in `dependencies.py` (`NewConversation`, `NewMessage`), the error shape in `errors.py`.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the schema says no other field is ever sent


class Health(Shape):
    status: Literal["ok"]


class Me(Shape):
    user: str


class Conversation(Shape):
    id: uuid.UUID
    title: str
    created_at: AwareDatetime  # UTC, with its offset: a client must not guess the zone
    updated_at: AwareDatetime


class Page(Shape):
    items: list[Conversation]
    total: int = Field(ge=0)
    next_offset: int | None = Field(ge=1, description="the offset of the next page; null on the last page")


class History(Shape):
    items: list[dict[str, Any]] = Field(description="the SDK's stored items, oldest first")
    lines: list[str] = Field(description="one readable line per item")


class Reply(Shape):
    reply: str


class Undone(Shape):
    removed: int = Field(ge=0, description="how many items were removed")
    lines: list[str]


class EventStream(StreamingResponse):
    """The stream route's response class: FastAPI documents its 200 as ``text/event-stream``, not JSON."""

    media_type = "text/event-stream"




def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["event", "data"], "additionalProperties": False,
            "properties": {"event": {"const": name},
                           "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data}}}


# The 200 of the stream route: the events (OpenAPI 3.2's itemSchema, which FastAPI uses for its own streams).
EVENTS = {
    "description": "Server-sent events: `delta` events, then `done` with the whole reply; or `error` (the error "
                   "shape) if the turn failed after the stream began, and then it was not stored.",
    "content": {"text/event-stream": {"itemSchema": {"oneOf": [
        _event("delta", {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}),
        _event("done", {"$ref": "#/components/schemas/Reply"}),
        _event("error", {"$ref": "#/components/schemas/ErrorBody"}),
    ]}}},
}
