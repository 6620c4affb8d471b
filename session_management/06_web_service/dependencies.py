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
# The schema states what the validators reject, so a client that follows /openapi.json never meets a 422 it could
# not foresee. Whitespace is what Python's str.strip() removes (U+00A0 and U+3000 included; none is above U+3000).
# NUL: PostgreSQL's text cannot hold it, so no backend accepts it. Patterns use \uXXXX: JSON Schema's dialect
# (ECMA-262) and Python's re read them alike.
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
# Lone surrogates (U+D800-U+DFFF) are not valid UTF-8 anywhere: refused with NUL.
_NOT_NUL = "[^\\u0000\\ud800-\\udfff]"
_SOLID = "[^" + "".join(f"\\u{ord(c):04x}" for c in "\0" + WHITESPACE) + "\\ud800-\\udfff]"
_SPACE = "[" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"
MESSAGE_PATTERN = f"^{_SPACE}*{_SOLID}{_NOT_NUL}*$"  # no NUL, and a character at least that is not whitespace
TITLE_PATTERN = f"^{_NOT_NUL}*$"


def storable(value: str, field: str) -> str:
    """Refuse text a database cannot store as text, the same on every backend, before anything is stored:
    NUL (PostgreSQL's text types cannot hold it) and lone surrogates (not valid UTF-8 anywhere)."""
    if "\0" in value:
        raise ValueError(f"{field} must not contain NUL (\\u0000)")
    if any("\ud800" <= character <= "\udfff" for character in value):
        raise ValueError(f"{field} must be valid Unicode (it contains a lone surrogate, \\ud800-\\udfff)")
    return value


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=TITLE_LENGTH, json_schema_extra={"pattern": TITLE_PATTERN})

    @field_validator("title")
    @classmethod
    def storable_title(cls, value: str | None) -> str | None:
        return None if value is None else storable(value, "title")


class NewMessage(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, json_schema_extra={"pattern": MESSAGE_PATTERN})

    @field_validator("message")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return storable(value, "message").strip()


# A key the client makes up per message (a uuid), sent again with a retry of that message: visible ASCII.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=KEY_LENGTH,
                                              pattern=r"^[!-~]+$")]


def database(request: Request) -> Database:
    return request.app.state.db


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
