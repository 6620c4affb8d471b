"""The SDK's session tables, exactly as SQLAlchemySession expects them, correct on MySQL.

A migration is a frozen snapshot: it spells out its tables instead of importing the application's current
definitions, which will change. The test suite checks this revision against the installed SDK's own table
definition, so an SDK upgrade that changes its schema is caught.

On a database where the tables already exist (``create_tables=True``, the course's helper), the revision
*adopts* them: it changes what differs from its own definition (the SDK's unbounded ids on PostgreSQL; a
case-insensitive collation or a 64 KB ``TEXT`` on MySQL) and keeps every row.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError
from sqlalchemy.dialects import mysql

from session_management.common.schema import refuse_dropping_rows

TABLES = ["agent_sessions", "agent_messages"]
ID_LENGTH = 255

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _collation() -> str | None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return None
    # Binary and NO PAD: "Alice", "alice" and "alice " must be three sessions (see common/schema.py).
    if getattr(bind.dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    if (bind.dialect.server_version_info or ()) >= (8, 0, 17):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"


def _session_id() -> sa.types.TypeEngine:
    return sa.String(ID_LENGTH, collation=_collation())


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    found = [table for table in TABLES if inspector.has_table(table)]
    if found == TABLES:
        _adopt(inspector)
        return
    if found:
        raise CommandError(f"{found[0]} exists without {sorted(set(TABLES) - set(found))[0]}: not a database this "
                           "revision can adopt. Restore the missing table, or move the existing one aside.")
    mysql_options: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}
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


def _adopt(inspector: sa.Inspector) -> None:
    """Bring tables made without migrations to this revision's definition, keeping their rows."""
    bind = op.get_bind()
    columns = {table: {column["name"]: column for column in inspector.get_columns(table)} for table in TABLES}
    for table, names in (("agent_sessions", {"session_id", "created_at", "updated_at"}),
                         ("agent_messages", {"id", "session_id", "message_data", "created_at"})):
        if not names <= set(columns[table]):
            raise CommandError(f"{table} lacks {', '.join(sorted(names - set(columns[table])))}: not the SDK's "
                               "table, so this revision will not adopt it.")
    if bind.dialect.name == "postgresql":
        too_long = bind.scalar(sa.text(f"SELECT count(*) FROM agent_sessions WHERE length(session_id) > {ID_LENGTH}"))
        if too_long:
            raise CommandError(f"{too_long} session ids are longer than {ID_LENGTH} characters, which this schema "
                               "refuses; shorten or export and delete them, then upgrade again.")
        for table in TABLES:
            if getattr(columns[table]["session_id"]["type"], "length", None) != ID_LENGTH:
                op.alter_column(table, "session_id", type_=sa.String(ID_LENGTH), existing_nullable=False)
    elif bind.dialect.name in ("mysql", "mariadb"):
        _adopt_on_mysql(inspector)


def _adopt_on_mysql(inspector: sa.Inspector) -> None:
    bind = op.get_bind()
    actual = {(table, column): (collation, kind) for table, column, collation, kind in bind.execute(sa.text(
        "SELECT table_name, column_name, collation_name, data_type FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name IN ('agent_sessions', 'agent_messages')"))}
    exact = [table for table in TABLES if actual[(table, "session_id")][0] != _collation()]
    if exact:
        # MySQL refuses to change a column a foreign key uses: take the key off, change both ends, put it back.
        keys = [key for key in inspector.get_foreign_keys("agent_messages") if key["referred_table"] == TABLES[0]]
        for key in keys:
            assert key["name"], "MySQL names every foreign key"
            op.drop_constraint(key["name"], "agent_messages", type_="foreignkey")
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} MODIFY session_id VARCHAR({ID_LENGTH}) CHARACTER SET utf8mb4 "
                       f"COLLATE {_collation()} NOT NULL")
        for key in keys:
            op.create_foreign_key(key["name"], "agent_messages", TABLES[0], ["session_id"], ["session_id"],
                                  ondelete="CASCADE")
    if actual[("agent_messages", "message_data")][1] != "longtext":
        op.execute("ALTER TABLE agent_messages MODIFY message_data LONGTEXT CHARACTER SET utf8mb4 NOT NULL")


def downgrade() -> None:
    refuse_dropping_rows(op.get_bind(), ["agent_sessions", "agent_messages"], revision)  # unless -x drop_data=yes
    # Dropping the table drops its index; MySQL refuses to drop that index alone (the foreign key needs it).
    op.drop_table("agent_messages")
    op.drop_table("agent_sessions")
