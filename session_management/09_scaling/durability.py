"""What a database server promises about a commit, read from the server itself before the benchmark measures it.

A server that acknowledges a commit before it reaches the disk (PostgreSQL with `fsync` or `synchronous_commit`
off, InnoDB flushing its log once a second) is several times faster at small writes and can lose them in a crash.
Numbers measured on such a server say nothing about a production one, so the benchmark refuses it by default.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError, create_engine, redact

QUERIES = {
    "postgresql": {
        "fsync": "SHOW fsync",
        "synchronous_commit": "SHOW synchronous_commit",
        "full_page_writes": "SHOW full_page_writes",
    },
    "mysql": {
        "innodb_flush_log_at_trx_commit": "SELECT @@innodb_flush_log_at_trx_commit",
        "innodb_doublewrite": "SELECT @@innodb_doublewrite",
        "version": "SELECT VERSION()",
    },
    "sqlite": {
        "journal_mode": "PRAGMA journal_mode",
        "synchronous": "PRAGMA synchronous",
    },
}
QUERIES["mariadb"] = QUERIES["mysql"]  # a mariadb+aiomysql:// URL


async def server_settings(engine: AsyncEngine) -> dict[str, str]:
    """The durability settings of the server behind *engine*, as the server reports them."""
    settings: dict[str, str] = {}
    async with engine.connect() as connection:
        for name, query in QUERIES.get(engine.dialect.name, {}).items():
            settings[name] = str((await connection.execute(text(query))).scalar())
    return settings


def durability_problems(dialect: str, settings: dict[str, str]) -> list[str]:
    """What makes a commit on this server less than durable (empty: a commit is on disk when acknowledged)."""
    problems = []
    if dialect == "postgresql":
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            if settings.get(name) == "off":
                problems.append(f"{name}=off")
    elif dialect in ("mysql", "mariadb"):
        if settings.get("innodb_flush_log_at_trx_commit") != "1":
            problems.append(f"innodb_flush_log_at_trx_commit={settings.get('innodb_flush_log_at_trx_commit')}")
        if settings.get("innodb_doublewrite") in ("0", "OFF", "DETECT_ONLY"):
            problems.append("innodb_doublewrite=0")
    return problems


async def check_servers(urls: list[str], allow_non_durable: bool) -> dict[str, dict[str, Any]]:
    """Read each server's durability settings; refuse a server that acknowledges commits before they are on disk."""
    servers: dict[str, dict[str, Any]] = {}
    for url in urls:
        engine = create_engine(url)
        try:
            settings = await server_settings(engine)
            problems = durability_problems(engine.dialect.name, settings)
            servers[engine.dialect.name] = {"url": redact(url), "settings": settings, "durable": not problems}
        finally:
            await engine.dispose()
        shown = ", ".join(f"{key}={value}" for key, value in settings.items())
        print(f"{engine.dialect.name} server settings: {shown}")
        if problems and not allow_non_durable:
            raise CourseError(f"{redact(url)} does not make commits durable ({', '.join(problems)}): its numbers "
                              "would flatter every store and say nothing about production",
                              "measure on a durable server (scripts/db-servers.sh starts them so unless "
                              "DB_SERVERS_FAST=1), or pass --allow-non-durable to measure anyway")
        if problems:
            print(f"WARNING: {engine.dialect.name} is NOT durable ({', '.join(problems)}): "
                  "these numbers are not production numbers (--allow-non-durable)")
    return servers
