"""Lesson 10, part 2: sessions on a Redis Cluster, the SDK's store and the course's."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agents import Agent, Runner
from agents.extensions.memory import RedisSession
from redis.asyncio.cluster import RedisCluster

from session_management.common import agent_says, note, show_items, step, user_says
from session_management.servers.redis import LocalCluster
from session_management.servers.redis_connect import RedisTarget
from session_management.stores.redis_cluster_session import RedisClusterSession

from .drills import failover_drill, resharding_drill, stalled_primary_drill

PREFIX = "lesson10"


async def layout(client: RedisCluster) -> None:
    step("1. The cluster: 16384 hash slots shared by the primaries, each primary copied to a replica")
    nodes: dict[str, Any] = await client.cluster_nodes()
    for address, node in sorted(nodes.items(), key=lambda n: n[1]["slots"]):
        if "master" in node["flags"] and node["slots"]:
            replicas = [a.split(":")[1] for a, n in nodes.items() if n["master_id"] == node["node_id"]]
            ranges = " ".join(f"{first}-{last}" for first, last in node["slots"])
            note(f"primary :{address.split(':')[1]}  slots {ranges:<12} replica :{', :'.join(replicas) or 'none'}")


async def sdk_fails(client: RedisCluster) -> None:
    step("2. The SDK's RedisSession on a cluster: reads work, writes are refused")
    session = RedisSession("ada", redis_client=client, key_prefix=PREFIX)
    note(f"get_items() -> {await session.get_items()}")
    try:
        await session.add_items([{"role": "user", "content": "My name is Ada."}])
    except TypeError as error:
        note(f"add_items() -> TypeError: {str(error).split('. ')[0]}.")
    slots = [await client.cluster_keyslot(f"{PREFIX}:ada{suffix}") for suffix in ("", ":messages", ":counter")]
    note(f"Its three keys hash to slots {slots}: different slots, so no MULTI or script may touch them together.")


async def course_store(agent: Agent, client: RedisCluster) -> None:
    step("3. The course's RedisClusterSession: one hash slot per session, atomic Lua appends")
    session = RedisClusterSession("ada", redis_client=client, key_prefix=PREFIX)
    await session.clear_session()
    for text in ("Hi! My name is Ada and I live in London.", "What is my name?"):
        user_says(text)
        agent_says((await Runner.run(agent, text, session=session)).final_output)
    show_items(await session.get_items())
    for key in (session.session_key, session.messages_key):
        note(f"{key:<28} slot {await client.cluster_keyslot(key)}")
    owners: Counter[str] = Counter()
    for number in range(300):
        key = RedisClusterSession(f"user-{number}", redis_client=client, key_prefix=PREFIX).messages_key
        owners[str(client.get_node_from_key(key).port)] += 1  # type: ignore[union-attr]  # None: only for replicas
    note(f"300 sessions spread over the primaries by port: {dict(sorted(owners.items()))}")


async def drills(target: RedisTarget) -> None:
    if not isinstance(target.lab, LocalCluster):
        step("4-6. Failover, stalled-primary and resharding drills")
        note("Skipped: they crash, freeze and add nodes, so they run only on the throwaway cluster the lesson starts.")
        return
    client = target.client
    assert isinstance(client, RedisCluster)
    await failover(target.lab, client)
    await stalled_primary(target.lab)
    await resharding(target.lab, client)


async def failover(lab: LocalCluster, client: RedisCluster) -> None:
    step("4. Failover drill: a primary dies with writes its replica never got; the replica takes over")
    report = await failover_drill(lab, client)
    n = report.sessions_per_primary
    note(f"WAIT's cost on a healthy cluster: append {report.append_ms_async:.2f} ms -> "
         f"{report.append_ms_wait:.2f} ms with WAIT 1 (median, x{report.append_ms_wait / report.append_ms_async:.1f})")
    note(f"Replication link cut, default (asynchronous) replication, {n} conversations: "
         f"{report.async_acknowledged} items acknowledged,")
    note(f"  {report.async_lost} of them lost when the replica took over ({report.failover_seconds[0]:.1f} s).")
    note(f"Replication link cut, WAIT 1 (100 ms timeout): {report.wait_refused} of {n} writes reported NOT "
         f"replicated; the caller")
    note(f"  re-sent them to the new primary ({report.failover_seconds[1]:.1f} s): "
         f"{report.wait_lost_acknowledged} confirmed items lost, {report.wait_retried_present} re-sent items present.")
    note(f"Replica frozen (lagging, still connected), WAIT 1: {report.lagging_refused} of {report.lagging_writes} "
         f"writes reported NOT replicated;")
    note(f"  {report.lagging_lost_confirmed} confirmed items lost when it took over "
         f"({report.failover_seconds[2]:.1f} s).")
    note(f"{report.continued} of {3 * n} conversations took another turn on the promoted replicas.")


async def stalled_primary(lab: LocalCluster) -> None:
    step("5. A stalled primary: frozen longer than the client's socket timeout, while conversations write")
    report = await stalled_primary_drill(lab)
    sent = report.turns_acknowledged + report.turns_failed
    note(f"primary frozen {report.stall_seconds} s, socket timeout {report.socket_timeout} s, "
         f"{report.sessions} conversations: the client re-sent {report.scripts_run - sent} appends")
    note(f"turns acknowledged {report.turns_acknowledged}, lost {report.turns_lost}; "
         f"items stored twice: {report.items_duplicated}")


async def resharding(lab: LocalCluster, client: RedisCluster) -> None:
    step("6. Resharding: add a primary, move slots to it while 20 conversations keep writing")
    reshard = await resharding_drill(lab, client)
    note(f"moved {reshard.slots_moved} slots ({reshard.keys_moved} keys) in {reshard.seconds:.1f} s; "
         f"{reshard.sessions_on_new_primary} of {reshard.sessions} conversations now live on the new primary")
    note(f"turns acknowledged {reshard.turns_acknowledged}, stored {reshard.turns_present}; "
         f"{reshard.sessions_in_order} of {reshard.sessions} conversations complete and in order")
