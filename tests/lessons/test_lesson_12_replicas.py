"""Lesson 12, step 8: a session's history read from a PostgreSQL replica right after a turn (issue 26).

One throwaway Patroni cluster for the module (about 30 s in all):

1. as replication is (asynchronous, on loopback): reads from the primary, and reads from the replica after
   waiting for the write's LSN, are never stale;
2. the replica's replay paused for 0.2 s after each write (a replica behind): the same holds, and the immediate
   replica read, checked the same way, is stale (the control: the check can see a stale read; with the wait
   replaced by no wait, this test fails);
3. ``synchronous_commit=remote_apply``: a read from the synchronous standby is never stale, even with its replay
   paused (the commit waits for it); with ``synchronous_commit=on`` the same read is stale (the control).

No assertion on times: counts only.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator

import pytest

from session_management.servers.patroni import PatroniCluster
from tests.support.clusters import require_cluster, throwaway_dirs

replica_reads_module = importlib.import_module("session_management.12_failover.replica_reads")
replica_reads, synchronous_standby = replica_reads_module.replica_reads, replica_reads_module.synchronous_standby
WAYS = replica_reads_module.WAYS
WAIT = "replica, wait for the LSN"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    require_cluster("patroni")
    before = throwaway_dirs()
    with PatroniCluster() as started:
        yield started
    assert not throwaway_dirs() - before, "the cluster's directory is left behind"


def test_the_primary_and_the_wait_for_the_lsn_are_never_stale(cluster: PatroniCluster) -> None:
    cluster.set_synchronous(False)  # PostgreSQL's default: nothing waits for a replica
    reads = asyncio.run(replica_reads(cluster, 40))
    assert set(reads.ways) == set(WAYS)
    for way in ("primary", WAIT):
        assert reads.ways[way].stale == 0, (way, reads)
        assert len(reads.ways[way].took_ms) == 40


def test_a_replica_behind_is_stale_at_once_and_fresh_after_the_wait(cluster: PatroniCluster) -> None:
    cluster.set_synchronous(False)
    reads = asyncio.run(replica_reads(cluster, 6, paused_replay=0.2, wait_within=30))
    assert reads.ways["primary"].stale == 0, reads
    assert reads.ways[WAIT].stale == 0, reads
    assert reads.ways[WAIT].timed_out == 0, reads  # it waited for the replica, not fell back to the primary
    assert reads.ways["replica"].stale > 0, reads  # the control: the same check sees a stale read


def test_remote_apply_makes_the_synchronous_standby_fresh(cluster: PatroniCluster) -> None:
    cluster.set_synchronous(True)
    standby = synchronous_standby(cluster)
    applied, flushed = (asyncio.run(replica_reads(cluster, 4, ways=("replica",), replica=standby,
                                                  synchronous_commit=level, paused_replay=0.2))
                        for level in ("remote_apply", "on"))
    assert applied.replica == standby.name
    assert applied.ways["replica"].stale == 0, applied  # the commit returned once the standby had applied it
    assert flushed.ways["replica"].stale > 0, flushed  # the control: "on" waits for its disk, not for replay
