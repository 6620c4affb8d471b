"""What a reader would pick instead of the course's store: other libraries' SQL chat histories, used as their
documentation shows, each doing the benchmark's turn (read the history, store a question and an answer).

Each needs its own dependency group (`uv sync --group peers`, or one of the groups below); none is part of the
course's own install. The adapters only translate `{"role", "content"}` dicts to each library's message type and
back, so every store is checked for lost and duplicated messages the same way.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError

from .stores import Close, Opener, StoreFactory

# LlamaIndex's package pins asyncpg<0.31, older than the course's: it is not a dependency group (uv resolves
# every group together, so it would downgrade everyone's asyncpg), but an overlay for the run that wants it.
LLAMAINDEX_PACKAGE = "llama-index-storage-chat-store-postgres>=0.5.0"
LLAMAINDEX_OVERLAY = f"uv run --group peers --with '{LLAMAINDEX_PACKAGE}' python -m session_management.09_scaling.main"

# peer name -> (module it needs, how to install it)
REQUIREMENTS = {
    "langchain": ("langchain_community", "`uv sync --group peers` (or only this one: --group peers-langchain)"),
    "adk": ("google.adk", "`uv sync --group peers` (or only this one: --group peers-adk)"),
    "llamaindex": ("llama_index.storage.chat_store.postgres", f"run the benchmark as `{LLAMAINDEX_OVERLAY} ...`"),
}


def require(peer: str) -> None:
    module, how = REQUIREMENTS[peer]
    try:
        importlib.import_module(module)
    except ImportError:
        raise CourseError(f"the {peer} peer needs the {module!r} package, which is not installed",
                          f"install it: {how}") from None


# --- LangChain: SQLChatMessageHistory on an AsyncEngine -------------------------------------------------------

class _LangChain:
    """A turn: `aget_messages()` (the whole history: there is no limit) and `aadd_messages([human, ai])`, one
    transaction of two ORM INSERTs into `message_store` (id, session_id, message), whose session_id has no index."""

    def __init__(self, session_id: str, engine: AsyncEngine) -> None:
        from langchain_community.chat_message_histories import SQLChatMessageHistory

        self.history = SQLChatMessageHistory(session_id=session_id, connection=engine)

    async def get_items(self, limit: int | None = None) -> list[dict[str, Any]]:
        messages = await self.history.aget_messages()
        if limit is not None:
            messages = messages[-limit:] if limit else []
        return [{"role": "user" if m.type == "human" else "assistant", "content": m.content} for m in messages]

    async def add_items(self, items: list[dict[str, Any]]) -> None:
        from langchain_core.messages import AIMessage, HumanMessage

        await self.history.aadd_messages([(HumanMessage if item["role"] == "user" else AIMessage)(item["content"])
                                          for item in items])

    async def clear_session(self) -> None:
        await self.history.aclear()


async def _open_langchain(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    require("langchain")
    # Every SQLChatMessageHistory object creates the table on its first call; on a database without it, the
    # warm-up's concurrent first calls would race their CREATE TABLEs (UniqueViolation on pg_type). One first.
    await _LangChain("bench-setup", engine).get_items()

    async def close() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM message_store WHERE session_id LIKE 'bench-%'"))

    return (lambda sid: _LangChain(sid, engine)), close


# --- Google ADK: DatabaseSessionService on the same engine ----------------------------------------------------

ADK_APP = "session-bench"


class _Adk:
    """A turn: `get_session()` (with `num_recent_events` for a limited read; `create_session()` on the first turn)
    and two `append_event()` calls, one transaction each: ADK appends one event at a time (no batch append), and
    each append locks the session row, checks it is not stale and updates it."""

    def __init__(self, service: Any, session_id: str) -> None:
        self.service, self.session_id = service, session_id
        self.session: Any = None

    async def _load(self, limit: int | None) -> Any:
        from google.adk.sessions.base_session_service import GetSessionConfig

        config = GetSessionConfig(num_recent_events=limit) if limit is not None else None
        session = await self.service.get_session(app_name=ADK_APP, user_id=self.session_id,
                                                 session_id=self.session_id, config=config)
        if session is None:
            session = await self.service.create_session(app_name=ADK_APP, user_id=self.session_id,
                                                        session_id=self.session_id)
        return session

    async def get_items(self, limit: int | None = None) -> list[dict[str, Any]]:
        self.session = await self._load(limit)
        return [{"role": "user" if event.author == "user" else "assistant", "content": event.content.parts[0].text}
                for event in self.session.events]

    def _event(self, item: dict[str, Any], timestamp: float | None = None) -> Any:
        from google.adk.events import Event
        from google.genai import types

        role = "user" if item["role"] == "user" else "model"
        event = Event(id=Event.new_id(), invocation_id="bench", author="user" if role == "user" else "assistant",
                      content=types.Content(role=role, parts=[types.Part(text=item["content"])]))
        if timestamp is not None:
            event.timestamp = timestamp
        return event

    async def add_items(self, items: list[dict[str, Any]]) -> None:
        if self.session is None:  # an append without a read first: what the ADK Runner does too
            self.session = await self._load(0)
        for item in items:
            await self.service.append_event(self.session, self._event(item))

    async def clear_session(self) -> None:
        await self.service.delete_session(app_name=ADK_APP, user_id=self.session_id, session_id=self.session_id)

    async def prefill(self, items: list[dict[str, Any]]) -> None:
        """Untimed set-up of a long history. append_event would take one transaction per item (a 1,000-item
        history for 100 conversations is 100,000 of them), so this writes ADK's own rows in one transaction."""
        session = await self._load(0)
        schema = self.service._get_schema_classes()  # ADK's table classes for its schema version
        start = time.time() - len(items) * 0.001  # strictly increasing timestamps, before the measured turns
        async with self.service.database_session_factory() as sql_session:
            sql_session.add_all([schema.StorageEvent.from_event(session, self._event(item, start + n * 0.001))
                                 for n, item in enumerate(items)])
            await sql_session.commit()


