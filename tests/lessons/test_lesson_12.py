"""Lesson 12: the PostgreSQL failover drills on a real throwaway Patroni cluster (etcd + three nodes).

One cluster for the module, in this process (about 80-120 s):

0. the primary frozen (SIGSTOP) past Patroni's ttl, then woken, its writers' statements still waiting on it:
   under synchronous replication no acknowledged turn may be lost (with Patroni's synchronous mode off the
   test failed, 10 of 54 SDK turns lost; it can only fail so in a run where Patroni demotes the woken primary,
   and Debian 12's Patroni often takes the leader key back instead); under asynchronous replication, the
   control, the same check must find the turns the woken primary acknowledged before Patroni demoted it (up to
   3 runs for one where it did). About 40-110 s;
1. synchronous replication, the primary's WAL senders stopped for a second before the crash: no acknowledged
   turn may be lost, on the SDK's store or on the keyed one (with Patroni's synchronous mode off, this drill
   loses turns: the test fails);
2. then the same fault under asynchronous replication: the same history check must find the acknowledged
   turns the failover threw away (the check can see a loss: the control).

Then the Galera drills that count (about 25 s). The whole lesson (about 5 minutes) is not run here; its
one-line message without the packages is.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
from collections.abc import Iterator

import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.servers.galera import GaleraCluster
from session_management.servers.patroni import PatroniCluster
from tests.support import lessons
from tests.support.backends import server_url
from tests.support.clusters import require_cluster, throwaway_dirs
from tests.support.lessons import RunHere

LESSON = "session_management.12_failover.main"
postgres_drills = importlib.import_module("session_management.12_failover.postgres_drills")
galera_drills = importlib.import_module("session_management.12_failover.galera_drills")
patroni_drill, prepare = postgres_drills.patroni_drill, postgres_drills.prepare
store_turn_once, freeze_drill = postgres_drills.store_turn_once, postgres_drills.freeze_drill
engine_for, error_name = postgres_drills.engine_for, postgres_drills.error_name
QuorumReport, SharedSession = galera_drills.QuorumReport, galera_drills.SharedSession
lose_quorum, two_writers = galera_drills.lose_quorum, galera_drills.two_writers


@pytest.fixture(scope="module")
def patroni() -> Iterator[PatroniCluster]:
    """One cluster for the module's drills; the freeze drills first (the cluster heals after them), then the
    kill -9 drills (two nodes gone)."""
    require_cluster("patroni")
    before = throwaway_dirs()
    with PatroniCluster() as cluster:
        yield cluster
    assert throwaway_dirs() == before  # the cluster and its directory are gone


def test_a_frozen_primary_that_wakes_loses_nothing_under_synchronous_replication(patroni: PatroniCluster) -> None:
    """Frozen 15 s (past the ttl), then woken; the writers' command timeout (30 s) outlasts the freeze, so what
    they sent to the frozen primary runs when it wakes.

    Synchronous: nothing acknowledged may be lost, whatever Patroni does on waking (demote the old primary, or,
    Patroni 3.0.2's bug, take the leader key back: freeze_drill's docstring). The asynchronous control: the woken
    primary acknowledges what waited on it, either way; when Patroni then demotes it (about a third of the runs
    here), those turns are lost and the check must see it. (A skip while waiting for a demotion skipped this
    test in a CI run: the key was taken back three times in a row.)"""
    async def sync_then_async() -> tuple[object, object]:
        synchronous = await freeze_drill(patroni, "synchronous", conversations=2, turns_after=2)
        return synchronous, await freeze_drill(patroni, "asynchronous", conversations=2, turns_after=2)

    synchronous, asynchronous = asyncio.run(sync_then_async())
    for store, check in synchronous.checks.items():  # type: ignore[attr-defined]
        assert check.acknowledged > 2 * 2, store  # each conversation wrote before and after the freeze
        assert (check.lost, check.out_of_order) == (0, 0), f"{store}: {check}"
    assert synchronous.checks["keyed"].duplicated == 0  # type: ignore[attr-defined]
    if not synchronous.leader_taken_back:  # type: ignore[attr-defined]  # else it is the primary again
        assert synchronous.old_primary_turns == 0, synchronous  # type: ignore[attr-defined]

    control = asynchronous
    assert control.old_primary_turns > 0, control  # type: ignore[attr-defined]  # woken, it took writes
    if not control.leader_taken_back:  # type: ignore[attr-defined]  # demoted: what it acknowledged is gone
        lost = sum(check.lost for check in control.checks.values())  # type: ignore[attr-defined]
        assert lost > 0, control  # the check sees the turns the woken primary acknowledged, then lost


def test_one_host_at_a_time_gets_past_a_host_that_never_answers() -> None:
    """asyncpg's multi-host connect spends its one timeout on a host that accepts TCP and never answers (a
    frozen server), and never tries the next host; one_host_at_a_time gives each host its own timeout."""
    server = make_url(server_url("postgres"))
    with socket.socket() as silent:  # listens, never accepts: the kernel completes the handshake, nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        hosts = (f"127.0.0.1:{silent.getsockname()[1]}", f"{server.host}:{server.port or 5432}")
        url = server.set(drivername="postgresql+asyncpg", host=None, port=None,
                         query={"host": hosts, "target_session_attrs": "read-write"})
        rendered = url.render_as_string(hide_password=False)

        async def connect(per_host: bool) -> int:
            engine = engine_for(rendered, per_host=per_host)
            try:
                async with engine.connect() as connection:
                    return int((await connection.execute(text("SELECT inet_server_port()"))).scalar_one())
            finally:
                await engine.dispose()

        with pytest.raises(Exception) as failed:
            asyncio.run(connect(per_host=False))
        assert error_name(failed.value) == "TimeoutError", failed.value  # the second host was never tried
        assert asyncio.run(connect(per_host=True)) == (server.port or 5432)


def test_synchronous_replication_loses_no_acknowledged_turn(patroni: PatroniCluster) -> None:
    async def drills() -> tuple[object, object]:
        cluster = patroni
        synchronous = await patroni_drill(cluster, "synchronous", stall="walsender", conversations=2,
                                          turns_after=2, rejoin=False)
        await asyncio.to_thread(cluster.wait_replicas, 1)  # the last replica follows the new primary
        asynchronous = await patroni_drill(cluster, "asynchronous", stall="walsender", conversations=2,
                                           turns_after=2, rejoin=False)
        return synchronous, asynchronous

    synchronous, asynchronous = asyncio.run(drills())
    for store, check in synchronous.checks.items():  # type: ignore[attr-defined]
        assert check.acknowledged > 2 * 2, store  # each conversation wrote before and after the crash
        assert check.lost == 0, f"{store}: {check}"
        assert check.out_of_order == 0, f"{store}: {check}"
    assert synchronous.checks["keyed"].duplicated == 0  # type: ignore[attr-defined]
    assert synchronous.errors  # type: ignore[attr-defined]  # the writers did see the crash
    assert 0 < synchronous.first_turn_seconds < 60  # type: ignore[attr-defined]

    lost = sum(check.lost for check in asynchronous.checks.values())  # type: ignore[attr-defined]
    assert lost > 0, asynchronous  # the control: the same check sees what asynchronous replication loses


async def test_a_retried_turn_is_stored_once(engine: AsyncEngine) -> None:
    """store_turn_once on every backend: the same key again stores nothing; another key stores the next turn."""
    await prepare(engine)
    first = [{"role": "user", "content": "s turn 1"}, {"role": "assistant", "content": "noted turn 1"}]
    assert await store_turn_once(engine, "keyed", "turn-1", first) is True
    assert await store_turn_once(engine, "keyed", "turn-1", first) is False  # the retry of a stored turn
    second = [{"role": "user", "content": "s turn 2"}, {"role": "assistant", "content": "noted turn 2"}]
    assert await store_turn_once(engine, "keyed", "turn-2", second) is True
    assert await SQLAlchemySession("keyed", engine=engine).get_items() == first + second
    assert await store_turn_once(engine, "other", "turn-1", first) is True  # keys are per conversation


async def test_a_first_turn_that_loses_a_race_is_never_reported_stored(engine: AsyncEngine) -> None:
    """Two first turns race to create one new session, with different keys: each is stored (True) or raises (the
    caller retries it); False ("stored by an earlier attempt") would drop a turn nobody stored."""
    await prepare(engine)
    for attempt in range(5):
        session_id = f"race-{attempt}"
        results = await asyncio.gather(*(store_turn_once(engine, session_id, f"turn-{n}",
                                                         [{"role": "user", "content": f"turn {n}"}])
                                         for n in range(2)), return_exceptions=True)
        assert False not in results, results
        stored = await SQLAlchemySession(session_id, engine=engine).get_items()
        assert len(stored) == results.count(True), (results, stored)


def test_galera_two_writers_on_two_nodes_and_a_lost_quorum_lose_nothing() -> None:
    """About 25 s: three nodes; two writers on one session through two nodes; two nodes killed, one after the
    other, and the last one bootstrapped by hand. Every acknowledged turn must be there, once, in order."""
    require_cluster("galera")
    before = throwaway_dirs("galera")

    async def drills() -> tuple[SharedSession, QuorumReport]:
        with GaleraCluster() as cluster:
            return await two_writers(cluster, same_node=False, seconds=1.5), await lose_quorum(cluster, 1)

    shared, quorum = asyncio.run(drills())
    for store, check in shared.checks.items():
        assert check.acknowledged > 10, store  # both writers got through
        assert (check.lost, check.duplicated, check.out_of_order) == (0, 0, 0), f"{store}: {check}"
    assert quorum.size_after_one == "2"  # two of three: still the primary component
    assert quorum.status_after_two == "non-Primary"  # one of three: no majority, no writes
    assert any(name.endswith(" 1047") for name in quorum.refused), quorum.refused  # "not prepared" refusals
    assert quorum.check.acknowledged > 0
    assert (quorum.check.lost, quorum.check.duplicated, quorum.check.out_of_order) == (0, 0, 0), quorum.check
    assert throwaway_dirs("galera") == before


def test_without_patroni_one_line_and_exit_2(lesson_env: dict[str, str], run_here: RunHere) -> None:
    lesson_env["PATH"] = os.path.dirname(lessons.PYTHON)  # the venv's python: no patroni, no etcd
    lesson_env["FAILOVER_POSTGRES_URL"] = ""
    done = run_here(LESSON, env=lesson_env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: patroni and etcd not installed"), done.stderr
    assert "apt-get install patroni etcd-server" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
