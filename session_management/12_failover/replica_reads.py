"""Reading a session's history from a PostgreSQL replica (lesson 12, step 8): the stale read right after a
turn, and the ways out.

A replica applies (*replays*) the primary's WAL a moment after the primary acknowledged the commit: under
asynchronous replication, PostgreSQL's default, nothing waits for it. A turn written through the primary and the
session read at once from a replica can miss that turn: a **stale read**. The ways out:

* read your own session from the **primary** (replicas serve the reads that may be a moment old);
* remember the primary's WAL position after the turn's commit and **wait** on the replica until it has replayed
  that far (:func:`wait_for_lsn`), then read. PostgreSQL 15 has no built-in wait (``WAIT FOR LSN`` is newer): the
  function polls ``pg_last_wal_replay_lsn()``.

:func:`replica_reads` writes turns with the SDK's ``SQLAlchemySession`` and counts, for each way, the reads that
missed the turn just written, and what a read costs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from session_management.common.schema import create_session_tables
from session_management.servers.patroni import PatroniCluster, PatroniNode

WAYS = ("replica", "primary", "replica, wait for the LSN")


# -- what a reader pastes: SQLAlchemy and asyncpg only --------------------------------------------------------------
async def lsn_after_commit(primary: AsyncEngine) -> str:
    """The primary's WAL position, asked AFTER the turn's commit returned: at or past the end of its COMMIT record.

    Asked inside the turn's transaction, the position would be before the COMMIT record, and a replica that
    replayed that far may not have applied the commit yet.
    """
    async with primary.connect() as connection:
        return str((await connection.execute(text("SELECT pg_current_wal_insert_lsn()::text"))).scalar_one())


async def wait_for_lsn(replica: AsyncEngine, lsn: str, within: float = 1.0, poll: float = 0.001) -> bool:
    """Wait until *replica* has replayed the WAL up to *lsn*; False if it has not *within* that many seconds (read
    from the primary then). *replica* must be one server (its own URL), the one the read goes to next."""
    deadline = time.monotonic() + within
    async with replica.connect() as connection:
        while True:
            replayed = (await connection.execute(text(
                "SELECT pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS text) AS pg_lsn)"), {"lsn": lsn})).scalar_one()
            if replayed:  # NULL (not a replica any more) counts as not yet: the caller reads from the primary
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)


# -- the measurement --------------------------------------------------------------------------------------------------
def engine_for(url: str, synchronous_commit: str | None = None) -> AsyncEngine:
    """As the drills' engines (postgres_drills.engine_for): a dead server is an error within seconds."""
    settings = {"synchronous_commit": synchronous_commit} if synchronous_commit else {}
    return create_async_engine(url, connect_args={"timeout": 3, "command_timeout": 10, "server_settings": settings})


def turn(session_id: str, number: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{session_id} turn {number}"},
            {"role": "assistant", "content": f"noted turn {number}"}]


@dataclass
class WayResult:
    stale: int = 0  # reads whose history missed the turn written just before
    # each read, from the commit's return to the history in hand (the wait's LSN query and wait included)
    took_ms: list[float] = field(default_factory=list, repr=False)
    timed_out: int = 0  # waits that gave up (the read then went to the primary)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.took_ms)

    def __str__(self) -> str:
        return (f"{self.stale} stale of {len(self.took_ms)}, {self.median_ms:.1f} ms per read, "
                f"{self.timed_out} timed out")


@dataclass
class ReplicaReads:
    rounds: int
    replica: str  # the replica read from (its node name)
    synchronous_commit: str  # the writes' level: "on" (asynchronous replication's default), "remote_apply" ...
    ways: dict[str, WayResult]


def synchronous_standby(cluster: PatroniCluster) -> PatroniNode:
    """The replica Patroni named synchronous standby (``synchronous_mode`` on)."""
    names = {member["name"] for member in cluster.members() if member.get("role") == "sync_standby"}
    return next(node for node in cluster.replicas() if node.name in names)