async def _open_adk(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
    require("adk")
    from google.adk.sessions import DatabaseSessionService

    service = DatabaseSessionService(db_engine=engine)
    # The app's row in app_states is created by its first create_session(); racing first calls fail on MariaDB
    # (IntegrityError on the key; the recovery re-reads inside the same snapshot). One session first, then none.
    await service.create_session(app_name=ADK_APP, user_id="bench-setup", session_id="bench-setup")
    await service.delete_session(app_name=ADK_APP, user_id="bench-setup", session_id="bench-setup")

    async def close() -> None:
        async with engine.begin() as connection:
            for table in ("events", "sessions", "user_states", "app_states"):
                await connection.execute(text(f"DELETE FROM {table} WHERE app_name = :app"), {"app": ADK_APP})
        await service.close()  # does not dispose an engine it was given

    return (lambda sid: _Adk(service, sid)), close


# --- LlamaIndex: PostgresChatStore (PostgreSQL only) ----------------------------------------------------------

class _LlamaIndex:
    """A turn: `aget_messages(key)` (one row holding the whole conversation as an array: there is no limit) and
    `async_add_message()` twice, each an upsert that rewrites the row with `array_cat(value, new)`: the write
    grows with the conversation. There is no batch append."""

    def __init__(self, store: Any, key: str) -> None:
        self.store, self.key = store, key

    async def get_items(self, limit: int | None = None) -> list[dict[str, Any]]:
        messages = await self.store.aget_messages(self.key)
        if limit is not None:
            messages = messages[-limit:] if limit else []
        return [{"role": m.role.value, "content": m.content} for m in messages]

    async def add_items(self, items: list[dict[str, Any]]) -> None:
        from llama_index.core.llms import ChatMessage

        for item in items:
            await self.store.async_add_message(self.key, ChatMessage(role=item["role"], content=item["content"]))

    async def clear_session(self) -> None:
        await self.store.adelete_messages(self.key)

    async def prefill(self, items: list[dict[str, Any]]) -> None:
        from llama_index.core.llms import ChatMessage

        await self.store.aset_messages(self.key, [ChatMessage(role=i["role"], content=i["content"]) for i in items])


async def _open_llamaindex(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close] | None:
    if engine.dialect.name != "postgresql":
        return None  # a PostgreSQL store (ARRAY columns, ON CONFLICT)
    require("llamaindex")
    import asyncio

    from llama_index.storage.chat_store.postgres import PostgresChatStore
    from sqlalchemy import create_engine as create_sync_engine
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import sessionmaker

    # Its constructor creates the table through a sync engine (psycopg); the turns run on the shared async engine.
    sync_engine = create_sync_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        store = await asyncio.to_thread(PostgresChatStore, session=sessionmaker(sync_engine),
                                        async_session=sessionmaker(engine, class_=AsyncSession),  # type: ignore[call-overload]
                                        table_name="chatstore")
    finally:
        sync_engine.dispose()
    table = store._table_class.__tablename__  # "chatstore", or "data_chatstore" where an older version made it

    async def close() -> None:
        async with engine.begin() as connection:
            await connection.execute(text(f'DELETE FROM public."{table}" WHERE key LIKE \'bench-%\''))

    return (lambda sid: _LlamaIndex(store, sid)), close


PEERS: dict[str, Opener] = {
    "langchain": _open_langchain,
    "adk": _open_adk,
    "llamaindex": _open_llamaindex,
}
