"""What the contract command needs to check `ChatSession`: a fresh store per rule, and a way to corrupt a row.

    uv run python -m session_management.contract session_management.05_your_own_session.contract_store:fresh_store
"""

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .chat_store import SCHEMA, ChatSession, ChatStore


@asynccontextmanager
async def fresh_store(session_class: type[ChatSession] = ChatSession) -> AsyncIterator[Any]:
    """Set up an empty store in a temporary folder; yield ``make(session_id, settings=None)``; tear it down."""
    with tempfile.TemporaryDirectory() as folder:
        connection = await aiosqlite.connect(Path(folder) / "contract.db")
        try:
            await connection.execute(SCHEMA)
            store = ChatStore(connection)

            def make(session_id: str, settings: Any = None) -> ChatSession:
                return session_class(session_id, store, settings)

            async def write_raw(session_id: str, text: str) -> None:  # a row as another tool might leave it
                await store.run([("INSERT INTO items (session_id, data) VALUES (?, ?)", (session_id, text))])

            make.write_raw = write_raw  # type: ignore[attr-defined]
            yield make
        finally:
            await connection.close()
