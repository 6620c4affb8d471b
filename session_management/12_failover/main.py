"""Lesson 12: when the database server dies: sessions on PostgreSQL with automatic failover, and on Galera.

    uv run python -m session_management.12_failover.main                    # throwaway Patroni and Galera
    uv run python -m session_management.12_failover.main --only galera      # or --only postgres
    uv run python -m session_management.12_failover.main --conversations 8  # more writers per drill
    FAILOVER_POSTGRES_URL='postgresql+asyncpg://u:p@/db?host=a:5432&host=b:5432&target_session_attrs=read-write' \
        uv run python -m session_management.12_failover.main                # your cluster: steps 1-2 only

With no FAILOVER_POSTGRES_URL, the lesson starts etcd and three Patroni nodes (a primary, two replicas) on free
loopback ports and removes them at the end; that needs Debian's `patroni` and `etcd-server` packages. The Galera
part starts three MariaDB nodes the same way (`galera-4`, `rsync`).
"""

from __future__ import annotations

import argparse
import os
import uuid
from contextlib import nullcontext
from typing import cast

from agents import Agent, Runner
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    agent_says,
    choose_model,
    heading,
    load_env,
    note,
    redact,
    run_lesson,
    step,
    user_says,
)
from session_management.servers.galera import GaleraCluster
from session_management.servers.galera import binaries as galera_binaries
from session_management.servers.patroni import PatroniCluster
from session_management.servers.patroni import binaries as patroni_binaries

from .galera_steps import galera_cluster, galera_quorum, galera_reads, galera_shared_session
from .postgres_drills import engine_for, prepare, store_turn_once
from .postgres_steps import asynchronous, costs, frozen_primary, lost_answers, remote_apply, replica_reads, synchronous


def the_cluster(cluster: PatroniCluster | None, url: str) -> None:
    step("1. A primary, two replicas, and Patroni deciding which is which")
    if cluster is None:
        note(f"your cluster: {redact(url)}")
        return
    for member in cluster.members():
        note(f"{member['name']}: {member['role']:<12} PostgreSQL on 127.0.0.1:{member['port']}")
    note("Patroni on each node holds or watches a leader key in etcd; it expires 10 s after its holder dies.")
    note(f"the application's URL names every node: {redact(url).replace('%3A', ':')}")


async def one_turn(agent: Agent, engine: AsyncEngine) -> None:
    step("2. One engine for the whole cluster, and a turn stored whole")
    async with engine.connect() as connection:
        port = (await connection.execute(text("SELECT inet_server_port()"))).scalar_one()
        read_only = (await connection.execute(text("SHOW transaction_read_only"))).scalar_one()
    note(f"target_session_attrs=read-write: asyncpg tried the hosts in order and kept port {port} "
         f"(transaction_read_only={read_only}), the primary.")
    await prepare(engine)
    session_id = f"lesson12-{uuid.uuid4().hex[:8]}"
    session = SQLAlchemySession(session_id, engine=engine)
    question = "My name is Ada. Remember it."
    user_says(question)
    history = await session.get_items()
    # No session= here: Runner.run would store the question and the reply in two transactions, and a failover
    # between them leaves half a turn that a retry of the whole run stores again.
    result = await Runner.run(agent, [*history, {"role": "user", "content": question}])
    agent_says(result.final_output)
    new_items = result.to_input_list()[len(history):]
    for attempt in (1, 2):  # the second attempt stands for a retry after an error: it must store nothing
        stored = await store_turn_once(engine, session_id, "turn-1", new_items)  # type: ignore[arg-type]
        note(f"attempt {attempt}: {'stored' if stored else 'already stored, nothing written'}")
    note(f"the SDK's session reads {len(await session.get_items())} items: the question and the reply, once.")


async def main(args: argparse.Namespace) -> None:
    load_env()
    own_url = os.environ.get("FAILOVER_POSTGRES_URL", "").strip() or None
    postgres, galera = args.only in (None, "postgres"), args.only in (None, "galera")
    if postgres and own_url is None:
        patroni_binaries()  # what is missing is said now, not after the PostgreSQL part
    if galera:
        galera_binaries()
    choice = choose_model()
    heading("Lesson 12: when the database server dies")
    print(f"model   : {choice.description}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)
    if postgres:
        await postgres_part(agent, own_url, args.conversations)
    if galera:
        with GaleraCluster() as cluster:
            galera_cluster(cluster)
            await galera_reads(cluster)
            await galera_shared_session(cluster)
            await galera_quorum(cluster)


async def postgres_part(agent: Agent, own_url: str | None, conversations: int) -> None:
    with nullcontext(None) if own_url else PatroniCluster() as cluster:
        url = own_url or cast(PatroniCluster, cluster).url()  # a throwaway cluster whenever no URL is given
        the_cluster(cluster, url)
        engine = engine_for(url)
        try:
            await one_turn(agent, engine)
        finally:
            await engine.dispose()
        if cluster is None:
            note("the drills kill servers, so they run only on the lesson's own throwaway cluster.")
            return
        reports = [await asynchronous(cluster, conversations),
                   await synchronous(cluster, conversations),
                   await remote_apply(cluster, conversations)]
        reports.append(await lost_answers(cluster, conversations))
        await costs(cluster, reports)
        await replica_reads(cluster)
        await frozen_primary(cluster, conversations)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description="Lesson 12: sessions on a PostgreSQL cluster with failover")
    result.add_argument("--conversations", type=int, default=4, choices=range(1, 65), metavar="N",
                        help="writers per store in each PostgreSQL drill (1-64, default 4)")
    result.add_argument("--only", choices=("postgres", "galera"), default=None,
                        help="run only the PostgreSQL part (steps 1-9) or only the Galera part (10-13)")
    return result


if __name__ == "__main__":
    run_lesson(main, parser().parse_args())
