"""Failover drills for lesson 12: conversations keep writing turns while the database server under them dies.

Every drill ends the same way: a **history check**. Each writer records the turns the database acknowledged
(the commit returned); afterwards every conversation is read back and compared with that record:

* **lost**: acknowledged, then missing (the failover threw it away);
* **duplicated**: stored more than once (a retry re-sent a turn whose first commit had in fact succeeded);
* **out of order**: the stored turns are not in the order they were acknowledged.

Three ways to write a turn (its user message and its reply, in one transaction) run side by side on one engine:

* ``sdk``: the SDK's ``SQLAlchemySession.add_items``, retried blindly when it fails;
* ``course``: the course's ``CourseSession.add_items`` (one statement per turn), retried blindly too;
* ``keyed``: :func:`store_turn_once`, which stores a per-turn key in the same transaction, so a retry of a turn
  that was in fact stored finds the key and stores nothing (the Idempotency-Key of lesson 06).

(The Galera drills use the first and the last: ``STORES``.)
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import signal
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import Column, MetaData, String, Table, event, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from session_management.common.schema import create_session_tables, session_tables
from session_management.servers.local import signal_all, wait_until
from session_management.servers.patroni import PatroniCluster, PatroniNode
from session_management.stores.course_session import CourseSession

metadata = MetaData()
sdk_sessions, sdk_messages = session_tables(metadata)
turn_keys = Table("failover_turn_keys", metadata,
                  Column("session_id", String(255), primary_key=True),
                  Column("turn_key", String(64), primary_key=True),
                  mysql_charset="utf8mb4", mysql_engine="InnoDB")

STORES = ("sdk", "keyed")
POSTGRES_STORES = ("sdk", "course", "keyed")


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

    turn_keys is a table of (session_id, turn_key) pairs; sdk_sessions and sdk_messages are the SDK's own tables
    (SQLAlchemySession reads what this writes).

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
    except IntegrityError:
        # Which constraint failed is in the error's text, worded differently by every database: ask instead.
        async with engine.connect() as connection:
            stored = (await connection.execute(select(turn_keys.c.turn_key).where(
                turn_keys.c.session_id == session_id, turn_keys.c.turn_key == key))).first()
        if stored is not None:
            return False  # the key is there: this turn was stored by an earlier attempt
        raise  # another constraint (two first turns racing to create the session): retry the turn
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
    acknowledged_by: list[int] = field(default_factory=list)  # beside acknowledged: the server's port (0: unknown)
    server_port: int = 0  # the port of the connection this writer last checked out (see track_servers)

    def __post_init__(self) -> None:
        self.label = self.label or self.session_id

    async def write(self, number: int) -> None:
        items = turn(self.label, number)
        if self.store == "sdk":
            await SQLAlchemySession(self.session_id, engine=self.engine).add_items(items)  # type: ignore[arg-type]
        elif self.store == "course":
            await CourseSession(self.session_id, engine=self.engine).add_items(items)  # type: ignore[arg-type]
        elif not await store_turn_once(self.engine, self.session_id, f"{self.label}-{number}"[-64:], items):
            self.found_stored += 1

    async def run(self, stop: asyncio.Event, pause: float = 0.01) -> None:
        current_writer.set(self)  # this task's context, and the tasks the stores start from it
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
            self.acknowledged_by.append(self.server_port)
            number += 1
            await asyncio.sleep(pause)


current_writer: contextvars.ContextVar[Writer | None] = contextvars.ContextVar("current_writer", default=None)


def error_name(error: BaseException) -> str:
    """The driver's exception class, e.g. ``ConnectionDoesNotExistError``, behind SQLAlchemy's wrapper."""
    original = getattr(error, "orig", None)
    inner = getattr(original, "__cause__", None) or original or error
    code = inner.args[0] if inner.args and isinstance(inner.args[0], int) else None  # MySQL's error number
    return type(inner).__name__ + (f" {code}" if code is not None else "")


async def read_history(engine: AsyncEngine, session_id: str, attempts: int = 10) -> list[Any]:
    """The session's items; a read that fails (a cluster still settling after a drill) is tried again."""
    for attempt in range(attempts):
        try:
            return list(await SQLAlchemySession(session_id, engine=engine).get_items())
        except Exception:  # noqa: BLE001 - a read changes nothing: trying it again is safe
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


@dataclass
class HistoryCheck:
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0  # conversations whose stored turns are not in acknowledged order


