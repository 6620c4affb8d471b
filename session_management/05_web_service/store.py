"""Queries on the `conversations` table (defined once in `session_management.common.conversations`).

The SDK stores items per session id and nothing else: no owner, no title, no way to list a user's
conversations. This table sits next to the SDK's tables in the same database; a conversation's id is also its
SDK session id. Every function runs under the database deadline (see `database.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import MetaData, and_, delete, func, insert, select, update

from session_management.common import create_session_tables
from session_management.common.conversations import DEFAULT_TITLE, TITLE_LENGTH, conversations_table
from session_management.common.schema import session_tables

from .database import Database

metadata = MetaData()
conversations = conversations_table(metadata)
sdk_sessions, sdk_messages = session_tables(MetaData())


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, str]:
        """The API's view; times are stored as naive UTC and sent with their offset, so no client guesses."""
        return {"id": self.id, "title": self.title, "created_at": self.created_at.replace(tzinfo=UTC).isoformat(),
                "updated_at": self.updated_at.replace(tzinfo=UTC).isoformat()}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, like the SDK's CURRENT_TIMESTAMP on a UTC server


async def prepare(db: Database) -> None:
    """Create the SDK's tables (the course's helper, correct on MySQL) and ours, if missing."""
    await create_session_tables(db.engine)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


async def create(db: Database, owner: str, title: str | None = None) -> Conversation:
    """A new conversation, and its SDK session row in the same transaction.

    Creating the session row here, before anyone can send to the conversation, is lesson 02's cure for racing
    first writes: on MySQL/MariaDB, simultaneous first messages to a session whose row does not exist yet
    deadlock inside the SDK's ``add_items`` (InnoDB error 1213). With the row in place they queue on its lock.
    """
    now = _now()
    row = Conversation(str(uuid.uuid4()), owner, (title or DEFAULT_TITLE)[:TITLE_LENGTH], now, now)
    async with db.deadline(), db.engine.begin() as connection:
        await connection.execute(insert(conversations).values(
            id=row.id, owner=row.owner, title=row.title, created_at=now, updated_at=now))
        await connection.execute(insert(sdk_sessions).values(session_id=row.id))
    return row


async def get(db: Database, owner: str, conversation_id: str) -> Conversation | None:
    """The conversation if *owner* owns it; None otherwise, whether it exists or not."""
    async with db.deadline(), db.engine.connect() as connection:
        row = (await connection.execute(select(conversations).where(
            and_(conversations.c.id == conversation_id, conversations.c.owner == owner)))).first()
    return Conversation(**row._mapping) if row else None


async def list_for(db: Database, owner: str, limit: int, offset: int) -> tuple[list[Conversation], int]:
    """One page of *owner*'s conversations, most recently active first, and their total count."""
    async with db.deadline(), db.engine.connect() as connection:
        rows = (await connection.execute(
            select(conversations).where(conversations.c.owner == owner)
            .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
            .limit(limit).offset(offset))).all()
        total = await connection.scalar(select(func.count()).select_from(conversations)
                                        .where(conversations.c.owner == owner))
    return [Conversation(**row._mapping) for row in rows], int(total or 0)


async def touch(db: Database, conversation_id: str, title: str | None = None) -> None:
    values: dict[str, object] = {"updated_at": _now()}
    if title is not None:
        values["title"] = title[:TITLE_LENGTH]
    async with db.deadline(), db.engine.begin() as connection:
        await connection.execute(update(conversations).where(conversations.c.id == conversation_id).values(**values))


async def delete_conversation(db: Database, owner: str, conversation_id: str) -> bool:
    """Delete the conversation and its SDK history in one transaction. False if *owner* has no such one.

    Messages are deleted explicitly: on SQLite the SDK does not enable foreign keys, so deleting only the
    session row would leave its messages behind.
    """
    async with db.deadline(), db.engine.begin() as connection:
        owned = await connection.execute(delete(conversations).where(
            and_(conversations.c.id == conversation_id, conversations.c.owner == owner)))
        if owned.rowcount == 0:
            return False
        await connection.execute(delete(sdk_messages).where(sdk_messages.c.session_id == conversation_id))
        await connection.execute(delete(sdk_sessions).where(sdk_sessions.c.session_id == conversation_id))
    return True
