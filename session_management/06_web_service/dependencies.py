"""What endpoints declare they need, FastAPI style: the database, the caller, the caller's conversation.

    async def history(conversation: OwnedConversation, session: Session) -> ...

FastAPI resolves these per request, in order (the conversation needs the caller, the session needs the
conversation), so an endpoint's body holds only what it does.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator

from session_management.common.conversations import KEY_LENGTH, TITLE_LENGTH

from . import store
from .auth import user_for
from .database import Database
from .turn import TurnSession

MAX_MESSAGE_CHARS = 4000


def storable(value: str) -> str:
    """Refuse text a database cannot store as text, the same on every backend, before anything is stored:
    NUL (PostgreSQL's text types cannot hold it) and lone surrogates (not valid UTF-8 anywhere)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    if any("\ud800" <= character <= "\udfff" for character in value):
        raise ValueError("must be valid Unicode (it contains a lone surrogate, \\ud800-\\udfff)")
    return value


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=TITLE_LENGTH)

    @field_validator("title")
    @classmethod
    def storable_title(cls, value: str | None) -> str | None:
        return None if value is None else storable(value)


class NewMessage(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("message")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return storable(value.strip())


# A key the client makes up per message (a uuid), sent again with a retry of that message: visible ASCII.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=KEY_LENGTH,
                                              pattern=r"^[!-~]+$")]


def database(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


DB = Annotated[Database, Depends(database)]
_bearer = HTTPBearer(auto_error=False)  # declares the scheme in the OpenAPI schema; the check is ours


def current_user(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The user whose bearer token this is, or 401."""
    header = f"Bearer {credentials.credentials}" if credentials else None
    user = user_for(request.app.state.users, header)
    if user is None:
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return user


User = Annotated[str, Depends(current_user)]


async def owned_conversation(db: DB, user: User, conversation_id: Annotated[uuid.UUID, Path()]) -> store.Conversation:
    """The caller's conversation, or 404: someone else's and a nonexistent one look the same (ids are not confirmed)."""
    conversation = await store.get(db, user, str(conversation_id))
    if conversation is None:
        raise HTTPException(404, "conversation not found")
    return conversation


OwnedConversation = Annotated[store.Conversation, Depends(owned_conversation)]


def turn_session(db: DB, conversation: OwnedConversation) -> TurnSession:
    return TurnSession(conversation.id, db)  # cheap: a few Python objects, no connection held


Session = Annotated[TurnSession, Depends(turn_session)]