async def check_histories(engine: AsyncEngine, writers: list[Writer]) -> HistoryCheck:
    """Read every conversation back and compare it with what its writer was told."""
    result = HistoryCheck()
    histories = {sid: await read_history(engine, sid) for sid in dict.fromkeys(w.session_id for w in writers)}
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
    writers: list[Writer] = field(default_factory=list, repr=False)
    # the freeze drill only: the freeze -> SIGCONT; the freeze -> the first turn another node acknowledged;
    # turns the old primary acknowledged after SIGCONT (on a connection to it)
    thawed_seconds: float | None = None
    first_elsewhere_seconds: float | None = None
    old_primary_turns: int = 0
    leader_taken_back: bool = False  # the woken old primary took the leader key back (Patroni 3.0.2's bug)


def engine_for(url: str, settings: dict[str, str] | None = None, *, command_timeout: float = 10,
               per_host: bool = False) -> AsyncEngine:
    """The application's engine: short connect and command timeouts, so a dead or frozen server is an error
    within seconds instead of a turn that hangs (asyncpg's default connect timeout is 60 s).

    *per_host*: connect through :func:`one_host_at_a_time` (each host its own connect timeout) instead of
    asyncpg's multi-host connect (one timeout for all the hosts)."""
    connect_args: dict[str, Any] = {"command_timeout": command_timeout, "server_settings": settings or {}}
    if per_host:
        return create_async_engine(url, async_creator=one_host_at_a_time(url, timeout=2, **connect_args))
    return create_async_engine(url, connect_args={"timeout": 3, **connect_args})


def one_host_at_a_time(url: str, timeout: float, **connect_args: Any) -> Callable[[], Awaitable[Any]]:
    """An ``async_creator`` for SQLAlchemy: the hosts of a multi-host URL in order, each with its OWN timeout.

    asyncpg's ``timeout`` bounds its whole multi-host connect: the hosts are tried in order within it, so one
    that accepts TCP but never answers (a frozen server: the kernel still completes the handshake) uses all of
    it, and the hosts after it are never tried. Here the frozen host costs *timeout*, then the next is tried.
    """
    parsed = make_url(url)
    hosts = parsed.query.get("host", ())
    hosts = (hosts,) if isinstance(hosts, str) else hosts
    target = parsed.query.get("target_session_attrs", "any")

    async def connect() -> Any:
        error: BaseException | None = None
        for host in hosts or (f"{parsed.host}:{parsed.port or 5432}",):
            name, _, port = host.rpartition(":")  # SQLAlchemy requires a port on every host of such a URL
            try:
                return await asyncpg.connect(host=name, port=int(port), user=parsed.username,
                                             password=parsed.password, database=parsed.database,
                                             timeout=timeout, target_session_attrs=target, **connect_args)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    asyncpg.exceptions.TargetServerAttributeNotMatched) as failed:
                error = failed  # this host is down, frozen, or not the primary: the next one
        raise error or ValueError(f"no host in {url!r}")
    return connect


def track_servers(engine: AsyncEngine) -> None:
    """Keep each writer's ``server_port`` up to date: a pool event names the server of every connection a writer
    checks out (a turn is written on one connection: the one its writer checked out last)."""
    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        writer = current_writer.get()
        if writer is not None:
            address = getattr(dbapi_connection.driver_connection, "_addr", None)  # PRIVATE: asyncpg's peer
            writer.server_port = address[1] if isinstance(address, tuple) else 0


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
                    resume_within: float = 90, stores: tuple[str, ...] = POSTGRES_STORES,
                    before_check: Callable[[], Awaitable[None]] | None = None) -> DrillReport:
    """Writers on *stores*; *fault* breaks the cluster and returns (the moment the server died, on
    ``time.monotonic``; the seconds until the failover manager named a new primary).

    The writers keep going until each has *turns_after* acknowledged turns after the fault; then every history
    is read back and checked.
    """
    await prepare(engine)
    tag = f"{name}-{time.monotonic_ns() % 10**9}"
    turn_ms = await median_turn_ms(engine, f"{tag}-cost", "keyed", cost_turns)
    track_servers(engine)
    writers = [Writer(f"{tag}-{store}-{number}", store, engine)
               for store in stores for number in range(conversations)]
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
    # The check opens its own connections: a pooled one may be to a server now gone, or one that hangs. They are
    # dropped, not closed (closing waits for a server that may never answer).
    await engine.dispose(close=False)
    if before_check is not None:
        await before_check()  # e.g. wait until the cluster has settled: the check reads what stays
    checks = {store: await check_histories(engine, [w for w in writers if w.store == store]) for store in stores}
    errors: Counter[str] = Counter()
    for writer in writers:
        errors.update(writer.errors)
    return DrillReport(name, turn_ms, failover_seconds, min(after), checks, errors,
                       sum(w.found_stored for w in writers), writers)


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


