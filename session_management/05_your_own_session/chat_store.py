"""A session store of your own: one SQLite table, the aiosqlite driver, the SDK's Session protocol."""

import asyncio
import json
from typing import Any

import aiosqlite
from agents.memory import SessionABC, SessionSettings
from agents.memory.session_settings import coerce_session_settings

SCHEMA = """CREATE TABLE IF NOT EXISTS items
            (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, data TEXT NOT NULL)"""


class ChatStore:
    """One connection per process. Its users take turns (a lock), so nobody sees half a transaction."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection, self.lock = connection, asyncio.Lock()

    async def run(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run *statements* in one transaction; once started, it finishes even if the caller is cancelled."""
        async def transaction() -> list[Any]:
            async with self.lock:
                rows = [await self.connection.execute_fetchall(sql, args) for sql, args in statements]
                await self.connection.commit()
                return rows
        task = asyncio.ensure_future(transaction())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])  # the started transaction lands; then the caller hears it was cancelled
            raise


class ChatSession(SessionABC):
    def __init__(self, session_id: str, store: ChatStore, session_settings: SessionSettings | dict | None = None):
        if session_settings is not None:  # a dict becomes SessionSettings; an unknown key is a TypeError
            session_settings = coerce_session_settings(session_settings)
        self.session_id, self.store, self.session_settings = session_id, store, session_settings

    async def get_items(self, limit: int | None = None) -> list[Any]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        [rows] = await self.store.run([("SELECT data FROM items WHERE session_id = ? ORDER BY id", (self.session_id,))])
        items = [item for item in (decode(row[0]) for row in rows) if item is not None]
        return items if limit is None else items[-limit:] if limit > 0 else []

    async def add_items(self, items: list[Any]) -> None:
        rows = [(self.session_id, json.dumps(item)) for item in items]  # not JSON: TypeError, nothing written
        await self.store.run([("INSERT INTO items (session_id, data) VALUES (?, ?)", row) for row in rows])

    async def pop_item(self) -> Any:
        while True:  # the newest row that holds an item; rows that are not JSON are removed on the way
            [rows] = await self.store.run([("DELETE FROM items WHERE id = (SELECT MAX(id) FROM items "
                                            "WHERE session_id = ?) RETURNING data", (self.session_id,))])
            if not rows:
                return None
            if (item := decode(rows[0][0])) is not None:
                return item

    async def clear_session(self) -> None:
        await self.store.run([("DELETE FROM items WHERE session_id = ?", (self.session_id,))])


def decode(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return None  # a row another tool corrupted: skipped, as the SDK's own stores do
