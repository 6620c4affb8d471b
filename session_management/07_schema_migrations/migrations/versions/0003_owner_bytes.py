"""Owners compared byte for byte on MySQL/MariaDB, and the table of turns sent with an Idempotency-Key.

Revision 0002 created ``conversations.owner`` in the server's default collation, which on MySQL/MariaDB
ignores case and accents and pads with spaces: users ``alice``, ``Alice``, ``alicé`` and ``alice `` owned each
other's conversations in lesson 05. This revision gives the column the binary, no-pad collation the session-id
columns have (SQLite and PostgreSQL compare bytes already: nothing changes there), and creates lesson 05's
``conversation_turn_keys`` table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from session_management.common.schema import mysql_session_id_collation, refuse_unrecorded_tables

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _on_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    bind = op.get_bind()
    refuse_unrecorded_tables(bind, ["conversation_turn_keys"], revision)
    collation = mysql_session_id_collation(bind) if _on_mysql() else None
    if collation is not None:
        op.alter_column("conversations", "owner", existing_type=sa.String(255), existing_nullable=False,
                        type_=sa.String(255, collation=collation))
    key_type = sa.String(100, collation=collation) if collation else sa.String(100)
    op.create_table(
        "conversation_turn_keys",
        sa.Column("conversation_id", sa.String(36), primary_key=True),
        sa.Column("idempotency_key", key_type, primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("reply", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("conversation_turn_keys")
    if _on_mysql():
        # Back to the server's default collation: owners that differ only by case or accents share again.
        op.alter_column("conversations", "owner", existing_type=sa.String(255), existing_nullable=False,
                        type_=sa.String(255, collation="utf8mb4_general_ci"))
