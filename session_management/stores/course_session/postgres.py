"""`CourseSession` on PostgreSQL, through asyncpg: one statement per read and per write."""

from __future__ import annotations

from typing import Any

from ._pool import borrow, read
from .base import CourseSession


class PostgresCourseSession(CourseSession, dialects=("postgresql",)):
    """asyncpg prepares each statement once per connection and reuses it.

    ``_append`` is **one statement**: an upsert of the session row (``ON CONFLICT ... DO UPDATE``, which locks
    the row until the statement commits, so writers to one session take turns as under the SDK's
    ``SELECT ... FOR UPDATE``) feeding a multi-row insert of the items (``unnest ... WITH ORDINALITY`` keeps
    their order). A single statement commits on its own: no ``BEGIN``/``COMMIT`` round trips.
    """

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        super().__init__(session_id, **kwargs)
        sessions, messages = self._sessions_table, self._messages_table
        self._select_all = (f"SELECT message_data FROM {messages} WHERE session_id = $1 "
                            f"ORDER BY created_at, id")
        self._select_newest = (f"SELECT message_data FROM {messages} WHERE session_id = $1 "
                               f"ORDER BY created_at DESC, id DESC LIMIT $2")
        self._insert = (f"WITH s AS (INSERT INTO {sessions} (session_id) VALUES ($1) "
                        f"ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP "
                        f"RETURNING session_id) "
                        f"INSERT INTO {messages} (session_id, message_data) "
                        f"SELECT s.session_id, t.data FROM s, unnest($2::text[]) WITH ORDINALITY AS t(data, n) "
                        f"ORDER BY t.n")
        self._lock = f"SELECT 1 FROM {sessions} WHERE session_id = $1 FOR UPDATE"
        self._delete_newest = (f"DELETE FROM {messages} WHERE id = (SELECT id FROM {messages} "
                               f"WHERE session_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1) "
                               f"RETURNING message_data")
        self._delete_messages = f"DELETE FROM {messages} WHERE session_id = $1"
        self._delete_session = f"DELETE FROM {sessions} WHERE session_id = $1"

    async def _read_all(self) -> list[str]:
        rows = await read(self.engine, lambda connection: connection.driver.fetch(self._select_all, self.session_id))
        return [row[0] for row in rows]

    async def _read_newest(self, count: int) -> list[str]:
        rows = await read(self.engine, lambda connection: connection.driver.fetch(self._select_newest,
                                                                                   self.session_id, count))
        return [row[0] for row in rows]

    async def _append(self, payload: list[str]) -> None:
        async with borrow(self.engine) as connection:
            await connection.driver.execute(self._insert, self.session_id, payload)

    async def _take_newest(self) -> str | None:
        async with borrow(self.engine) as connection, connection.driver.transaction():
            # The session row's lock makes racing pops take turns, so each claims a different item.
            if await connection.driver.fetchval(self._lock, self.session_id) is None:
                return None
            return await connection.driver.fetchval(self._delete_newest, self.session_id)

    async def _delete_all(self) -> None:
        async with borrow(self.engine) as connection, connection.driver.transaction():
            await connection.driver.execute(self._delete_messages, self.session_id)
            await connection.driver.execute(self._delete_session, self.session_id)
