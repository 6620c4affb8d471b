"""Lesson 12, steps 3-9: the PostgreSQL drills as the lesson prints them (the drills are in postgres_drills.py,
the replica reads in replica_reads.py)."""

from __future__ import annotations

import asyncio
import logging

from session_management.common import note, step
from session_management.servers.patroni import PatroniCluster

from .postgres_drills import DrillReport, commit_costs, freeze_drill, patroni_drill
from .replica_reads import as_replicated, under_remote_apply

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
    note(f"{'drill':<22}{'turn (ms)':>10}{'lost':>6}  {'stored twice by a blind retry (SDK + course)':<46}"
         f"{'down (s)':>10}")
    for number, report in enumerate(reports, start=3):
        lost = sum(check.lost for check in report.checks.values())
        name = f"{number}. {report.name.removeprefix('postgres-')}"
        twice = f"{report.checks['sdk'].duplicated} + {report.checks['course'].duplicated}"
        note(f"{name:<22}{per_turn[levels[report.name]]:>10.1f}{lost:>6}  {twice:<46}"
             f"{report.first_turn_seconds:>10.1f}")
    note("turn: median of 100 turns per setting, the settings taking turns; down: the crash -> the first turn.")


async def replica_reads(cluster: PatroniCluster) -> None:
    step("8. Reading a session from a replica: the stale read right after a turn, and the ways out")
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


FREEZES = (("asynchronous", False, 30), ("synchronous", False, 30), ("synchronous", False, 5),
           ("synchronous", True, 5))  # replication, one_host_at_a_time, command timeout (s)


async def frozen_primary(cluster: PatroniCluster, conversations: int) -> None:
    step("9. The primary frozen 15 s (SIGSTOP, past the ttl), then woken (SIGCONT): it must not take writes")
    # A connection to the frozen server times out when the pool closes it, and SQLAlchemy logs each with a
    # traceback; the drill counts the errors that matter (as in the Galera quorum drill): silence the pool.
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
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
