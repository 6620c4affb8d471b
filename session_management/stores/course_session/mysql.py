"""`CourseSession` on MySQL and MariaDB, through aiomysql: one round trip per read and per write."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pymysql

from ._pool import Borrowed, borrow, read
from .base import CourseSession

DEADLOCK_RETRIES = 8
ER_LOCK_DEADLOCK = 1213


class MySQLCourseSession(CourseSession, dialects=("mysql", "mariadb")):
    """Each call sends its statements *and its COMMIT* in one round trip.

    aiomysql always opens connections with multi-statement support, so ``SELECT ...; COMMIT`` and
    ``upsert; INSERT ...; COMMIT`` each travel as one request. Ending the transaction ourselves (a read must end
    it too: InnoDB would otherwise keep its snapshot for the next borrower) lets the pool skip its own
    ``ROLLBACK`` on return. The upsert (``ON DUPLICATE KEY UPDATE``) locks the session row, so writers to one
    session take turns. Racing first writes to a *new* session can deadlock inside InnoDB (the SDK fails there,
    see lesson 02); InnoDB has then rolled the whole transaction back, so the write is retried, a few times.
    """

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        super().__init__(session_id, **kwargs)
        sessions, messages = self._sessions_table, self._messages_table
        self._select_all = (f"SELECT message_data FROM {messages} WHERE session_id = %s "
                            f"ORDER BY created_at, id; COMMIT")
        self._select_newest = (f"SELECT message_data FROM {messages} WHERE session_id = %s "
                               f"ORDER BY created_at DESC, id DESC LIMIT %s; COMMIT")
        self._upsert = (f"INSERT INTO {sessions} (session_id) VALUES (%s) "
                        f"ON DUPLICATE KEY UPDATE updated_at = CURRENT_TIMESTAMP; ")
        self._insert = f"INSERT INTO {messages} (session_id, message_data) VALUES "
        self._lock_newest = (f"SELECT 1 FROM {sessions} WHERE session_id = %s FOR UPDATE; "
                             f"SELECT id, message_data FROM {messages} WHERE session_id = %s "
                             f"ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE")
        self._delete_one = f"DELETE FROM {messages} WHERE id = %s; COMMIT"
        self._delete_all_sql = (f"DELETE FROM {messages} WHERE session_id = %s; "
                                f"DELETE FROM {sessions} WHERE session_id = %s; COMMIT")

    async def _run(self, connection: Borrowed, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Send *sql* (one or more statements); the first statement's rows. Marks the transaction ended if the
        request ended with COMMIT and every statement succeeded."""
        async with connection.driver.cursor() as cursor:
            await cursor.execute(sql, params)
            rows = list(await cursor.fetchall())
            while await cursor.nextset():  # an error in a later statement is raised here
                pass
        connection.transaction_ended = sql.endswith("COMMIT")
        return rows

    async def _read_all(self) -> list[str]:
        rows = await read(self.engine, lambda connection: self._run(connection, self._select_all, (self.session_id,)))
        return [row[0] for row in rows]

    async def _read_newest(self, count: int) -> list[str]:
        rows = await read(self.engine, lambda connection: self._run(connection, self._select_newest,
                                                                    (self.session_id, count)))
        return [row[0] for row in rows]

    async def _append(self, payload: list[str]) -> None:
        sql = self._upsert + self._insert + ", ".join(["(%s, %s)"] * len(payload)) + "; COMMIT"
        params = (self.session_id, *(value for data in payload for value in (self.session_id, data)))
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                async with borrow(self.engine) as connection:
                    await self._run(connection, sql, params)
                return
            except pymysql.err.OperationalError as error:
                if error.args[0] != ER_LOCK_DEADLOCK or attempt == DEADLOCK_RETRIES:
                    raise
            await asyncio.sleep(0.002 * (attempt + 1) * random.random())

    async def _take_newest(self) -> str | None:
        async with borrow(self.engine) as connection, connection.driver.cursor() as cursor:
            # Lock the session row first, so racing pops take turns and each claims a different item.
            await cursor.execute(self._lock_newest, (self.session_id, self.session_id))
            await cursor.nextset()
            newest = await cursor.fetchone()
            if newest is None:
                return None  # the pool's reset rolls the (empty) transaction back
            await cursor.execute(self._delete_one, (newest[0],))
            while await cursor.nextset():
                pass
            connection.transaction_ended = True
            return newest[1]

    async def _delete_all(self) -> None:
        async with borrow(self.engine) as connection:
            await self._run(connection, self._delete_all_sql, (self.session_id, self.session_id))