async def replica_reads(cluster: PatroniCluster, rounds: int = 100, *, ways: tuple[str, ...] = WAYS,
                        replica: PatroniNode | None = None, synchronous_commit: str = "on",
                        paused_replay: float = 0.0, wait_within: float = 1.0) -> ReplicaReads:
    """*rounds* times, for each way in turn: a turn written through the primary with ``SQLAlchemySession``, then
    the session's history read at once that way. Each way has its own session; stale: the turn is not in it.

    *ways*: of :data:`WAYS`, and "other replica" (another replica than *replica*, default: the first one; left
    out when the cluster has no other, as after the lesson's step 6, which leaves a node down).
    The ways take turns, so a busy moment of a shared machine does not favour one. With *paused_replay* > 0 the
    replica's replay is paused (``pg_wal_replay_pause()``) before each write and resumed that many seconds later:
    a replica behind by that long, for the tests (the lesson measures replication as it is).
    """
    replica = replica or cluster.replicas()[0]
    other = next((node for node in cluster.replicas() if node is not replica), replica)
    if other is replica:
        ways = tuple(way for way in ways if way != "other replica")
    primary = engine_for(cluster.url(), synchronous_commit)
    reader, other_reader = engine_for(cluster.node_url(replica)), engine_for(cluster.node_url(other))
    results = {way: WayResult() for way in ways}
    try:
        await create_session_tables(primary)
        for engine in (reader, other_reader):
            if not await wait_for_lsn(engine, await lsn_after_commit(primary), within=30):
                raise TimeoutError("a replica did not replay the session tables' creation within 30 s")
        tag = f"replica-read-{time.monotonic_ns() % 10**9}"
        sessions = {way: SQLAlchemySession(f"{tag}-{number}", engine=primary) for number, way in enumerate(ways)}
        for number in range(1, rounds + 1):
            for way, result in results.items():
                session = sessions[way]
                resumed = await pause_replay(reader, paused_replay) if paused_replay else None
                await session.add_items(turn(session.session_id, number))  # type: ignore[arg-type]
                started = time.perf_counter()
                engine = {"primary": primary, "other replica": other_reader}.get(way, reader)
                if way == "replica, wait for the LSN":
                    if not await wait_for_lsn(reader, await lsn_after_commit(primary), within=wait_within):
                        result.timed_out += 1
                        engine = primary
                items = await SQLAlchemySession(session.session_id, engine=engine).get_items()
                result.took_ms.append((time.perf_counter() - started) * 1000)
                result.stale += len(items) < 2 * number
                if resumed is not None:
                    await resumed
    finally:
        if paused_replay:  # never leave the replica paused
            async with reader.connect() as connection:
                await connection.execute(text("SELECT pg_wal_replay_resume()"))
        for engine in (primary, reader, other_reader):
            await engine.dispose()
    return ReplicaReads(rounds, replica.name, synchronous_commit, results)


async def as_replicated(cluster: PatroniCluster, rounds: int = 100) -> ReplicaReads:
    """The three ways under asynchronous replication, PostgreSQL's default (Patroni's synchronous mode off)."""
    await asyncio.to_thread(cluster.set_synchronous, False)
    return await replica_reads(cluster, rounds)


async def under_remote_apply(cluster: PatroniCluster, rounds: int = 100) -> ReplicaReads:
    """Writes with ``synchronous_commit=remote_apply`` (Patroni's synchronous mode on), read at once from the
    synchronous standby ("replica") and from the other replica, which no commit waits for."""
    await asyncio.to_thread(cluster.set_synchronous, True)
    return await replica_reads(cluster, rounds, ways=("replica", "other replica"),
                               replica=synchronous_standby(cluster), synchronous_commit="remote_apply")


async def pause_replay(replica: AsyncEngine, seconds: float) -> asyncio.Task[None]:
    """Pause *replica*'s replay now (it keeps receiving WAL); returns the task that resumes it *seconds* later."""
    async with replica.connect() as connection:
        await connection.execute(text("SELECT pg_wal_replay_pause()"))

    async def resume() -> None:
        await asyncio.sleep(seconds)
        async with replica.connect() as connection:
            await connection.execute(text("SELECT pg_wal_replay_resume()"))

    return asyncio.create_task(resume())
