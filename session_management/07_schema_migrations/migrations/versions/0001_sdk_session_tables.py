"""The SDK's session tables, exactly as SQLAlchemySession expects them, correct on MySQL.

A migration is a frozen snapshot: it spells out its tables instead of importing the application's current
definitions, which will change. The test suite checks this revision against the installed SDK's own table
definition, so an SDK upgrade that changes its schema is caught.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from session_management.common.schema import refuse_unrecorded_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _session_id() -> sa.types.TypeEngine:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return sa.String(255)
    # Binary and NO PAD: "Alice", "alice" and "alice " must be three sessions (see common/schema.py).
    if getattr(bind.dialect, "is_mariadb", False):
        collation = "utf8mb4_nopad_bin"
    elif (bind.dialect.server_version_info or ()) >= (8, 0, 17):
        collation = "utf8mb4_0900_bin"
    else:
        collation = "utf8mb4_bin"
    return sa.String(255, collation=collation)


def upgrade() -> None:
    refuse_unrecorded_tables(op.get_bind(), ["agent_sessions", "agent_messages"], revision)
    mysql_options = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}
    op.create_table(
        "agent_sessions",
        sa.Column("session_id", _session_id(), primary_key=True),
        sa.Column("created_at", sa.TIMESTAMP(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.Column("updated_at", sa.TIMESTAMP(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        **mysql_options,
    )
    op.create_table(
        "agent_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", _session_id(),
                  sa.ForeignKey("agent_sessions.session_id", ondelete="CASCADE"), nullable=False),
        # LONGTEXT on MySQL: TEXT stops at 64 KB and would reject (or truncate) larger items.
        sa.Column("message_data", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
        sa.Column("created_at", sa.TIMESTAMP(), server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sqlite_autoincrement=True,
        **mysql_options,
    )
    op.create_index("idx_agent_messages_session_time", "agent_messages", ["session_id", "created_at"])


def downgrade() -> None:
    # Dropping the table drops its index; MySQL refuses to drop that index alone (the foreign key needs it).
    op.drop_table("agent_messages")
    op.drop_table("agent_sessions")
