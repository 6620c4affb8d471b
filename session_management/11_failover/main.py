"""Lesson 11: when the database server dies: sessions on a PostgreSQL cluster with automatic failover.

    uv run python -m session_management.11_failover.main                    # a throwaway Patroni cluster
    uv run python -m session_management.11_failover.main --conversations 8  # more writers per drill
    FAILOVER_POSTGRES_URL='postgresql+asyncpg://u:p@/db?host=a:5432&host=b:5432&target_session_attrs=read-write' \
        uv run python -m session_management.11_failover.main                # your cluster: steps 1-2 only

With no FAILOVER_POSTGRES_URL, the lesson starts etcd and three Patroni nodes (a primary, two replicas) on free
loopback ports and removes them at the end; that needs Debian's `patroni` and `etcd-server` packages.
"""

from __future__ import annotations

import argparse
import os
import uuid
from contextlib import nullcontext

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
from session_management.common.failover_drills import (
    DrillReport,
    commit_costs,
    engine_for,
    patroni_drill,
    prepare,
    store_turn_once,
)
from session_management.common.patroni_cluster import PatroniCluster


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
    session_id = f"lesson11-{uuid.uuid4().hex[:8]}"
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


def show(report: DrillReport) -> None:
    note(f"the kill -9 -> a new primary {report.failover_seconds:.1f} s -> the first acknowledged turn "
         f"{report.first_turn_seconds:.1f} s after the crash")
    for store, label in (("sdk", "SDK's add_items, retried"), ("keyed", "store_turn_once, retried")):
        check = report.checks[store]
        note(f"  {label:<26}: {check.acknowledged:>4} acknowledged, {check.lost:>3} lost, "
             f"{check.duplicated} duplicated, {check.out_of_order} out of order")
    seen = ", ".join(f"{name} x{count}" for name, count in report.errors.most_common(3))
    note(f"  the writers saw: {seen}")
    if report.found_stored:
        note(f"  {report.found_stored} keyed retries found their turn already stored: its commit had succeeded")


async def asynchronous(cluster: PatroniCluster, conversations: int) -> DrillReport:
    step("3. kill -9 of the primary, asynchronous replication (PostgreSQL's default)")
    note("the replicas fall 1 s behind (the primary's WAL senders stopped), then the primary dies ...")
    report = await patroni_drill(cluster, "asynchronous", stall="walsender", conversations=conversations)
    show(report)
    note("Every turn the primary acknowledged in that second died with it: acknowledged, then lost.")
    return report


async def synchronous(cluster: PatroniCluster, conversations: int) -> DrillReport:
    step("4. The same crash, synchronous replication (Patroni's synchronous_mode, synchronous_commit=on)")
    note("a commit now returns only once a synchronous standby has it on disk; Patroni promotes only that one.")
    report = await patroni_drill(cluster, "synchronous", stall="walsender", conversations=conversations)
    show(report)
    note("The commits sent in that second waited for the standby and never returned: nothing acknowledged")
    note("is lost; the writers retried those turns on the new primary.")
    return report


async def remote_apply(cluster: PatroniCluster, conversations: int) -> DrillReport:
    step("5. The same crash, synchronous_commit=remote_apply: the standby has also applied (is showing) it")
    report = await patroni_drill(cluster, "remote_apply", stall="walsender", conversations=conversations)
    show(report)
    return report


async def lost_answers(cluster: PatroniCluster, conversations: int) -> DrillReport:
    step("6. Synchronous again, but the standby is slow to confirm: commits whose answer is lost")
    note("the standbys' WAL receivers stop for 1 s: the primary's changes wait in their socket buffers ...")
    report = await patroni_drill(cluster, "synchronous", stall="walreceiver", conversations=conversations,
                                 rejoin=False)
    show(report)
    note("Nothing acknowledged is lost. But turns whose answer never came reached the standby: a blind")
    note("retry stored them twice; the per-turn key stored them once.")
    return report


async def costs(cluster: PatroniCluster, reports: list[DrillReport]) -> None:
    step("7. What each setting costs and buys")
    per_turn = await commit_costs(cluster)
    levels = {"postgres-asynchronous": "local", "postgres-synchronous": "on", "postgres-remote_apply": "remote_apply"}
    note(f"{'drill':<22}{'turn (ms)':>10}{'lost':>6}{'stored twice by a blind retry':>31}{'down (s)':>10}")
    for number, report in enumerate(reports, start=3):
        lost = sum(check.lost for check in report.checks.values())
        name = f"{number}. {report.name.removeprefix('postgres-')}"
        note(f"{name:<22}{per_turn[levels[report.name]]:>10.1f}{lost:>6}"
             f"{report.checks['sdk'].duplicated:>31}{report.first_turn_seconds:>10.1f}")
    note("turn: median of 100 turns per setting, the settings taking turns; down: the crash -> the first turn.")


async def main(args: argparse.Namespace) -> None:
    load_env()
    own_url = os.environ.get("FAILOVER_POSTGRES_URL", "").strip() or None
    choice = choose_model()
    heading("Lesson 11: when the database server dies")
    print(f"model   : {choice.description}")
    agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)
    with nullcontext(None) if own_url else PatroniCluster() as cluster:
        url = own_url or cluster.url()
        the_cluster(cluster, url)
        engine = engine_for(url)
        try:
            await one_turn(agent, engine)
        finally:
            await engine.dispose()
        if cluster is None:
            note("the drills kill servers, so they run only on the lesson's own throwaway cluster.")
            return
        reports = [await asynchronous(cluster, args.conversations),
                   await synchronous(cluster, args.conversations),
                   await remote_apply(cluster, args.conversations)]
        reports.append(await lost_answers(cluster, args.conversations))
        await costs(cluster, reports)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description="Lesson 11: sessions on a PostgreSQL cluster with failover")
    result.add_argument("--conversations", type=int, default=4, choices=range(1, 65), metavar="N",
                        help="writers per store in each drill (1-64, default 4)")
    return result


if __name__ == "__main__":
    run_lesson(main, parser().parse_args())
