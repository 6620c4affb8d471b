"""Lesson 09's fault drills on throwaway clusters (3 primaries + 3 replicas), with exact counts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from session_management.common.redis_connect import cluster_client
from session_management.common.redis_drills import failover_drill, resharding_drill
from session_management.common.redis_servers import LocalCluster
from tests.redis_stores import require_redis_server


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
    assert report.continued == 6  # every conversation took another turn on the new primaries
    assert lab.role(lab.nodes[3]) == lab.role(lab.nodes[4]) == "master"  # the replicas took over


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
