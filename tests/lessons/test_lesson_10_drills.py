"""Lesson 10's fault drills on throwaway clusters (3 primaries + 3 replicas), with exact counts."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator

import pytest

from session_management.servers.redis import LocalCluster
from session_management.servers.redis_connect import cluster_client
from session_management.stores.redis_cluster_session import NotReplicatedError, RedisClusterSession
from tests.support.redis_stores import require_redis_server

drills = importlib.import_module("session_management.10_redis_session.drills")
failover_drill, resharding_drill, stalled_primary_drill = (
    drills.failover_drill, drills.resharding_drill, drills.stalled_primary_drill)


@pytest.fixture
async def lab() -> AsyncIterator[LocalCluster]:
    require_redis_server()
    with LocalCluster(primaries=3, replicas_per_primary=1) as cluster:
        yield cluster


async def test_failover_loses_exactly_the_unreplicated_writes_and_wait_reports_them(lab: LocalCluster) -> None:
    client = cluster_client(lab.url)
    try:
        report = await failover_drill(lab, client, sessions=3, rounds=20)
    finally:
        await client.aclose()
    assert report.async_acknowledged == 6  # 3 conversations x (question + answer), primary only
    assert report.async_lost == 6  # all of them: the promoted replica never received them
    assert report.wait_refused == 3  # WAIT told the caller, write by write
    assert report.wait_lost_acknowledged == 0
    assert report.wait_retried_present == 6  # re-sent after the failover: nothing lost
    # a frozen (lagging, still connected) replica: every write refused, none confirmed and then lost
    assert (report.lagging_writes, report.lagging_refused, report.lagging_lost_confirmed) == (3, 3, 0)
    assert report.continued == 9  # every conversation took another turn on the new primaries
    assert [lab.role(node) for node in lab.nodes[3:]] == ["master"] * 3  # the replicas took over

    # The same cluster, now 3 primaries without replicas: one stalls longer than the client's socket timeout.
    stall = await stalled_primary_drill(lab, sessions=3)
    assert stall.scripts_run > stall.turns_acknowledged + stall.turns_failed  # the client re-sent appends
    assert stall.turns_acknowledged > 0 and stall.turns_lost == 0
    assert stall.items_duplicated == 0


async def test_wait_confirms_nothing_while_the_only_replica_lags() -> None:
    """WAIT counts the writes of its own connection. A frozen replica (SIGSTOP: connected, silent) has none of
    the writes made meanwhile, so with min_replicas=1 each must raise NotReplicatedError, even when the client
    holds several connections to the primary (a WAIT sent on another one would answer at once)."""
    require_redis_server()
    with LocalCluster(primaries=1, replicas_per_primary=1) as lab:
        client = cluster_client(lab.url)
        try:
            sessions = [RedisClusterSession(f"lag-{n}", redis_client=client, min_replicas=1, replica_timeout_ms=50)
                        for n in range(4)]
            await asyncio.gather(*(s.add_items([{"role": "user", "content": "before"}]) for s in sessions))
            replica = lab.replica_of(lab.primaries_now()[0])
            replica.freeze()
            try:
                outcomes = []
                for session in sessions:
                    try:
                        await session.add_items([{"role": "user", "content": "while the replica is frozen"}])
                        outcomes.append("confirmed")
                    except NotReplicatedError:
                        outcomes.append("not replicated")
            finally:
                replica.thaw()
        finally:
            await client.aclose()
    assert outcomes == ["not replicated"] * 4


async def test_resharding_under_load_loses_nothing(lab: LocalCluster) -> None:
    client = cluster_client(lab.url)
    try:
        report = await resharding_drill(lab, client, sessions=8, extra_slots=10)
    finally:
        await client.aclose()
    assert report.turns_acknowledged > report.sessions  # the conversations really wrote during the move
    assert report.turns_present == report.turns_acknowledged
    assert report.sessions_in_order == report.sessions == 8
    assert report.sessions_on_new_primary == 8
    assert report.keys_moved >= 16  # both keys of every session (hash + list) moved
    assert len(lab.primaries_now()) == 4
