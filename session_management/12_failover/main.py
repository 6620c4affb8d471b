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
import asyncio
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

from .galera_drills import lose_quorum, read_elsewhere, two_writers
from .postgres_drills import (
    DrillReport,
    commit_costs,
    engine_for,
    freeze_drill,
    patroni_drill,
    prepare,
    store_turn_once,
)
from .replica_reads import as_replicated, under_remote_apply


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


STORE_LABELS = {"sdk": "SDK's add_items, retried", "course": "CourseSession, retried",
                "keyed": "store_turn_once, retried"}


def show(report: DrillReport) -> None:
    note(f"the kill -9 -> a new primary {report.failover_seconds:.1f} s -> the first acknowledged turn "
         f"{report.first_turn_seconds:.1f} s after the crash")
    for store, label in STORE_LABELS.items():
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


async def replica_reads(cluster: PatroniCluster) -> None:
    step("7b. Reading a session from a replica: the stale read right after a turn, and the ways out")
    applied = await under_remote_apply(cluster)  # first: step 7 left Patroni's synchronous mode on
    plain = await as_replicated(cluster)  # then asynchronous replication, PostgreSQL's default
    note(f"{plain.rounds} times per way: a turn written through the primary (SQLAlchemySession), then the session "
         f"read at once; replica: {plain.replica}")
    for way, result in plain.ways.items():
        note(f"  {way:<26}: {result.stale:>3} stale reads of {plain.rounds}, {result.median_ms:.1f} ms per read")
    note("A replica replays a commit a moment after the primary acknowledged it: a read there can miss the turn.")
    note("The wait asks the primary its WAL position after the commit, then polls the replica until it replayed it.")
    note("synchronous_commit=remote_apply: a commit returns once the synchronous standby applied it (cost: step 7).")
    other = applied.ways.get("other replica")  # none while step 6's old primary is down
    standby = applied.ways["replica"]
    note(f"  read at once from that standby ({applied.replica}): {standby.stale} stale of {applied.rounds}, "
         f"{standby.median_ms:.1f} ms per read"
         + (f"; from the other replica, which no commit waits for: {other.stale}" if other else ""))


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


FREEZES = (("asynchronous", False, 30), ("synchronous", False, 30), ("synchronous", False, 5),
           ("synchronous", True, 5))  # replication, one_host_at_a_time, command timeout (s)


async def frozen_primary(cluster: PatroniCluster, conversations: int) -> None:
    step("7c. The primary frozen 15 s (SIGSTOP, past the ttl), then woken (SIGCONT): it must not take writes")
    for node in (node for node in cluster.nodes if node.process is None):  # step 6's: three nodes again
        await asyncio.to_thread(cluster.rejoin, node)
    note("The URL lists the frozen primary first. Writers whose command timeout (30 s) outlasts the freeze wait")
    note("on it, and what they sent runs when it wakes; with 5 s they give up and reconnect.")
    note(f"{'replication, connect, timeout':<30}{'acked':>6}{'lost (sdk/course/keyed)':>24}{'new primary':>12}"
         f"{'1st turn there':>15}{'woken took':>11}{'TimeoutError':>13}{'key back':>9}")
    for mode, per_host, command_timeout in FREEZES:
        report = await freeze_drill(cluster, mode, command_timeout=command_timeout, per_host=per_host,
                                    conversations=conversations)
        checks, first = report.checks, report.first_elsewhere_seconds
        lost = "/".join(str(checks[store].lost) for store in STORE_LABELS)
        run = f"{mode.removesuffix('hronous')}, {'one_host_at_a_time' if per_host else 'asyncpg'}, {command_timeout} s"
        note(f"{run:<30}"
             f"{sum(c.acknowledged for c in checks.values()):>6}{lost:>24}{report.failover_seconds:>10.1f} s"
             f"{'-' if first is None else f'{first:.1f} s':>15}{report.old_primary_turns:>11}"
             f"{report.errors['TimeoutError']:>13}{'yes' if report.leader_taken_back else 'no':>9}")
    note("Times from the freeze; SIGCONT at 15 s. woken took: turns the old primary acknowledged after SIGCONT.")
    note("key back no: Patroni demoted the woken primary; asynchronous, what it acknowledged first is lost;")
    note("synchronous, its commits waited for a standby that follows the new primary, and failed. key back yes:")
    note("it took the leader key back (Patroni 3.0.2's bug): what the NEW primary acknowledged is lost, sync or not.")
    note("TimeoutError: asyncpg's connect timeout covers all the hosts, and the frozen one used it up;")
    note("one_host_at_a_time gives each host its own 2 s, and reaches the new primary before SIGCONT.")


