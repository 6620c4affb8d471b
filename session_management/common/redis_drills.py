"""Fault drills on a throwaway Redis Cluster (:class:`LocalCluster`): a failover and a resharding under load.

Lesson 09 narrates them; the tests assert their exact counts. Both work on conversations stored with
:class:`RedisClusterSession`, one "turn" being a user message and an answer appended together.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from .redis_cluster_session import NotReplicatedError, RedisClusterSession
from .redis_servers import LocalCluster, RedisServer


def turn(session_id: str, number: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{session_id} turn {number}"},
            {"role": "assistant", "content": f"noted turn {number}"}]


async def sessions_on(client: RedisCluster, primary: RedisServer, cluster: LocalCluster, count: int,
                      prefix: str) -> list[str]:
    """*count* session ids whose slot the given primary serves."""
    ranges = [(first, last) for first, last, node in cluster.slot_owners() if node is primary]
    found: list[str] = []
    number = 0
    while len(found) < count:
        session_id = f"{prefix}-{number}"
        slot = await client.cluster_keyslot(RedisClusterSession(session_id, redis_client=client).messages_key)
        if any(first <= slot <= last for first, last in ranges):
            found.append(session_id)
        number += 1
    return found


@dataclass
class FailoverReport:
    sessions_per_primary: int
    append_ms_async: float  # median latency of one add_items, healthy cluster
    append_ms_wait: float  # the same followed by WAIT 1 replica
    async_acknowledged: int  # items acknowledged to the client while the replication link was cut
    async_lost: int  # ... of which missing after the replica took over
    wait_refused: int  # writes that WAIT reported as not replicated (the caller was told)
    wait_lost_acknowledged: int  # acknowledged-and-confirmed items missing after the failover
    wait_retried_present: int  # refused items present after the caller re-sent them to the new primary
    failover_seconds: list[float]
    continued: int  # sessions that took another turn after the failovers


async def median_append_ms(session: RedisClusterSession, rounds: int) -> float:
    latencies = []
    for number in range(rounds):
        started = time.perf_counter()
        await session.add_items(turn(session.session_id, number))
        latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies)


async def failover_drill(cluster: LocalCluster, client: RedisCluster, sessions: int = 5,
                         rounds: int = 200) -> FailoverReport:
    """Cut a primary's replication link, write, crash the primary, let its replica take over: what is lost?

    Done twice: once with Redis's default asynchronous replication (acknowledged writes are lost), once with
    ``WAIT`` (the same writes are reported as not replicated, so the caller re-sends them after the failover).
    """
    primary_a, primary_b = cluster.primaries_now()[:2]
    ids_a = await sessions_on(client, primary_a, cluster, sessions, "failover-async")
    ids_b = await sessions_on(client, primary_b, cluster, sessions, "failover-wait")
    plain = {sid: RedisClusterSession(sid, redis_client=client) for sid in ids_a + ids_b}
    safe = {sid: RedisClusterSession(sid, redis_client=client, min_replicas=1, replica_timeout_ms=100)
            for sid in ids_a + ids_b}
    for sid in ids_a + ids_b:
        await plain[sid].clear_session()
        await safe[sid].add_items(turn(sid, 1))  # turn 1 is on both copies

    # What WAIT costs on a healthy cluster: the same appends with and without it.
    cost_session = "failover-cost"
    async_ms = await median_append_ms(RedisClusterSession(cost_session, redis_client=client), rounds)
    wait_ms = await median_append_ms(RedisClusterSession(cost_session, redis_client=client, min_replicas=1), rounds)
    await RedisClusterSession(cost_session, redis_client=client).clear_session()

    seconds = []
    # 1. Default asynchronous replication: the primary acknowledges, the replica never sees it.
    replica_a = cluster.cut_replication(primary_a)
    for sid in ids_a:
        await plain[sid].add_items(turn(sid, 2))
    acknowledged = 2 * len(ids_a)
    cluster.crash(primary_a)
    seconds.append(await asyncio.to_thread(cluster.wait_promoted, replica_a))
    present = sum([len(await plain[sid].get_items()) for sid in ids_a])
    lost = 2 * len(ids_a) + acknowledged - present  # turn 1 (replicated) + turn 2 (acknowledged) - what is left

    # 2. WAIT: the same fault, but each write asks for one replica's confirmation.
    replica_b = cluster.cut_replication(primary_b)
    refused: list[str] = []
    for sid in ids_b:
        try:
            await safe[sid].add_items(turn(sid, 2))
        except NotReplicatedError:
            refused.append(sid)
    cluster.crash(primary_b)
    seconds.append(await asyncio.to_thread(cluster.wait_promoted, replica_b))
    have = {sid: await plain[sid].get_items() for sid in ids_b}
    lost_confirmed = sum(1 for sid in ids_b if sid not in refused and len(have[sid]) < 4) * 2
    for sid in refused:  # the caller knows these are not safe: it re-sends them to the new primary
        if len(have[sid]) == 2:
            await plain[sid].add_items(turn(sid, 2))
    retried = sum([len(await plain[sid].get_items()) - 2 for sid in refused])

    # 3. Conversations continue on the promoted replicas.
    continued = 0
    for sid in ids_a + ids_b:
        await plain[sid].add_items(turn(sid, 3))
        continued += (await plain[sid].get_items(limit=1))[0]["content"] == "noted turn 3"
    return FailoverReport(len(ids_a), async_ms, wait_ms, acknowledged, lost, len(refused), lost_confirmed,
                          retried, seconds, continued)


@dataclass
class ReshardReport:
    sessions: int
    slots_moved: int
    keys_moved: int
    turns_acknowledged: int
    turns_present: int
    sessions_in_order: int
    sessions_on_new_primary: int
    seconds: float


async def move_slot(source: Redis, target: Redis, source_id: str, target_id: str, target_port: int,
                    slot: int, others: list[Redis]) -> int:
    """Move one slot the way `redis-cli --cluster reshard` does; returns the keys moved."""
    await target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    await source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    moved = 0
    while keys := await source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        await source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
    for node in (target, source, *others):
        await node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


async def resharding_drill(cluster: LocalCluster, client: RedisCluster, sessions: int = 20,
                           extra_slots: int = 50) -> ReshardReport:
    """Add a primary and move slots to it while conversations keep writing; then count every turn."""
    source = cluster.primaries_now()[0]
    ids = await sessions_on(client, source, cluster, sessions, "reshard")
    stores = {sid: RedisClusterSession(sid, redis_client=client) for sid in ids}
    for store in stores.values():
        await store.clear_session()
    acknowledged = dict.fromkeys(ids, 0)
    stop = asyncio.Event()

    async def converse(sid: str) -> None:
        while not stop.is_set():
            await stores[sid].add_items(turn(sid, acknowledged[sid] + 1))
            acknowledged[sid] += 1
            await asyncio.sleep(0.005)

    writers = [asyncio.create_task(converse(sid)) for sid in ids]
    started = time.monotonic()
    try:
        new_node = await asyncio.to_thread(cluster.new_node)
        await asyncio.to_thread(cluster.meet, [new_node])
        await asyncio.to_thread(cluster.wait_healthy)  # the new node has heard who serves every slot
        session_slots = {await client.cluster_keyslot(stores[sid].messages_key) for sid in ids}
        own_first = min(first for first, _, node in cluster.slot_owners() if node is source)
        slots = sorted(session_slots | set(range(own_first + 1, own_first + extra_slots)))
        nodes = {n.port: Redis(port=n.port, decode_responses=True)
                 for n in cluster.live_nodes() if cluster.role(n) == "master"}  # SETSLOT is for primaries
        try:
            src, dst = nodes[source.port], nodes[new_node.port]
            src_id = await src.execute_command("CLUSTER", "MYID")
            dst_id = await dst.execute_command("CLUSTER", "MYID")
            others = [c for port, c in nodes.items() if port not in (source.port, new_node.port)]
            # redis-py 8.1 cannot follow an ASK redirect to a node it does not know yet (AttributeError on
            # 'NoneType'): so the new primary first gets one empty slot, and the client re-reads the slot map.
            opening = own_first + extra_slots
            while opening in session_slots or await src.execute_command("CLUSTER", "COUNTKEYSINSLOT", opening):
                opening += 1
            keys = await move_slot(src, dst, src_id, dst_id, new_node.port, opening, others)
            await client.nodes_manager.initialize()  # re-read the slot map (no-op: client.initialize())
            for slot in slots:
                keys += await move_slot(src, dst, src_id, dst_id, new_node.port, slot, others)
                await asyncio.sleep(0)  # let the conversations run between slots
        finally:
            for node_client in nodes.values():
                await node_client.aclose()
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    elapsed = time.monotonic() - started
    present, in_order, on_new = 0, 0, 0
    for sid in ids:
        items = await stores[sid].get_items()
        present += len(items) // 2
        expected = [part for number in range(1, acknowledged[sid] + 1) for part in turn(sid, number)]
        in_order += items == expected
        slot = await client.cluster_keyslot(stores[sid].messages_key)
        on_new += cluster.owner_of_slot(slot) is new_node
    return ReshardReport(len(ids), len(slots) + 1, keys, sum(acknowledged.values()), present, in_order, on_new, elapsed)
