"""Lesson 06's own tables, beside the SDK's: who owns which conversation, and which turns a client already sent.

Defined once, here, because three lessons need the same definitions: lesson 06's service reads and writes them,
lesson 07's migrations compare the database against them (``alembic check``), and lesson 08 runs next to them.
A conversation's id is also its SDK session id, so one uuid ties these tables to the SDK's.

Owners and idempotency keys are compared **byte for byte** on every backend. SQLite and PostgreSQL do that by
default; MySQL/MariaDB's default collation (``utf8mb4_general_ci``) ignores case and accents and pads with
spaces, so users ``alice``, ``Alice``, ``alicé`` and ``alice `` would own each other's conversations. There the
columns get the binary, no-pad collation the session-id columns have (see :mod:`.schema`).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Text
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.dialects.mysql import LONGTEXT

# Microseconds everywhere (MySQL's DATETIME defaults to whole seconds), so "newest first" is stable.
TIMESTAMP_TYPE = DateTime().with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")
TITLE_LENGTH = 200
OWNER_LENGTH = 255
DEFAULT_TITLE = "New conversation"
KEY_LENGTH = 100  # an Idempotency-Key header: a uuid is 36
TURN_KEYS_TABLE = "conversation_turn_keys"


def byte_exact(length: int, mysql_collation: str | None) -> String:
    """``VARCHAR(length)``, with *mysql_collation* (binary, no pad) on MySQL/MariaDB when given."""
    if mysql_collation is None:
        return String(length)
    return String(length).with_variant(String(length, collation=mysql_collation), "mysql", "mariadb")


def conversations_table(metadata: MetaData, *, mysql_collation: str | None = None) -> Table:
    """The table, on *metadata* (each caller keeps its own MetaData, as with :func:`.schema.session_tables`).

    *mysql_collation*: the server's binary, no-pad collation (:func:`.schema.mysql_session_id_collation`), for
    the owner column; pass it whenever the table is created or compared on MySQL/MariaDB.
    """
    return Table(
        "conversations",
        metadata,
        Column("id", String(36), primary_key=True),  # uuid4: random, so ids reveal nothing and cannot be guessed
        Column("owner", byte_exact(OWNER_LENGTH, mysql_collation), nullable=False),
        Column("title", String(TITLE_LENGTH), nullable=False),
        Column("created_at", TIMESTAMP_TYPE, nullable=False),
        Column("updated_at", TIMESTAMP_TYPE, nullable=False),
        Index("idx_conversations_owner_updated", "owner", "updated_at"),
        mysql_charset="utf8mb4",
    )


def turn_keys_table(metadata: MetaData, *, mysql_collation: str | None = None) -> Table:
    """One row per turn a client sent with an ``Idempotency-Key``: a retry with the same key finds it.

    Written in the same transaction as the turn's items, so "the turn is stored" and "the key is recorded" are
    one fact: a retry either finds both or neither. ``request_sha256`` tells a retry (same message) from a
    reused key (another message, refused); ``reply`` is what the retry gets back.
    """
    return Table(
        TURN_KEYS_TABLE,
        metadata,
        Column("conversation_id", String(36), primary_key=True),
        Column("idempotency_key", byte_exact(KEY_LENGTH, mysql_collation), primary_key=True),
        Column("request_sha256", String(64), nullable=False),
        Column("reply", Text().with_variant(LONGTEXT(), "mysql", "mariadb"), nullable=False),
        Column("created_at", TIMESTAMP_TYPE, nullable=False),
        mysql_charset="utf8mb4",
    )


def course_tables(metadata: MetaData, *, mysql_collation: str | None = None) -> tuple[Table, Table]:
    """Both of lesson 06's tables on *metadata*."""
    return (conversations_table(metadata, mysql_collation=mysql_collation),
            turn_keys_table(metadata, mysql_collation=mysql_collation))
