"""`CourseSession`: what every database's class shares, and the choice of class for an engine."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, ClassVar

from agents.extensions.memory import SQLAlchemySession
from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common.schema import MESSAGES_TABLE, SESSIONS_TABLE

from ._pool import settle

logger = logging.getLogger("session_management.course_session")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class CourseSession(SessionABC):
    """The SDK's `Session` on `SQLAlchemySession`'s own tables and rows, in fewer round trips.

    ``CourseSession(session_id, engine=engine)`` returns the class for the engine's database
    (`PostgresCourseSession`, `MySQLCourseSession`, `SQLiteCourseSession`); each writes its own SQL. This base
    class holds what they share, the parts of the contract that are not SQL:

    * ``session_settings`` is normalised as the SDK does (a dict is accepted, an unknown key refused);
    * ``get_items(limit=N)`` returns the newest N *valid* items: a stored row that is not JSON is skipped, and
      the read widens until N valid items are found or the history ends;
    * ``pop_item()`` removes and returns the newest valid item; a corrupt row on top is removed on the way;
    * writes (``add_items``, ``pop_item``, ``clear_session``) that have started run to their end even when the
      caller is cancelled, then raise `CancelledError`: a cancelled caller knows the write has landed;
    * compaction (the SDK's atomic replacement of the history's tail, used by
      `OpenAIResponsesCompactionSession`) is delegated to `SQLAlchemySession` on the same engine and rows.
    """

    session_settings: SessionSettings | None = None
    _classes: ClassVar[dict[str, type[CourseSession]]] = {}

    def __init_subclass__(cls, *, dialects: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for dialect in dialects:
            CourseSession._classes[dialect] = cls

    def __new__(cls, session_id: str, *, engine: AsyncEngine, **_: Any) -> CourseSession:
        if cls is CourseSession:
            chosen = CourseSession._classes.get(engine.dialect.name)
            if chosen is None:
                raise ValueError(f"CourseSession supports {', '.join(sorted(CourseSession._classes))}, "
                                 f"not {engine.dialect.name!r}; use SQLAlchemySession there")
            cls = chosen
        return super().__new__(cls)

    def __init__(
        self,
        session_id: str,
        *,
        engine: AsyncEngine,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        ensure_ascii: bool = True,
        sessions_table: str = SESSIONS_TABLE,
        messages_table: str = MESSAGES_TABLE,
    ) -> None:
        for name in (sessions_table, messages_table):
            if not _TABLE_NAME.fullmatch(name):
                raise ValueError(f"table name {name!r}: use letters, digits and underscores")
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self._engine = engine
        self._ensure_ascii = ensure_ascii
        self._sessions_table, self._messages_table = sessions_table, messages_table
        self._sdk_twin: SQLAlchemySession | None = None

    @classmethod
    def from_url(
        cls,
        session_id: str,
        *,
        url: str,
        engine_kwargs: dict[str, Any] | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CourseSession:
        """A session on a new engine for *url* (the course's pool defaults); dispose of ``session.engine``."""
        from session_management.common.databases import create_engine

        engine = create_engine(url, **(engine_kwargs or {}))
        return cls(session_id, engine=engine, session_settings=session_settings, **kwargs)

    @property
    def engine(self) -> AsyncEngine:
        """The engine whose pool this session borrows connections from (read-only, as the SDK's)."""
        return self._engine

    # -- what each database's class writes ----------------------------------------------------------------
    async def _read_all(self) -> list[str]:
        """Every stored item, oldest first."""
        raise NotImplementedError

    async def _read_newest(self, count: int) -> list[str]:
        """The newest *count* stored items, newest first."""
        raise NotImplementedError

    async def _append(self, payload: list[str]) -> None:
        """Store these items after the existing ones, atomically, creating the session row if needed."""
        raise NotImplementedError

    async def _take_newest(self) -> str | None:
        """Delete and return the newest stored item; racing callers never get the same one. None if empty."""
        raise NotImplementedError

    async def _delete_all(self) -> None:
        """Delete the session's items and its session row."""
        raise NotImplementedError

    # -- the Session protocol -----------------------------------------------------------------------------
    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        count = resolve_session_limit(limit, self.session_settings)
        if count is None:
            return self._decode(await self._read_all())
        if count <= 0:
            return []
        window = count
        while True:  # widen the window while corrupt rows hide valid items
            rows = await self._read_newest(window)
            items = self._decode(rows[::-1])
            if len(items) >= count or len(rows) < window:
                return items[-count:]
            window *= 2

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        # Serialise first: an item that is not JSON fails here, before anything is written.
        payload = [json.dumps(item, ensure_ascii=self._ensure_ascii, separators=(",", ":")) for item in items]
        await settle(self._append(payload))

    async def pop_item(self) -> TResponseInputItem | None:
        return await settle(self._pop_valid())

    async def clear_session(self) -> None:
        await settle(self._delete_all())

    async def _pop_valid(self) -> TResponseInputItem | None:
        while (stored := await self._take_newest()) is not None:
            try:
                return json.loads(stored)
            except (json.JSONDecodeError, TypeError):
                logger.warning("session %r: removed a stored item that is not valid JSON", self.session_id)
        return None

    def _decode(self, rows: list[str]) -> list[TResponseInputItem]:
        items: list[TResponseInputItem] = []
        for stored in rows:
            try:
                items.append(json.loads(stored))
            except json.JSONDecodeError:
                # The SDK's policy (skip the row), but never silently.
                logger.warning("session %r: skipping a stored item that is not valid JSON", self.session_id)
        return items

    # -- compaction -----------------------------------------------------------------------------------------
    async def _get_compaction_snapshot(self, limit: int, **options: Any) -> Any:
        """The SDK's compaction hook, served by `SQLAlchemySession` on the same engine and rows.

        `OpenAIResponsesCompactionSession` calls this (a private SDK protocol) to replace the tail of the history
        atomically. Compaction is rare, so it borrows the SDK's implementation rather than a fourth copy of the
        SQL; it locks the same session row this class's writes lock, so the two serialise.
        """
        if self._sdk_twin is None:
            self._sdk_twin = SQLAlchemySession(
                self.session_id, engine=self._engine, ensure_ascii=self._ensure_ascii,
                sessions_table=self._sessions_table, messages_table=self._messages_table,
            )
        return await self._sdk_twin._get_compaction_snapshot(limit, **options)
