"""The session stores the behaviour suite (tests/test_session_behaviour.py) holds to one standard.

Each entry makes a store for ``session_id`` on an engine whose database has the SDK's tables (created with the
course's schema helper). A later lesson's store joins every behaviour test by adding one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.extensions.memory import SQLAlchemySession
from agents.memory import Session
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common.fast_session import CourseSession

StoreFactory = Callable[[AsyncEngine, str], Session]


def sdk_sqlalchemy(engine: AsyncEngine, session_id: str) -> Session:
    return SQLAlchemySession(session_id, engine=engine, create_tables=False)


def course_session(engine: AsyncEngine, session_id: str) -> Session:
    return CourseSession(session_id, engine=engine)


STORES: dict[str, StoreFactory] = {
    "sdk_sqlalchemy": sdk_sqlalchemy,
    "course_session": course_session,
}
