"""Fault drills on a throwaway Redis Cluster (:class:`LocalCluster`): failovers (a cut replication link, a
lagging replica), a stalled primary, and a resharding under load.

Lesson 10 narrates them (details: its DRILLS.md); the tests assert their exact counts. All work on
conversations stored with :class:`RedisClusterSession`, one "turn" being a user message and an answer appended
together.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from agents import TResponseInputItem
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from session_management.servers.redis import LocalCluster, RedisServer
from session_management.servers.redis_connect import cluster_client
from session_management.stores.redis_cluster_session import NotReplicatedError, RedisClusterSession, hash_tag


def turn(session_id: str, number: int) -> list[TResponseInputItem]:
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
    lagging_writes: int  # writes (one turn each) made while the replica was frozen, all at once
    lagging_refused: int  # ... that WAIT reported as not replicated
    lagging_lost_confirmed: int  # items of confirmed writes missing after the lagging replica took over
    failover_seconds: list[float]
    continued: int  # sessions that took another turn after the failovers


async def median_append_ms(session: RedisClusterSession, rounds: int) -> float:
    latencies = []
    for number in range(rounds):
        started = time.perf_counter()
        await session.add_items(turn(session.session_id, number))
        latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies)


async def fill_replication_link(primary: RedisServer, session_id: str, megabytes: int) -> None:
    """Write *megabytes* of filler to the session's primary, on a connection of its own: more than the sockets to
    a frozen replica can hold (a few MB on loopback), so what is written next waits in the primary's memory,
    not in the replica's socket, and is lost if the primary dies."""
    key = f"drill-filler:{{{hash_tag(session_id)}}}"
    async with Redis(port=primary.port) as direct:
        for _ in range(megabytes):
            await direct.append(key, b"x" * 1_000_000)
        await direct.delete(key)


async def lagging_failover(cluster: LocalCluster, client: RedisCluster, primary: RedisServer,
                           safe: dict[str, RedisClusterSession], filler_mb: int) -> tuple[int, int, float]:
    """Freeze the replica (SIGSTOP: connected, silent), write a turn to every session at once with WAIT, crash
    the primary, thaw the replica so it takes over. Returns (refused writes, confirmed items lost, seconds)."""
    replica = cluster.replica_of(primary)
    ids = list(safe)
    # A busy application's client holds more connections than it has writers at any moment: read every
    # conversation twice at once first, so the client has more connections to the primary than this burst.
    await asyncio.gather(*(RedisClusterSession(sid, redis_client=client).get_items() for sid in ids * 2))
    replica.freeze()
    try:
        await fill_replication_link(primary, ids[0], filler_mb)
        results = await asyncio.gather(*(safe[sid].add_items(turn(sid, 2)) for sid in ids), return_exceptions=True)
        cluster.crash(primary)
    finally:
        replica.thaw()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, NotReplicatedError):
            raise result
    seconds = await asyncio.to_thread(cluster.wait_promoted, replica)
    refused = {sid for sid, result in zip(ids, results, strict=True) if isinstance(result, NotReplicatedError)}
    have = {sid: await safe[sid].get_items() for sid in ids}
    lost_confirmed = sum(2 for sid in ids if sid not in refused and len(have[sid]) < 4)
    for sid in refused:  # not safe, so re-sent where missing, as in the cut-link case; without WAIT: the new
        if len(have[sid]) == 2:  # primary has no replica yet, so every min_replicas=1 write would be refused
            await RedisClusterSession(sid, redis_client=client).add_items(turn(sid, 2))
    return len(refused), lost_confirmed, seconds


async def asynchronous_failover(cluster: LocalCluster, primary: RedisServer, plain: dict[str, RedisClusterSession],
                                ids: list[str]) -> tuple[int, int, float]:
    """1. Default asynchronous replication: the primary acknowledges, the replica never sees it.
    (acknowledged items, lost items, seconds to promote the replica)."""
    replica = cluster.cut_replication(primary)
    for sid in ids:
        await plain[sid].add_items(turn(sid, 2))
    acknowledged = 2 * len(ids)
    cluster.crash(primary)
    seconds = await asyncio.to_thread(cluster.wait_promoted, replica)
    present = sum([len(await plain[sid].get_items()) for sid in ids])
    lost = 2 * len(ids) + acknowledged - present  # turn 1 (replicated) + turn 2 (acknowledged) - what is left
    return acknowledged, lost, seconds


