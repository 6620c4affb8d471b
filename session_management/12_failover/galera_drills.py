"""Lesson 12's drills on MariaDB Galera (:class:`GaleraCluster`): reads through another node, two writers on
one session through two nodes, and nodes killed until the cluster loses its quorum.

They reuse the PostgreSQL drills' writers and history check (:mod:`failover_drills`): every acknowledged turn
is recorded, every conversation read back, and lost / duplicated / out-of-order turns counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from session_management.servers.galera import GaleraCluster, GaleraNode
from session_management.servers.local import wait_until

from .postgres_drills import STORES, HistoryCheck, Writer, check_histories, prepare, store_turn_once, turn


def engine_on(node: GaleraNode, *, causal: bool = False) -> AsyncEngine:
    """An engine on one node; *causal*: every read first waits until this node has applied all the cluster's
    commits so far (``wsrep_sync_wait=1``), so it sees the writes other nodes acknowledged."""
    connect_args: dict[str, object] = {"connect_timeout": 3}
    if causal:
        connect_args["init_command"] = "SET SESSION wsrep_sync_wait=1"
    return create_async_engine(node.url, connect_args=connect_args)


@dataclass
class StaleReads:
    rounds: int
    stale_plain: int  # reads on node 2, right after node 1 acknowledged a turn, that missed it
    stale_causal: int  # the same with wsrep_sync_wait=1


async def read_elsewhere(cluster: GaleraCluster, rounds: int = 100) -> StaleReads:
    """Write a turn through node 1, read the session at once through node 2: is the turn there?"""
    first, second = cluster.nodes[0], cluster.nodes[1]
    writer, plain, causal = engine_on(first), engine_on(second), engine_on(second, causal=True)
    try:
        await prepare(writer)
        session_id = f"galera-read-{time.monotonic_ns() % 10**9}"
        stale = {"plain": 0, "causal": 0}
        for number in range(1, rounds + 1):
            await store_turn_once(writer, session_id, f"turn-{number}", turn(session_id, number))
            for name, engine in (("plain", plain), ("causal", causal)):
                items = await SQLAlchemySession(session_id, engine=engine).get_items()
                stale[name] += len(items) < 2 * number
        return StaleReads(rounds, stale["plain"], stale["causal"])
    finally:
        for engine in (writer, plain, causal):
            await engine.dispose()


@dataclass
class SharedSession:
    same_node: bool
    checks: dict[str, HistoryCheck]
    errors: dict[str, Counter[str]]


async def run_for(writers: list[Writer], seconds: float) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.run(stop, pause=0)) for writer in writers]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)


async def two_writers(cluster: GaleraCluster, *, same_node: bool, seconds: float = 2.0) -> SharedSession:
    """Writers A and B append to ONE session at once, through node 1 and node 2 (or both through node 1)."""
    engine_a = engine_on(cluster.nodes[0])
    engine_b = engine_a if same_node else engine_on(cluster.nodes[1])
    checks, errors = {}, {}
    try:
        await prepare(engine_a)
        for store in STORES:
            session_id = f"galera-shared-{store}-{time.monotonic_ns() % 10**9}"
            writers = [Writer(session_id, store, engine_a, label=f"{session_id}-A"),
                       Writer(session_id, store, engine_b, label=f"{session_id}-B")]
            await run_for(writers, seconds)
            checks[store] = await check_histories(engine_a, writers)
            errors[store] = writers[0].errors + writers[1].errors
    finally:
        await engine_a.dispose()
        if engine_b is not engine_a:
            await engine_b.dispose()
    return SharedSession(same_node, checks, errors)


@dataclass
class QuorumReport:
    pause_after_one_seconds: float  # node 3 killed: the longest time without an acknowledged turn
    size_after_one: str
    status_after_two: str  # node 2 killed too: what node 1 says of itself
    refused: Counter[str]  # what writers were told while node 1 was alone
    resumed_after_bootstrap_seconds: float
    check: HistoryCheck


async def lose_quorum(cluster: GaleraCluster, conversations: int = 2) -> QuorumReport:
    """kill -9 node 3 (2 of 3 left: still a quorum), then node 2 (1 of 3: none); then bootstrap node 1 by hand."""
    first, second, third = cluster.nodes
    # A connection to a dead or non-Primary node fails its rollback when it goes back to the pool; SQLAlchemy
    # logs each such failure with a traceback. The writers count the errors that matter: silence the pool.
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    engines = [engine_on(first), engine_on(second)]
    await prepare(engines[0])
    tag = f"galera-quorum-{time.monotonic_ns() % 10**9}"
    writers = [Writer(f"{tag}-{number}", "keyed", engines[number % 2], fallbacks=[engines[(number + 1) % 2]])
               for number in range(2 * conversations)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.run(stop)) for writer in writers]
    try:
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        third.crash()
        await asyncio.to_thread(cluster.wait_size, 2)
        await asyncio.sleep(1)
        acks = sorted(t for w in writers for _, _, t in w.acknowledged if t > killed_at - 0.5)
        pause = max((b - a for a, b in zip(acks, acks[1:], strict=False)), default=0.0)
        size = first.status("wsrep_cluster_size")
        second.crash()
        await asyncio.to_thread(wait_until, lambda: first.status("wsrep_cluster_status") != "Primary", 30,
                                "node 1 noticing it is alone")
        status = first.status("wsrep_cluster_status")
        for writer in writers:
            writer.errors.clear()
        await asyncio.sleep(2)
        refused: Counter[str] = Counter()
        for writer in writers:
            refused.update(writer.errors)
        with first.admin() as connection, connection.cursor() as cursor:  # the operator's decision
            cursor.execute("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
        bootstrapped_at = time.monotonic()
        await asyncio.to_thread(wait_until, lambda: all(
            any(began > bootstrapped_at for _, began, _ in w.acknowledged) for w in writers), 30,
            "writes resuming on node 1")
        resumed = min(t for w in writers for _, began, t in w.acknowledged if began > bootstrapped_at)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    check = await check_histories(engines[0], writers)
    for engine in engines:
        await engine.dispose()
    return QuorumReport(pause, size, status, refused, resumed - bootstrapped_at, check)
