"""The endpoints. Each declares what it needs (see `dependencies.py`) and does only its own work.

    GET    /api/health                                   200 if the database answers within CHAT_HEALTH_TIMEOUT
    GET    /api/me                                       who the token belongs to
    POST   /api/conversations                            create one          {"title": optional}
    GET    /api/conversations?limit=&offset=             mine, newest first
    GET    /api/conversations/{id}                       one of mine
    GET    /api/conversations/{id}/history               its items, oldest first
    POST   /api/conversations/{id}/messages              send a message      {"message": "..."} -> reply
    POST   /api/conversations/{id}/messages/stream       the same, as server-sent events
                                                         (both take an optional Idempotency-Key header)
    POST   /api/conversations/{id}/undo                  remove the last turn
    DELETE /api/conversations/{id}                       delete it and its history
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from agents import Agent, Runner
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BeforeValidator
from sqlalchemy import text

from session_management.common import item_line
from session_management.common.conversations import DEFAULT_TITLE

from . import schemas, store
from .dependencies import DB, IdempotencyKey, NewConversation, NewMessage, OwnedConversation, Session, User
from .errors import describe, documented, error_body, failure_response, logger, unavailable_response
from .turn import KeyReused, reply_for

router = APIRouter(prefix="/api")
# Every status each route can answer is in /openapi.json, with the one error shape (errors.py). Any route: a method
# the path lacks (405), a body over the limit (413, from the gate), a bug (500). Then, as each route needs them:
ANY = (405, 413, 500)
SIGNED_IN = (*ANY, 401, 503)  # a token, and the database
OWN = (*SIGNED_IN, 404, 422)  # ... and a conversation id that is a uuid and mine
BODY = (400, 422)  # a JSON body
MAX_OFFSET = 1_000_000  # a bound, so a huge offset is a 422 and never reaches the database


def _digits(value: object) -> object:
    """Query integers as the schema says ("integer"): digits only. Pydantic alone also takes "+0.0" or " 5"."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,9}", value):
        raise ValueError("must be a whole number written with digits only")
    return value


DIGITS = BeforeValidator(_digits)


def the_agent(request: Request) -> Agent:
    return request.app.state.agent


AgentDep = Annotated[Agent, Depends(the_agent)]


@router.get("/health", response_model=schemas.Health, responses=documented(*ANY, 503))
async def health(db: DB) -> Any:
    async def select_one() -> None:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    # A task of its own, so the answer does not wait for a frozen connection's clean-up after the timeout
    # (SQLAlchemy shields closing a connection from cancellation); the clean-up finishes in the background.
    check = asyncio.create_task(select_one())
    check.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: no warning
    done, _ = await asyncio.wait({check}, timeout=db.timeouts.health)
    error = check.exception() if done else None
    if not done or error is not None:
        check.cancel()
        logger.warning("health check failed: %s", describe(error) if error is not None else "no answer in time")
        return unavailable_response()
    return {"status": "ok"}


@router.get("/me", response_model=schemas.Me, responses=documented(*ANY, 401))
async def me(user: User) -> dict[str, str]:
    return {"user": user}


@router.post("/conversations", status_code=201, response_model=schemas.Conversation,
             responses=documented(*SIGNED_IN, *BODY))
async def create_conversation(db: DB, user: User, body: NewConversation | None = None) -> dict[str, str]:
    return (await store.create(db, user, body.title if body else None)).to_json()


@router.get("/conversations", response_model=schemas.Page, responses=documented(*SIGNED_IN, 422))
async def list_conversations(
    db: DB, user: User,
    limit: Annotated[int, Query(ge=1, le=100), DIGITS] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET), DIGITS] = 0,
) -> dict[str, Any]:
    page, total = await store.list_for(db, user, limit, offset)
    next_offset = offset + len(page) if offset + len(page) < total else None
    return {"items": [c.to_json() for c in page], "total": total, "next_offset": next_offset}


@router.get("/conversations/{conversation_id}", response_model=schemas.Conversation, responses=documented(*OWN))
async def get_conversation(conversation: OwnedConversation) -> dict[str, str]:
    return conversation.to_json()


@router.get("/conversations/{conversation_id}/history", response_model=schemas.History, responses=documented(*OWN))
async def history(session: Session) -> dict[str, Any]:
    items = await session.get_items()
    return {"items": items, "lines": [item_line(item) for item in items]}


def title_from(conversation: store.Conversation, message: str) -> str | None:
    """A conversation gets its title from its first message."""
    return message[:60] if conversation.title == DEFAULT_TITLE else None


async def earlier_reply(db: DB, conversation: store.Conversation, key: str | None, message: str) -> str | None:
    """The stored reply when this request retries a turn that was stored (same Idempotency-Key), else None."""
    if key is None:
        return None
    earlier = await store.find_turn_key(db, conversation.id, key)
    return None if earlier is None else reply_for(earlier, message)


@router.post("/conversations/{conversation_id}/messages", response_model=schemas.Reply,
             responses=documented(*OWN, *BODY, 409))
async def send(db: DB, agent: AgentDep, conversation: OwnedConversation, session: Session,
               body: NewMessage, key: IdempotencyKey = None) -> dict[str, str]:
    stored = await earlier_reply(db, conversation, key, body.message)
    if stored is not None:
        return {"reply": stored}  # a retry: the turn is stored already, the model is not asked again
    result = await Runner.run(agent, body.message, session=session)
    reply = await session.save(body.message, str(result.final_output), title=title_from(conversation, body.message),
                               key=key)
    return {"reply": reply}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post("/conversations/{conversation_id}/messages/stream", response_class=schemas.EventStream,
             responses={200: schemas.EVENTS, **documented(*OWN, *BODY, 409, streaming=True)})
async def send_streamed(db: DB, agent: AgentDep, conversation: OwnedConversation, session: Session,
                        body: NewMessage, key: IdempotencyKey = None) -> StreamingResponse:
    stored = await earlier_reply(db, conversation, key, body.message)  # before the status line: a 409 is a 409

    async def replay() -> AsyncIterator[str]:
        yield sse("done", {"reply": stored})

    async def events() -> AsyncIterator[str]:
        result = Runner.run_streamed(agent, body.message, session=session)
        try:
            async for event in result.stream_events():
                if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                    yield sse("delta", {"text": event.data.delta})
            reply = await session.save(body.message, str(result.final_output),
                                       title=title_from(conversation, body.message), key=key)
            yield sse("done", {"reply": reply})
        except KeyReused as error:
            yield sse("error", error_body(error.detail))
        except Exception as error:  # noqa: BLE001 - the status line is sent: report in-band, in the same shape
            answer: JSONResponse = failure_response(error, "stream")
            yield f"event: error\ndata: {bytes(answer.body).decode()}\n\n"

    return StreamingResponse(events() if stored is None else replay(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/conversations/{conversation_id}/undo", response_model=schemas.Undone, responses=documented(*OWN))
async def undo(session: Session) -> dict[str, Any]:
    removed: list[Any] = []
    while (item := await session.pop_item()) is not None:  # back to and including the user's message
        removed.insert(0, item)
        if isinstance(item, dict) and item.get("role") == "user":
            break
    return {"removed": len(removed), "lines": [item_line(item) for item in removed]}


@router.delete("/conversations/{conversation_id}", status_code=204, response_class=Response,
               responses=documented(*OWN))
async def delete(db: DB, user: User, conversation: OwnedConversation) -> Response:
    if not await store.delete_conversation(db, user, conversation.id):
        raise HTTPException(404, "conversation not found")
    return Response(status_code=204)