async def wait_failover(cluster: LocalCluster, primary: RedisServer, plain: dict[str, RedisClusterSession],
                        safe: dict[str, RedisClusterSession], ids: list[str]) -> tuple[list[str], int, int, float]:
    """2. WAIT: the same fault, but each write asks for one replica's confirmation.
    (refused sessions, confirmed items lost, items re-sent after the failover, seconds to promote)."""
    replica = cluster.cut_replication(primary)
    refused: list[str] = []
    for sid in ids:
        try:
            await safe[sid].add_items(turn(sid, 2))
        except NotReplicatedError:
            refused.append(sid)
    cluster.crash(primary)
    seconds = await asyncio.to_thread(cluster.wait_promoted, replica)
    have = {sid: await plain[sid].get_items() for sid in ids}
    lost_confirmed = sum(1 for sid in ids if sid not in refused and len(have[sid]) < 4) * 2
    for sid in refused:  # the caller knows these are not safe: it re-sends them to the new primary
        if len(have[sid]) == 2:
            await plain[sid].add_items(turn(sid, 2))
    retried = sum([len(await plain[sid].get_items()) - 2 for sid in refused])
    return refused, lost_confirmed, retried, seconds


async def failover_drill(cluster: LocalCluster, client: RedisCluster, sessions: int = 5,
                         rounds: int = 200, filler_mb: int = 24) -> FailoverReport:
    """Cut a primary's replication link, write, crash the primary, let its replica take over: what is lost?

    Done twice: once with Redis's default asynchronous replication (acknowledged writes are lost), once with
    ``WAIT`` (the same writes are reported as not replicated, so the caller re-sends them after the failover).
    Then a third primary's replica is frozen rather than cut off (it lags, still connected), and conversations
    write at once with ``WAIT``: none may be confirmed, since the replica has none of them.
    """
    primary_a, primary_b, primary_c = cluster.primaries_now()[:3]
    ids_a = await sessions_on(client, primary_a, cluster, sessions, "failover-async")
    ids_b = await sessions_on(client, primary_b, cluster, sessions, "failover-wait")
    ids_c = await sessions_on(client, primary_c, cluster, sessions, "failover-lag")
    plain = {sid: RedisClusterSession(sid, redis_client=client) for sid in ids_a + ids_b + ids_c}
    safe = {sid: RedisClusterSession(sid, redis_client=client, min_replicas=1, replica_timeout_ms=100)
            for sid in ids_a + ids_b + ids_c}
    for sid in ids_a + ids_b + ids_c:
        await plain[sid].clear_session()
        await safe[sid].add_items(turn(sid, 1))  # turn 1 is on both copies

    # What WAIT costs on a healthy cluster: the same appends with and without it.
    cost_session = "failover-cost"
    async_ms = await median_append_ms(RedisClusterSession(cost_session, redis_client=client), rounds)
    wait_ms = await median_append_ms(RedisClusterSession(cost_session, redis_client=client, min_replicas=1), rounds)
    await RedisClusterSession(cost_session, redis_client=client).clear_session()

    seconds = []
    acknowledged, lost, promoted_s = await asynchronous_failover(cluster, primary_a, plain, ids_a)
    seconds.append(promoted_s)
    refused, lost_confirmed, retried, promoted_s = await wait_failover(cluster, primary_b, plain, safe, ids_b)
    seconds.append(promoted_s)

    # 3. A lagging replica: frozen, still connected. WAIT must not confirm what it does not have.
    lag_refused, lag_lost, lag_seconds = await lagging_failover(cluster, client, primary_c,
                                                                {sid: safe[sid] for sid in ids_c}, filler_mb)
    seconds.append(lag_seconds)

    # 4. Conversations continue on the promoted replicas.
    continued = 0
    for sid in ids_a + ids_b + ids_c:
        await plain[sid].add_items(turn(sid, 3))
        continued += (await plain[sid].get_items(limit=1))[0].get("content") == "noted turn 3"
    return FailoverReport(len(ids_a), async_ms, wait_ms, acknowledged, lost, len(refused), lost_confirmed,
                          retried, len(ids_c), lag_refused, lag_lost, seconds, continued)