def galera_cluster(cluster: GaleraCluster) -> None:
    step("8. MariaDB Galera: three nodes, each takes writes")
    for node in cluster.nodes:
        state = cluster.state(node)
        note(f"{node.name}: MariaDB on 127.0.0.1:{node.port}, cluster size {state['wsrep_cluster_size']}, "
             f"{state['wsrep_cluster_status']}")
    note("No primary to fail over from: the application may write through any node (one engine per node).")


async def galera_reads(cluster: GaleraCluster) -> None:
    step("9. A turn written through node 1, read at once through node 2")
    reads = await read_elsewhere(cluster)
    note(f"{reads.rounds} rounds: {reads.stale_plain} stale reads as is, {reads.stale_causal} with "
         "wsrep_sync_wait=1")
    note("Other nodes apply a commit just after it is acknowledged: a read there can miss it (here, on loopback,")
    note("rarely). wsrep_sync_wait=1 makes a read wait until its node has applied everything before it.")


async def galera_shared_session(cluster: GaleraCluster) -> None:
    step("10. Two writers on one session, at once: through one node, then through two")
    for same_node in (True, False):
        shared = await two_writers(cluster, same_node=same_node)
        note(f"{'both through node 1' if same_node else 'A through node 1, B through node 2'}:")
        for store, label in (("sdk", "SDK's add_items"), ("keyed", "store_turn_once")):
            check, errors = shared.checks[store], shared.errors[store]
            seen = ", ".join(f"{name} x{count}" for name, count in errors.most_common()) or "no errors"
            note(f"  {label:<16}: {check.acknowledged:>4} acknowledged, {check.lost} lost, {check.duplicated} "
                 f"duplicated, {check.out_of_order} out of order; {seen}")
    note("Through one node, InnoDB's row locks make one writer wait (now and then a deadlock). Through two, both")
    note("change the session's row at once; Galera certifies each commit on every node and fails the later one")
    note("with 1213 (deadlock) at COMMIT. Nothing of it was stored: the writer retries the whole turn.")


async def galera_quorum(cluster: GaleraCluster) -> None:
    step("11. kill -9 of one node, then of a second: the quorum")
    report = await lose_quorum(cluster)
    note(f"node 3 killed: writes paused {report.pause_after_one_seconds:.1f} s (until the others dropped it), "
         f"then went on; cluster size {report.size_after_one}")
    note(f"node 2 killed too: node 1 says {report.status_after_two} (1 of 3 is no majority) and refuses:")
    note("  " + ", ".join(f"{name} x{count}" for name, count in report.refused.most_common()))
    note(f"an operator bootstraps node 1 (pc.bootstrap=YES): writes resume "
         f"{report.resumed_after_bootstrap_seconds:.2f} s later")
    check = report.check
    note(f"history check: {check.acknowledged} acknowledged, {check.lost} lost, {check.duplicated} duplicated, "
         f"{check.out_of_order} out of order")


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description="Lesson 12: sessions on a PostgreSQL cluster with failover")
    result.add_argument("--conversations", type=int, default=4, choices=range(1, 65), metavar="N",
                        help="writers per store in each PostgreSQL drill (1-64, default 4)")
    result.add_argument("--only", choices=("postgres", "galera"), default=None,
                        help="run only the PostgreSQL part (steps 1-7) or only the Galera part (8-11)")
    return result


if __name__ == "__main__":
    run_lesson(main, parser().parse_args())
