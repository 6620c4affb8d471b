"""The `conversations` table: who owns which conversation, which the SDK's tables cannot say.

The SDK stores items per session id and nothing else: no owner, no title, no way to list a user's
conversations. This table sits next to the SDK's tables in the same database; a conversation's id is also its
SDK session id, so one uuid ties the two together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_session_tables
from session_management.common.schema import MESSAGES_TABLE, SESSIONS_TABLE

_TIME = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")
metadata = MetaData()
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4: random, so ids reveal nothing and cannot be guessed
    Column("owner", String(255), nullable=False),
    Column("title", String(200), nullable=False),
    # Microseconds everywhere (MySQL's DATETIME defaults to whole seconds), so "newest first" is stable.
    Column("created_at", _TIME, nullable=False),
    Column("updated_at", _TIME, nullable=False),
    Index("idx_conversations_owner_updated", "owner", "updated_at"),
    mysql_charset="utf8mb4",
)
DEFAULT_TITLE = "New conversation"


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    title: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


def _now() -> datetime:
    # Naive UTC, like the SDK's CURRENT_TIMESTAMP columns on a UTC server.
    return datetime.utcnow().replace(tzinfo=None)  # noqa: DTZ003


async def prepare(engine: AsyncEngine) -> None:
    """Create the SDK's tables (the course's helper, correct on MySQL) and ours, if missing."""
    await create_session_tables(engine)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


async def create(engine: AsyncEngine, owner: str, title: str | None = None) -> Conversation:
    now = _now()
    row = Conversation(str(uuid.uuid4()), owner, (title or DEFAULT_TITLE)[:200], now, now)
    async with engine.begin() as connection:
        await connection.execute(insert(conversations).values(
            id=row.id, owner=row.owner, title=row.title, created_at=now, updated_at=now))
    return row


async def get(engine: AsyncEngine, owner: str, conversation_id: str) -> Conversation | None:
    """The conversation if *owner* owns it; None otherwise, whether it exists or not."""
    async with engine.connect() as connection:
        row = (await connection.execute(select(conversations).where(
            and_(conversations.c.id == conversation_id, conversations.c.owner == owner)))).first()
    return Conversation(**row._mapping) if row else None


async def list_for(engine: AsyncEngine, owner: str, limit: int, offset: int) -> tuple[list[Conversation], int]:
    """One page of *owner*'s conversations, most recently active first, and their total count."""
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(conversations).where(conversations.c.owner == owner)
            .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
            .limit(limit).offset(offset))).all()
        total = await connection.scalar(select(func.count()).select_from(conversations)
                                        .where(conversations.c.owner == owner))
    return [Conversation(**row._mapping) for row in rows], int(total or 0)


async def touch(engine: AsyncEngine, conversation_id: str, title: str | None = None) -> None:
    values: dict[str, object] = {"updated_at": _now()}
    if title is not None:
        values["title"] = title[:200]
    async with engine.begin() as connection:
        await connection.execute(update(conversations).where(conversations.c.id == conversation_id).values(**values))


async def delete_conversation(engine: AsyncEngine, owner: str, conversation_id: str) -> bool:
    """Delete the conversation and its SDK history in one transaction. False if *owner* has no such one.

    Messages are deleted explicitly: on SQLite the SDK does not enable foreign keys, so deleting only the
    session row would leave its messages behind.
    """
    sdk = MetaData()
    messages = Table(MESSAGES_TABLE, sdk, Column("session_id", String(255)))
    sessions = Table(SESSIONS_TABLE, sdk, Column("session_id", String(255)))
    async with engine.begin() as connection:
        owned = await connection.execute(delete(conversations).where(
            and_(conversations.c.id == conversation_id, conversations.c.owner == owner)))
        if owned.rowcount == 0:
            return False
        await connection.execute(delete(messages).where(messages.c.session_id == conversation_id))
        await connection.execute(delete(sessions).where(sessions.c.session_id == conversation_id))
    return True
