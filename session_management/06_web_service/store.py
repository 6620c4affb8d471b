"""Queries on lesson 05's tables (defined once in `session_management.common.conversations`).

The SDK stores items per session id and nothing else: no owner, no title, no way to list a user's
conversations. The `conversations` table sits next to the SDK's tables in the same database; a conversation's id
is also its SDK session id. A second table remembers the turns clients sent with an ``Idempotency-Key`` (see
`turn.py`). Every function runs under the database deadline (see `database.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, MetaData, and_, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from session_management.common import create_session_tables
from session_management.common.conversations import DEFAULT_TITLE, OWNER_LENGTH, TITLE_LENGTH, course_tables
from session_management.common.schema import mysql_session_id_collation, session_tables

from .database import Database

# For queries: collations matter only when a table is created (see `prepare`).
conversations, turn_keys = course_tables(MetaData())
sdk_sessions, sdk_messages = session_tables(MetaData())


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
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, like the SDK's CURRENT_TIMESTAMP on a UTC server


async def prepare(db: Database) -> None:
    """Create the SDK's tables (the course's helper, correct on MySQL) and ours, if missing.

    On MySQL/MariaDB, an owner column from before the course compared owners byte for byte (created in the
    server's case-insensitive default collation) is converted, so no two users share conversations.
    """
    await create_session_tables(db.engine)
    async with db.engine.begin() as connection:
        await connection.run_sync(_create_course_tables)


def _create_course_tables(connection: Connection) -> None:
    collation = None
    if connection.dialect.name in ("mysql", "mariadb"):
        collation = mysql_session_id_collation(connection)
    metadata = MetaData()
    course_tables(metadata, mysql_collation=collation)
    metadata.create_all(connection, checkfirst=True)
    if collation is None:
        return
    owner = next(column for column in inspect(connection).get_columns("conversations")
                 if column["name"] == "owner")
    if owner.get("collation") != collation:
        # Same statement as lesson 06's revision 0003; an index on the column is rebuilt by the server.
        connection.execute(text(f"ALTER TABLE conversations MODIFY owner VARCHAR({OWNER_LENGTH}) "
                                f"CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"))


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


@dataclass(frozen=True)
class TurnKey:
    """A turn stored under a client's ``Idempotency-Key``: the message's digest, and the reply it got."""

    request_sha256: str
    reply: str


async def find_turn_key(db: Database, conversation_id: str, key: str) -> TurnKey | None:
    async with db.deadline(), db.engine.connect() as connection:
        return await _turn_key(connection, conversation_id, key)


async def _turn_key(connection: AsyncConnection, conversation_id: str, key: str) -> TurnKey | None:
    row = (await connection.execute(select(turn_keys.c.request_sha256, turn_keys.c.reply).where(and_(
        turn_keys.c.conversation_id == conversation_id, turn_keys.c.idempotency_key == key)))).first()
    return TurnKey(row.request_sha256, row.reply) if row else None


class SessionRowMissing(Exception):
    """The SDK's session row is created with the conversation; a session made elsewhere may lack it."""


async def create_session_row(db: Database, session_id: str) -> None:
    """Insert the SDK's session row, in a transaction of its own; a racing writer's row is as good as ours.

    Not inside a turn's transaction: on MySQL, racing inserts of one new key deadlock there, and InnoDB's
    deadlock rolls back the whole transaction, savepoints included.
    """
    try:
        async with db.deadline(), db.engine.begin() as connection:
            await connection.execute(insert(sdk_sessions).values(session_id=session_id))
    except IntegrityError:
        pass


@dataclass(frozen=True)
class Turn:
    """What one transaction stores for a turn (see `turn.py`)."""

    conversation_id: str
    items_json: list[str]  # the items, serialized as the SDK serializes them
    title: str | None  # a new title for the conversation, or None to keep it
    key: str | None  # the client's Idempotency-Key
    request_sha256: str
    reply: str


async def store_turn(connection: AsyncConnection, turn: Turn) -> TurnKey | None:
    """Store *turn* on *connection*, inside the caller's transaction. Returns the earlier turn if *turn.key*
    was already used in this conversation, and then stores nothing.

    The session row is locked first, as the SDK's own writes do, so writers of one conversation (turns, undo)
    take turns, and a turn that reads its key after the lock sees every turn committed before it.
    """
    session = sdk_sessions.c.session_id == turn.conversation_id
    if connection.dialect.name == "sqlite":
        # A write first: it takes SQLite's one writer lock now, instead of failing on a later upgrade to it.
        locked = (await connection.execute(
            update(sdk_sessions).where(session).values(updated_at=sdk_sessions.c.updated_at))).rowcount
    else:
        locked = len((await connection.execute(select(sdk_sessions.c.session_id).where(session).with_for_update()))
                     .all())
    if not locked:
        raise SessionRowMissing(turn.conversation_id)
    if turn.key is not None:
        earlier = await _turn_key(connection, turn.conversation_id, turn.key)
        if earlier is not None:
            return earlier
        await connection.execute(insert(turn_keys).values(
            conversation_id=turn.conversation_id, idempotency_key=turn.key, request_sha256=turn.request_sha256,
            reply=turn.reply, created_at=_now()))
    if turn.items_json:
        await connection.execute(insert(sdk_messages), [
            {"session_id": turn.conversation_id, "message_data": data} for data in turn.items_json])
    await connection.execute(update(sdk_sessions).where(session).values(updated_at=func.current_timestamp()))
    values: dict[str, object] = {"updated_at": _now()}
    if turn.title is not None:
        values["title"] = turn.title[:TITLE_LENGTH]
    await connection.execute(update(conversations).where(conversations.c.id == turn.conversation_id)
                             .values(**values))
    return None


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
        await connection.execute(delete(turn_keys).where(turn_keys.c.conversation_id == conversation_id))
        await connection.execute(delete(sdk_messages).where(sdk_messages.c.session_id == conversation_id))
        await connection.execute(delete(sdk_sessions).where(sdk_sessions.c.session_id == conversation_id))
    return True