@dataclass
class StallReport:
    sessions: int
    stall_seconds: float
    socket_timeout: float
    turns_acknowledged: int
    turns_failed: int  # add_items raised (the client gave up): such a turn may or may not be stored
    turns_lost: int  # acknowledged turns missing
    items_duplicated: int  # items stored more than once
    scripts_run: int  # append scripts the primary ran: more than the turns sent means the client re-sent some


def scripts_run(server: RedisServer) -> int:
    """How many EVAL commands the server has run (INFO commandstats)."""
    with server.client() as client:
        return int(client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


async def stalled_primary_drill(cluster: LocalCluster, sessions: int = 5, stall_seconds: float = 0.6,
                                socket_timeout: float = 0.2) -> StallReport:
    """Freeze a primary (SIGSTOP) for longer than the client's socket timeout, shorter than a failover, while
    conversations write. The client times out and re-sends; the frozen server still holds the first sends in
    its socket and runs them all when it resumes. Counts acknowledged turns stored twice (or lost)."""
    client = cluster_client(cluster.url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
    try:
        primary = cluster.primaries_now()[0]
        ids = await sessions_on(client, primary, cluster, sessions, "stall")
        stores = {sid: RedisClusterSession(sid, redis_client=client) for sid in ids}
        for store in stores.values():
            await store.clear_session()
        acknowledged: dict[str, list[int]] = {sid: [] for sid in ids}
        failed = 0
        stop = asyncio.Event()

        async def converse(sid: str) -> None:
            nonlocal failed
            number = 0
            while not stop.is_set():
                number += 1
                try:
                    await stores[sid].add_items(turn(sid, number))
                    acknowledged[sid].append(number)
                except RedisError:
                    failed += 1
                await asyncio.sleep(0.01)

        runs_before = scripts_run(primary)
        writers = [asyncio.create_task(converse(sid)) for sid in ids]
        try:
            await asyncio.sleep(0.1)
            primary.freeze()
            try:
                await asyncio.sleep(stall_seconds)
            finally:
                primary.thaw()
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        lost = duplicated = 0
        for sid in ids:
            contents = [item.get("content") for item in await stores[sid].get_items()]
            duplicated += len(contents) - len(set(contents))
            lost += sum(f"{sid} turn {number}" not in contents for number in acknowledged[sid])
        return StallReport(len(ids), stall_seconds, socket_timeout, sum(map(len, acknowledged.values())), failed,
                           lost, duplicated, scripts_run(primary) - runs_before)
    finally:
        await client.aclose()


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
    present, in_order, on_new = await count_turns(cluster, client, stores, acknowledged, new_node)
    return ReshardReport(len(ids), len(slots) + 1, keys, sum(acknowledged.values()), present, in_order, on_new, elapsed)


async def count_turns(cluster: LocalCluster, client: RedisCluster, stores: dict[str, RedisClusterSession],
                      acknowledged: dict[str, int], new_node: RedisServer) -> tuple[int, int, int]:
    """After the resharding: (turns present, conversations whole and in order, conversations on the new node)."""
    present, in_order, on_new = 0, 0, 0
    for sid, store in stores.items():
        items = await store.get_items()
        present += len(items) // 2
        expected = [part for number in range(1, acknowledged[sid] + 1) for part in turn(sid, number)]
        in_order += items == expected
        slot = await client.cluster_keyslot(store.messages_key)
        on_new += cluster.owner_of_slot(slot) is new_node
    return present, in_order, on_new
