"""Failover drills for lesson 12: conversations keep writing turns while the database server under them dies.

Every drill ends the same way: a **history check**. Each writer records the turns the database acknowledged
(the commit returned); afterwards every conversation is read back and compared with that record:

* **lost**: acknowledged, then missing (the failover threw it away);
* **duplicated**: stored more than once (a retry re-sent a turn whose first commit had in fact succeeded);
* **out of order**: the stored turns are not in the order they were acknowledged.

Two ways to write a turn (its user message and its reply, in one transaction) run side by side on one engine:

* ``sdk``: the SDK's ``SQLAlchemySession.add_items``, retried blindly when it fails;
* ``keyed``: :func:`store_turn_once`, which stores a per-turn key in the same transaction, so a retry of a turn
  that was in fact stored finds the key and stores nothing (the Idempotency-Key of lesson 06).
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import Column, MetaData, String, Table, insert, update
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from session_management.common.schema import create_session_tables, session_tables
from session_management.servers.local import signal_all
from session_management.servers.patroni import PatroniCluster

metadata = MetaData()
sdk_sessions, sdk_messages = session_tables(metadata)
turn_keys = Table("failover_turn_keys", metadata,
                  Column("session_id", String(255), primary_key=True),
                  Column("turn_key", String(64), primary_key=True),
                  mysql_charset="utf8mb4", mysql_engine="InnoDB")

STORES = ("sdk", "keyed")


def turn(session_id: str, number: int) -> list[dict[str, str]]:
    """One turn: the user's message and the reply, each naming the turn so the check can count it."""
    return [{"role": "user", "content": f"{session_id} turn {number}"},
            {"role": "assistant", "content": f"noted turn {number}"}]


async def prepare(engine: AsyncEngine) -> None:
    """The SDK's tables (the course's helper: right on MySQL too) and the turn keys beside them."""
    await create_session_tables(engine)
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: turn_keys.create(sync, checkfirst=True))


async def store_turn_once(engine: AsyncEngine, session_id: str, key: str, items: list[dict[str, Any]]) -> bool:
    """Store *items* in the SDK's tables, and *key* with them, in ONE transaction. False: already stored.

    If the commit's answer is lost (the server died after committing, or before: the caller cannot tell),
    the caller sends the same turn with the same key again. Either the first commit survived, and the key's
    primary key refuses the second one (nothing is stored twice), or it did not, and this one stores it.
    """
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(turn_keys).values(session_id=session_id, turn_key=key))
            exists = (await connection.execute(sdk_sessions.select().where(
                sdk_sessions.c.session_id == session_id).with_for_update())).first()
            if exists is None:
                await connection.execute(insert(sdk_sessions).values(session_id=session_id))
            else:
                await connection.execute(update(sdk_sessions).where(sdk_sessions.c.session_id == session_id)
                                         .values(updated_at=sql_text("CURRENT_TIMESTAMP")))
            await connection.execute(insert(sdk_messages), [
                {"session_id": session_id, "message_data": json.dumps(item, separators=(",", ":"))}
                for item in items])
    except IntegrityError as error:
        if "failover_turn_keys" in str(error) or "PRIMARY" in str(error):
            return False  # the key is there: this turn was stored by an earlier attempt
        raise
    return True


