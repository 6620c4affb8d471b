"""`TurnSession`: the SDK's `SQLAlchemySession`, saving a whole turn at once, under the database deadline.

The Runner stores a turn in two writes: the user's message before the model runs, the reply after. If the
database fails between the two (a dropped connection, a timeout), the message is stored without its reply;
the client sees a 503, retries, and the message is stored twice. So this session keeps the Runner's writes in
memory (reads, `get_items` and `pop_item`, are the SDK's own) and `save()` writes them in one transaction,
together with everything else the turn changes: the conversation's time and title, and the client's
``Idempotency-Key``. A turn is stored whole or not at all.

That alone does not make a retry safe: a reply can be lost *after* the commit (the client's connection drops
after the last streamed word, a proxy times out). The client cannot tell "not stored" from "stored, answer
lost", so it sends an ``Idempotency-Key`` with each message and the same key with its retry; the key is stored
in the turn's transaction, and a retry that finds it gets the stored reply and stores nothing.

`save()` also retries a deadlock. InnoDB (MySQL/MariaDB) may pick a transaction as a deadlock victim (error
1213), PostgreSQL too (SQLSTATE 40P01); the database has rolled that transaction back, so writing again is
safe and correct, and a deadlock is not an outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

from agents.extensions.memory import SQLAlchemySession
from agents.items import TResponseInputItem
from fastapi import HTTPException
from sqlalchemy.exc import DBAPIError

from . import store
from .database import Database

DEADLOCK_RETRIES = 5


def is_deadlock(error: BaseException) -> bool:
    """InnoDB's 1213, PostgreSQL's 40P01, or SQLite's "database is locked": the transaction was rolled back (or
    never got the lock); try it again. SQLite answers at once, without waiting out its busy timeout, when a
    transaction that read first then tries to write while another writer holds the file."""
    if not isinstance(error, DBAPIError) or error.orig is None:
        return False
    code = error.orig.args[0] if error.orig.args else None
    return (code == 1213 or getattr(error.orig, "sqlstate", None) == "40P01"
            or "database is locked" in str(error.orig))


class KeyReused(HTTPException):
    """The Idempotency-Key was used before, in this conversation, for another message: 409."""

    def __init__(self) -> None:
        super().__init__(409, "this Idempotency-Key was already used for another message in this conversation; "
                              "send a new key with each new message")


def digest(message: str) -> str:
    return hashlib.sha256(message.encode("utf-8", "surrogatepass")).hexdigest()


def reply_for(earlier: store.TurnKey, message: str) -> str:
    """The stored reply for a retry of *message*; KeyReused if the key was sent with another message."""
    if earlier.request_sha256 != digest(message):
        raise KeyReused()
    return earlier.reply


def serialize(item: TResponseInputItem) -> str:
    """An item as the SDK's `SQLAlchemySession` stores it (its default: ASCII-escaped, compact JSON), so the
    SDK's own `get_items` reads what `save()` wrote."""
    return json.dumps(item, ensure_ascii=True, separators=(",", ":"))


class TurnSession(SQLAlchemySession):
    """Writes nothing until `save()`: call it after every run that uses this session, or the turn is lost."""

    def __init__(self, session_id: str, db: Database) -> None:
        super().__init__(session_id, engine=db.engine)
        self._db = db
        self._pending: list[TResponseInputItem] = []

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        async with self._db.deadline():
            stored = await super().get_items()
        items = stored + self._pending  # what the Runner wrote this turn is part of the history it reads
        return items if limit is None else items[-limit:] if limit > 0 else []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        self._pending.extend(items)  # written by save(), all at once

    async def pop_item(self) -> TResponseInputItem | None:
        if self._pending:
            return self._pending.pop()
        async with self._db.deadline():
            return await super().pop_item()

    async def save(self, message: str, reply: str, *, title: str | None = None, key: str | None = None) -> str:
        """Store this turn in one transaction, retrying a deadlock a few times. Returns the reply the client gets:
        *reply*, or the stored one when a request with the same *key* stored this turn first."""
        turn = store.Turn(self.session_id, [serialize(item) for item in self._pending], title, key,
                          digest(message), reply)
        deadlocks, created = 0, False
        while True:
            try:
                async with self._db.deadline(), self._db.engine.begin() as connection:
                    earlier = await store.store_turn(connection, turn)
                break
            except store.SessionRowMissing:
                if created:  # deleted again meanwhile (the conversation was deleted): nothing to store into
                    raise
                await store.create_session_row(self._db, self.session_id)
                created = True
            except DBAPIError as error:
                if not is_deadlock(error) or deadlocks == DEADLOCK_RETRIES:
                    raise
                deadlocks += 1
                # jitter: the two victims do not collide again
                await asyncio.sleep(0.01 * deadlocks * random.random())
        self._pending = []
        return reply if earlier is None else reply_for(earlier, message)
