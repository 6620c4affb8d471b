"""`TurnSession`: the SDK's `SQLAlchemySession`, saving a whole turn at once, under the database deadline.

The Runner stores a turn in two writes: the user's message before the model runs, the reply after. If the
database fails between the two (a dropped connection, a timeout), the message is stored without its reply;
the client sees a 503, retries, and the message is stored twice. So this session keeps the Runner's writes in
memory and `save()` writes them in one `add_items`, one transaction: a turn is stored whole or not at all,
and a retried request stores it exactly once.

`save()` also retries a deadlock. InnoDB (MySQL/MariaDB) may pick a transaction as a deadlock victim (error
1213), PostgreSQL too (SQLSTATE 40P01); the database has rolled that transaction back, so writing again is
safe and correct, and a deadlock is not an outage.
"""

from __future__ import annotations

import asyncio
import random

from agents.extensions.memory import SQLAlchemySession
from agents.items import TResponseInputItem
from sqlalchemy.exc import DBAPIError

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


class TurnSession(SQLAlchemySession):
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

    async def save(self) -> None:
        """Write this turn's items in one transaction, retrying a deadlock a few times."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                async with self._db.deadline():
                    await super().add_items(self._pending)
                break
            except DBAPIError as error:
                if not is_deadlock(error) or attempt == DEADLOCK_RETRIES:
                    raise
            await asyncio.sleep(0.01 * (attempt + 1) * random.random())  # jitter: the two victims do not collide again
        self._pending = []
