"""Lesson 06's conversations table: who owns which conversation, with a title and times.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError
from sqlalchemy.dialects import mysql

from session_management.common.schema import refuse_dropping_rows

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    columns = {"id", "owner", "title", "created_at", "updated_at"}
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table("conversations"):  # lesson 06 made it at start-up: adopt it as it is
        found = {column["name"] for column in inspector.get_columns("conversations")}
        if not columns <= found:
            raise CommandError(f"conversations lacks {', '.join(sorted(columns - found))}: not lesson 06's table, "
                               "so this revision will not adopt it.")
        return
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        mysql_charset="utf8mb4",
    )
    op.create_index("idx_conversations_owner_updated", "conversations", ["owner", "updated_at"])


def downgrade() -> None:
    refuse_dropping_rows(op.get_bind(), ["conversations"], revision)  # unless -x drop_data=yes
    op.drop_index("idx_conversations_owner_updated", table_name="conversations")
    op.drop_table("conversations")