def primary_first(cluster: PatroniCluster, primary: PatroniNode) -> str:
    """The cluster's multi-host URL with *primary* listed first, as an application lists its usual primary."""
    first = f"host=127.0.0.1:{primary.pg_port}"
    base, query = cluster.url().split("?", 1)
    return f"{base}?{first}&" + "&".join(part for part in query.split("&") if part != first)


async def freeze_drill(cluster: PatroniCluster, mode: str, *, frozen_for: float = 15.0, command_timeout: float = 30,
                       per_host: bool = False, conversations: int = 4, turns_after: int = 3) -> DrillReport:
    """SIGSTOP the primary (Patroni and PostgreSQL) for *frozen_for* s, longer than ``ttl``, then SIGCONT it.

    Frozen, it answers nothing but keeps its sockets: a statement sent to it waits, and runs when it wakes if
    the client still waits (*command_timeout* longer than the freeze: the split-brain window at its widest). A
    replica is promoted meanwhile. Woken, the old primary is a primary until its Patroni, a second or so later,
    finds the leader key taken and demotes it: under asynchronous replication a commit it takes then is
    acknowledged and thrown away (its history is rewound to the new primary's); under synchronous replication
    it waits for a standby that follows another node now, and never returns.

    Patroni 3.0.2 (Debian 12's) often does worse: woken, it renews the leader key from its stale view of
    etcd and takes it back (patroni/patroni#2689, fixed in 3.0.3); the new primary is then demoted, and what it
    acknowledged is rewound away, under synchronous replication too. ``leader_taken_back`` says when.

    The URL lists the old primary first. With asyncpg's multi-host connect (*per_host* False) every new
    connection spends its whole timeout on the frozen host and never tries the next; with
    :func:`one_host_at_a_time` it moves on after its own timeout, and reaches the new primary before SIGCONT.
    """
    synchronous, commit = REPLICATION_MODES[mode]
    await asyncio.to_thread(cluster.set_synchronous, synchronous)
    old = cluster.primary()
    engine = engine_for(primary_first(cluster, old), {"synchronous_commit": commit},
                        command_timeout=command_timeout, per_host=per_host)
    moments: dict[str, float] = {}  # on time.monotonic

    async def freeze() -> tuple[float, float]:
        old.freeze()
        moments["frozen"] = time.monotonic()
        _, seconds = await asyncio.to_thread(cluster.wait_new_primary, old)
        await asyncio.sleep(max(0.0, moments["frozen"] + frozen_for - time.monotonic()))
        old.thaw()
        moments["thawed"] = time.monotonic()
        return moments["frozen"], seconds

    async def settle() -> None:  # the node that lost the leader key rewinds and follows by itself
        for pause in (3.0, 0.0):  # settled, and still so a moment later (not a pass between two leaders)
            await asyncio.to_thread(wait_until, lambda: settled(cluster), 90, "the cluster settling after the freeze",
                                    old.log_tail)
            await asyncio.sleep(pause)

    name = f"postgres-frozen-{mode}" + ("-per-host" if per_host else "")
    try:
        report = await run_drill(name, engine, freeze, conversations=conversations, turns_after=turns_after,
                                 before_check=settle)
    finally:
        await engine.dispose(close=False)  # its connections went to servers that hung or went away: drop them
    frozen_at, thawed_at = moments["frozen"], moments["thawed"]
    turns = [(port, began, acked) for writer in report.writers
             for (_, began, acked), port in zip(writer.acknowledged, writer.acknowledged_by, strict=True)]
    report.thawed_seconds = thawed_at - frozen_at
    report.old_primary_turns = sum(port == old.pg_port and acked > thawed_at for port, _, acked in turns)
    report.first_elsewhere_seconds = min((acked - frozen_at for port, began, acked in turns
                                          if port != old.pg_port and acked > frozen_at), default=None)
    report.leader_taken_back = old.is_primary()
    if report.leader_taken_back:  # it names no synchronous standby again until synchronous_mode goes off and on
        await asyncio.to_thread(reset_synchronous_mode, cluster)
    return report


def reset_synchronous_mode(cluster: PatroniCluster) -> None:
    """synchronous_mode off, and seen off by the primary (an off and on within one Patroni loop go unseen)."""
    cluster.set_synchronous(False)
    wait_until(lambda: cluster.psql(cluster.primary(), "postgres", "SHOW synchronous_standby_names") == "", 30,
               "Patroni clearing synchronous_standby_names")


def settled(cluster: PatroniCluster) -> bool:
    """One node says it is the primary, and every other one streams from it."""
    primaries = [node for node in cluster.live_nodes() if node.is_primary()]
    streaming = [m for m in cluster.members() if m.get("role") in ("replica", "sync_standby")
                 and m.get("state") in ("running", "streaming")]
    return len(primaries) == 1 and len(streaming) == len(cluster.live_nodes()) - 1
