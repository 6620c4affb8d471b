"""`CourseSession`: the SDK's `Session` on `SQLAlchemySession`'s own tables, several times faster.

    session = CourseSession("user-123", engine=engine)          # instead of SQLAlchemySession(...)
    session = CourseSession.from_url("user-123", url=url)      # a new engine; dispose of session.engine

It reads and writes exactly the rows `SQLAlchemySession` does (same tables, columns, JSON format, order by
``(created_at, id)``), so either reads what the other wrote, and it keeps the SDK's whole contract (held to it by
``tests/contract/test_session_behaviour.py``, with the SDK's class as the control). One small class per database, each
readable on its own:

* `base.CourseSession`: settings, limits over corrupt rows, pops, cancellation, compaction: what is not SQL;
* `postgres.PostgresCourseSession`: asyncpg, one statement per read and per write;
* `mysql.MySQLCourseSession`: aiomysql, one round trip per read and per write (the COMMIT travels along);
* `sqlite.SQLiteCourseSession`: SQLAlchemy's connection, ``BEGIN IMMEDIATE`` writes;
* `_pool`: borrowing a driver connection from the engine's pool, fairly, and always giving it back.
"""

from .base import CourseSession
from .mysql import MySQLCourseSession
from .postgres import PostgresCourseSession
from .sqlite import SQLiteCourseSession

__all__ = ["CourseSession", "MySQLCourseSession", "PostgresCourseSession", "SQLiteCourseSession"]
