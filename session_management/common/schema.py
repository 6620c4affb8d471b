"""The SDK's session tables, created correctly on SQLite, PostgreSQL *and* MySQL/MariaDB.

``SQLAlchemySession(create_tables=True)`` builds its tables from ``String`` columns without a length, which
MySQL cannot compile (``VARCHAR requires a length on dialect mysql``; openai-agents-python issue 4740), and
stores each item in a ``TEXT`` column, which on MySQL holds at most 64 KB. :func:`session_tables` describes the
same tables, with the same names, columns and index, so ``SQLAlchemySession(create_tables=False)`` works on
them everywhere. One difference applies on every backend:

* ``VARCHAR(255)`` session ids (the SDK's are unbounded ``VARCHAR`` on PostgreSQL, so there a longer id works on
  the SDK's tables and is refused by these; SQLite ignores lengths). MySQL needs a length to create them at all.

and two are MySQL-specific:

* ``LONGTEXT`` messages, so an item may be as large as the server's ``max_allowed_packet``;
* ``utf8mb4`` with a *binary, no-pad* collation on the session id columns: under MySQL's default
  case-insensitive collation, ``"Alice"`` and ``"alice"`` would be one session (one user reading another's
  history), and under a PAD SPACE collation so would ``"alice"`` and ``"alice "``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.ext.asyncio import AsyncEngine

SESSIONS_TABLE = "agent_sessions"
MESSAGES_TABLE = "agent_messages"
SESSION_ID_LENGTH = 255


def mysql_session_id_collation(connection: Connection) -> str:
    """A binary, NO PAD utf8mb4 collation the connected server has."""
    dialect = connection.dialect
    version = dialect.server_version_info or ()
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"  # MariaDB >= 10.2
    if version >= (8, 0, 17):
        return "utf8mb4_0900_bin"  # MySQL 8's NO PAD binary collation
    return "utf8mb4_bin"  # older MySQL: binary, but trailing spaces compare equal


def session_tables(
    metadata: MetaData,
    *,
    sessions_table: str = SESSIONS_TABLE,
    messages_table: str = MESSAGES_TABLE,
    session_id_collation: str | None = None,
) -> tuple[Table, Table]:
    """Define the SDK's two tables on *metadata* (names, columns and index as ``SQLAlchemySession``'s)."""

    def session_id_type() -> String:
        base = String(SESSION_ID_LENGTH)
        if session_id_collation is None:
            return base
        return base.with_variant(String(SESSION_ID_LENGTH, collation=session_id_collation), "mysql", "mariadb")

    mysql_options: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}
    sessions = Table(
        sessions_table,
        metadata,
        Column("session_id", session_id_type(), primary_key=True),
        Column("created_at", TIMESTAMP(timezone=False), server_default=sql_text("CURRENT_TIMESTAMP"),
               nullable=False),
        Column("updated_at", TIMESTAMP(timezone=False), server_default=sql_text("CURRENT_TIMESTAMP"),
               nullable=False),
        **mysql_options,
    )
    messages = Table(
        messages_table,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("session_id", session_id_type(),
               ForeignKey(f"{sessions_table}.session_id", ondelete="CASCADE"), nullable=False),
        Column("message_data", Text().with_variant(LONGTEXT(), "mysql", "mariadb"), nullable=False),
        Column("created_at", TIMESTAMP(timezone=False), server_default=sql_text("CURRENT_TIMESTAMP"),
               nullable=False),
        Index(f"idx_{messages_table}_session_time", "session_id", "created_at"),
        sqlite_autoincrement=True,
        **mysql_options,
    )
    return sessions, messages


async def create_session_tables(
    engine: AsyncEngine,
    *,
    sessions_table: str = SESSIONS_TABLE,
    messages_table: str = MESSAGES_TABLE,
) -> None:
    """Create the SDK's session tables if they are missing (existing tables are left as they are)."""

    def create(connection: Connection) -> None:
        collation = None
        if connection.dialect.name in ("mysql", "mariadb"):
            collation = mysql_session_id_collation(connection)
        metadata = MetaData()
        session_tables(
            metadata,
            sessions_table=sessions_table,
            messages_table=messages_table,
            session_id_collation=collation,
        )
        metadata.create_all(connection, checkfirst=True)

    async with engine.begin() as connection:
        await connection.run_sync(create)


DROP_DATA_FLAG = "drop_data"


def refuse_dropping_rows(connection: Connection, tables: list[str], revision: str) -> None:
    """In a downgrade, right before *tables* are dropped: stop, naming what would be lost, when they still hold rows;
    else say what is dropped.

    Dropping lesson 06's ``conversations`` deletes every user's list of conversations and their titles; dropping
    the SDK's tables deletes every conversation. A downgrade that does that silently is one typo (``-1`` for
    ``-2``) away from an outage, so it needs the flag: ``-x drop_data=yes`` on the command line, or
    ``config.attributes["drop_data"] = True`` from Python. Empty tables go without asking.
    """
    from alembic import context  # local: only migrations need Alembic
    from alembic.util import CommandError

    inspector = inspect(connection)
    counts = {table: int(connection.scalar(sql_text(f"SELECT COUNT(*) FROM {table}")) or 0)
              for table in tables if inspector.has_table(table)}
    losing = {table: rows for table, rows in counts.items() if rows}
    flag = context.get_x_argument(as_dictionary=True).get(DROP_DATA_FLAG, "")
    allowed = flag.lower() in ("yes", "1", "true") or context.config.attributes.get(DROP_DATA_FLAG) is True
    if not losing or allowed:
        # Said before the DROP runs, on Alembic's log (stderr from the command line), so the operator sees what went.
        dropped = ", ".join(f"{table} ({rows:,} row{'' if rows == 1 else 's'})" if rows else f"{table} (empty)"
                            for table, rows in counts.items())
        if dropped:
            asked = f" (-x {DROP_DATA_FLAG}=yes)" if losing else ""
            logging.getLogger("alembic.runtime.migration").warning(
                "downgrading revision %s drops %s%s", revision, dropped, asked)
        return
    what = ", ".join(f"{table} ({rows:,} row{'' if rows == 1 else 's'})" for table, rows in losing.items())
    raise CommandError(
        f"downgrading revision {revision} would drop {what}; stopped before dropping anything in it. Back the "
        f"rows up first; then, to drop them, run the downgrade again with -x {DROP_DATA_FLAG}=yes "
        f"(from Python: config.attributes[{DROP_DATA_FLAG!r}] = True)."
    )
