"""Lesson 12, steps 10-13: the Galera part of the lesson, as it prints (the drills are in galera_drills.py)."""

from __future__ import annotations

from session_management.common import note, step
from session_management.servers.galera import GaleraCluster

from .galera_drills import lose_quorum, read_elsewhere, two_writers


def galera_cluster(cluster: GaleraCluster) -> None:
    step("10. MariaDB Galera: three nodes, each takes writes")
    for node in cluster.nodes:
        state = cluster.state(node)
        note(f"{node.name}: MariaDB on 127.0.0.1:{node.port}, cluster size {state['wsrep_cluster_size']}, "
             f"{state['wsrep_cluster_status']}")
    note("No primary to fail over from: the application may write through any node (one engine per node).")


async def galera_reads(cluster: GaleraCluster) -> None:
    step("11. A turn written through node 1, read at once through node 2")
    reads = await read_elsewhere(cluster)
    note(f"{reads.rounds} rounds: {reads.stale_plain} stale reads as is, {reads.stale_causal} with "
         "wsrep_sync_wait=1")
    note("Other nodes apply a commit just after it is acknowledged: a read there can miss it (here, on loopback,")
    note("rarely). wsrep_sync_wait=1 makes a read wait until its node has applied everything before it.")


async def galera_shared_session(cluster: GaleraCluster) -> None:
    step("12. Two writers on one session, at once: through one node, then through two")
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
    step("13. kill -9 of one node, then of a second: the quorum")
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