@dataclass
class Writer:
    """One conversation's writer: it writes turn 1, 2, 3 ... and retries a failed turn until it is acknowledged."""

    session_id: str
    store: str
    engine: AsyncEngine
    # (turn, when its successful attempt started, when it was acknowledged), on time.monotonic
    acknowledged: list[tuple[int, float, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    found_stored: int = 0  # keyed retries that found their turn already stored (a commit whose answer was lost)
    label: str = ""  # names this writer's turns; several writers may share one session (default: the session id)
    fallbacks: list[AsyncEngine] = field(default_factory=list)  # other nodes to try, in turn, after a failure

    def __post_init__(self) -> None:
        self.label = self.label or self.session_id

    async def write(self, number: int) -> None:
        items = turn(self.label, number)
        if self.store == "sdk":
            await SQLAlchemySession(self.session_id, engine=self.engine).add_items(items)  # type: ignore[arg-type]
        elif not await store_turn_once(self.engine, self.session_id, f"{self.label}-{number}"[-64:], items):
            self.found_stored += 1

    async def run(self, stop: asyncio.Event, pause: float = 0.01) -> None:
        number = 1
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.write(number)
            except Exception as error:  # noqa: BLE001 - every failure is counted, then the whole turn is retried
                self.errors[error_name(error)] += 1
                if self.fallbacks:  # the next node, as an application with a list of nodes would
                    self.fallbacks.append(self.engine)
                    self.engine = self.fallbacks.pop(0)
                await asyncio.sleep(0.2)
                continue
            self.acknowledged.append((number, started, time.monotonic()))
            number += 1
            await asyncio.sleep(pause)


def error_name(error: BaseException) -> str:
    """The driver's exception class, e.g. ``ConnectionDoesNotExistError``, behind SQLAlchemy's wrapper."""
    original = getattr(error, "orig", None)
    inner = getattr(original, "__cause__", None) or original or error
    code = inner.args[0] if inner.args and isinstance(inner.args[0], int) else None  # MySQL's error number
    return type(inner).__name__ + (f" {code}" if code is not None else "")


@dataclass
class HistoryCheck:
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0  # conversations whose stored turns are not in acknowledged order


async def check_histories(engine: AsyncEngine, writers: list[Writer]) -> HistoryCheck:
    """Read every conversation back and compare it with what its writer was told."""
    result = HistoryCheck()
    histories = {sid: await SQLAlchemySession(sid, engine=engine).get_items()
                 for sid in dict.fromkeys(writer.session_id for writer in writers)}
    for writer in writers:
        prefix = f"{writer.label} turn "
        stored = [int(str(item.get("content")).removeprefix(prefix)) for item in histories[writer.session_id]
                  if item.get("role") == "user" and str(item.get("content")).startswith(prefix)]
        counts = Counter(stored)
        acked = [number for number, _, _ in writer.acknowledged]
        result.acknowledged += len(acked)
        result.lost += sum(1 for number in acked if counts[number] == 0)
        result.duplicated += sum(count - 1 for count in counts.values() if count > 1)
        first_seen = list(dict.fromkeys(stored))
        result.out_of_order += first_seen != sorted(first_seen)
    return result


@dataclass
class DrillReport:
    name: str
    turn_ms: float  # median time of one acknowledged turn, healthy cluster
    failover_seconds: float  # the fault -> the failover manager names a new primary
    first_turn_seconds: float  # the fault -> the first acknowledged turn after it
    checks: dict[str, HistoryCheck]  # per store
    errors: Counter[str]  # what the writers saw, by driver exception
    found_stored: int  # keyed retries that found their turn already stored


def engine_for(url: str, settings: dict[str, str] | None = None) -> AsyncEngine:
    """The application's engine: short connect and command timeouts, so a dead or frozen server is an error
    within seconds instead of a turn that hangs (asyncpg's default connect timeout is 60 s)."""
    return create_async_engine(url, connect_args={"timeout": 3, "command_timeout": 10,
                                                  "server_settings": settings or {}})


async def median_turn_ms(engine: AsyncEngine, session_id: str, store: str, turns: int) -> float:
    writer = Writer(session_id, store, engine)
    took = []
    for number in range(1, turns + 1):
        started = time.perf_counter()
        await writer.write(number)
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


async def run_drill(name: str, engine: AsyncEngine, fault: Callable[[], Awaitable[tuple[float, float]]], *,
                    conversations: int = 4, turns_after: int = 3, cost_turns: int = 30,
                    resume_within: float = 90) -> DrillReport:
    """Writers on both stores; *fault* breaks the cluster and returns (the moment the server died, on
    ``time.monotonic``; the seconds until the failover manager named a new primary).

    The writers keep going until each has *turns_after* acknowledged turns after the fault; then every history
    is read back and checked.
    """
    await prepare(engine)
    tag = f"{name}-{time.monotonic_ns() % 10**9}"
    turn_ms = await median_turn_ms(engine, f"{tag}-cost", "keyed", cost_turns)
    writers = [Writer(f"{tag}-{store}-{number}", store, engine)
               for store in STORES for number in range(conversations)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.run(stop)) for writer in writers]
    try:
        await asyncio.sleep(0.5)  # the conversations are under way
        fault_at, failover_seconds = await fault()
        deadline = time.monotonic() + resume_within
        while any(sum(began > fault_at for _, began, _ in w.acknowledged) < turns_after for w in writers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the conversations did not resume within {resume_within:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    # attempts that began after the crash: an answer the dead server sent just before it died does not count
    after = [acked - fault_at for w in writers for _, began, acked in w.acknowledged if began > fault_at]
    checks = {store: await check_histories(engine, [w for w in writers if w.store == store]) for store in STORES}
    errors: Counter[str] = Counter()
    for writer in writers:
        errors.update(writer.errors)
    return DrillReport(name, turn_ms, failover_seconds, min(after), checks, errors,
                       sum(w.found_stored for w in writers))


# -- PostgreSQL under Patroni -----------------------------------------------------------------------------------
REPLICATION_MODES = {  # name -> (Patroni synchronous_mode, the client's synchronous_commit)
    "asynchronous": (False, "on"),
    "synchronous": (True, "on"),
    "remote_apply": (True, "remote_apply"),
}


async def patroni_drill(cluster: PatroniCluster, mode: str, *, lag: float = 1.0, stall: str = "walsender",
                        conversations: int = 4, turns_after: int = 3, rejoin: bool = True) -> DrillReport:
    """kill -9 the primary under *mode*; with *lag* > 0, replication stalls that long first.

    Replicas a second behind at the moment of the crash is what a busy primary or a slow link gives; here it is
    made on purpose so the drill shows the same thing every run: *stall* "walsender" stops the primary's
    senders (what it commits meanwhile never leaves it), "walreceiver" stops the replicas' receivers (what it
    commits meanwhile reaches them after the crash: commits whose answer was lost, yet which survive).
    """
    synchronous, commit = REPLICATION_MODES[mode]
    await asyncio.to_thread(cluster.set_synchronous, synchronous)
    engine = engine_for(cluster.url(), {"synchronous_commit": commit})

    async def crash_primary() -> tuple[float, float]:
        primary = cluster.primary()
        stalled = [pid for node in ([primary] if stall == "walsender" else cluster.replicas())
                   for pid in node.stall(stall)] if lag else []
        await asyncio.sleep(lag)
        primary.crash()
        crashed_at = time.monotonic()
        signal_all(stalled, signal.SIGCONT)  # the receivers run again (a sender is gone with its primary)
        _, seconds = await asyncio.to_thread(cluster.wait_new_primary, primary)
        return crashed_at, seconds

    old_primary = cluster.primary()
    try:
        report = await run_drill(f"postgres-{mode}", engine, crash_primary, conversations=conversations,
                                 turns_after=turns_after)
    finally:
        await engine.dispose()
    if rejoin:
        await asyncio.to_thread(cluster.rejoin, old_primary)
    return report


async def commit_costs(cluster: PatroniCluster, rounds: int = 5, turns: int = 20) -> dict[str, float]:
    """Median ms of one keyed turn per ``synchronous_commit`` level, on one healthy cluster in synchronous mode.

    ``local`` waits for the primary's disk only: what every commit costs under asynchronous replication.
    The levels take turns, *rounds* times, so a busy moment of the machine does not favour one of them.
    """
    await asyncio.to_thread(cluster.set_synchronous, True)
    levels = ("local", "on", "remote_apply")
    engines = {level: engine_for(cluster.url(), {"synchronous_commit": level}) for level in levels}
    took: dict[str, list[float]] = {level: [] for level in levels}
    try:
        await prepare(engines["on"])
        tag = f"cost-{time.monotonic_ns() % 10**9}"
        for number in range(rounds):
            for level in levels:
                writer = Writer(f"{tag}-{level}", "keyed", engines[level])
                for turn_number in range(number * turns + 1, (number + 1) * turns + 1):
                    started = time.perf_counter()
                    await writer.write(turn_number)
                    took[level].append((time.perf_counter() - started) * 1000)
    finally:
        for engine in engines.values():
            await engine.dispose()
    return {level: statistics.median(values) for level, values in took.items()}


async def freeze_drill(cluster: PatroniCluster, mode: str, *, frozen_for: float = 15.0, conversations: int = 4,
                       turns_after: int = 3) -> DrillReport:
    """SIGSTOP the primary (Patroni and PostgreSQL) for longer than ``ttl``, then SIGCONT it, under *mode*.

    Frozen, it answers nothing but keeps its sockets: clients wait (the engine's timeouts end the wait). A
    replica is promoted. Woken, the old primary believes for a moment that it still is one: a write that
    reaches it then is acknowledged and later thrown away, unless a synchronous standby must confirm it first.

    Not in the lesson yet (DRILLS.md, "Not covered yet"): one run lost nothing under either mode, and the first
    turn came only once the old primary woke, although a new primary existed seconds earlier; why (the pool's
    connections to the frozen server, and where the first writes after SIGCONT went) is still to be shown.
    """
    synchronous, commit = REPLICATION_MODES[mode]
    await asyncio.to_thread(cluster.set_synchronous, synchronous)
    engine = engine_for(cluster.url(), {"synchronous_commit": commit})
    old = cluster.primary()

    async def freeze() -> tuple[float, float]:
        old.freeze()
        frozen_at = time.monotonic()
        _, seconds = await asyncio.to_thread(cluster.wait_new_primary, old)
        await asyncio.sleep(max(0.0, frozen_at + frozen_for - time.monotonic()))
        old.thaw()
        return frozen_at, seconds

    try:
        report = await run_drill(f"postgres-frozen-{mode}", engine, freeze, conversations=conversations,
                                 turns_after=turns_after)
    finally:
        await engine.dispose()
    await asyncio.to_thread(cluster.wait_replicas, len(cluster.nodes) - 1)  # the old primary follows by itself
    return report
