"""The `conversations` table: who owns which conversation, which the SDK's tables cannot say.

Defined once, here, because three lessons need the same definition: lesson 05's service reads and writes it,
lesson 06's migrations compare the database against it (``alembic check``), and lesson 07 runs next to it. A
conversation's id is also its SDK session id, so one uuid ties this table to the SDK's.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME

# Microseconds everywhere (MySQL's DATETIME defaults to whole seconds), so "newest first" is stable.
TIMESTAMP_TYPE = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")
TITLE_LENGTH = 200
DEFAULT_TITLE = "New conversation"


def conversations_table(metadata: MetaData) -> Table:
    """The table, on *metadata* (each caller keeps its own MetaData, as with :func:`.schema.session_tables`)."""
    return Table(
        "conversations",
        metadata,
        Column("id", String(36), primary_key=True),  # uuid4: random, so ids reveal nothing and cannot be guessed
        Column("owner", String(255), nullable=False),
        Column("title", String(TITLE_LENGTH), nullable=False),
        Column("created_at", TIMESTAMP_TYPE, nullable=False),
        Column("updated_at", TIMESTAMP_TYPE, nullable=False),
        Index("idx_conversations_owner_updated", "owner", "updated_at"),
        mysql_charset="utf8mb4",
    )
