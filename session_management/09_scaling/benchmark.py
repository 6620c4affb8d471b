"""One benchmark on one database: every store, every cell of the plan, interleaved rounds, one Result per cell.

Every store runs on fresh session ids, one after another at each measurement, in an order that rotates every
round, so all see the same machine. On a server database every store talks through a counting proxy
(counting.py): round trips, statements and bytes per turn are counted on the wire.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_engine, create_session_tables
from session_management.common.progress import Progress

from .counting import CountingProxy, Counts
from .peers import PEERS
from .redis_stores import REDIS_STORES
from .stores import SDK_TABLE_STORES, STORES, Close, StoreFactory
from .workload import Cell, Prefill, Run, Think, conversation_prefill, run_store


@dataclass
class Result:
    store: str
    database: str
    concurrency: int
    history: int  # items stored in each conversation before the measured turns
    read: str  # "full": get_items(); "limit": get_items(limit)
    limit: int | None
    turns: int  # measured turns, all rounds
    rounds: int
    turns_per_s: float  # median over the rounds
    turns_per_s_rounds: list[float]
    p50_ms: float  # over every turn of every round
    p99_ms: float
    max_ms: float
    errors: int
    checked: int  # messages read back after the runs
    lost: int
    duplicated: int
    misordered: int  # conversations whose messages came back in another order
    pool_size: int
    model_s: float = 0.0  # --think: the model's time between a turn's read and its write
    pause_s: float = 0.0  # --think: the user's time between a turn's write and the next read
    # Counted on the wire by the benchmark's proxy (counting.py), per measured turn; None where not counted.
    round_trips_per_turn: float | None = None
    statements_per_turn: float | None = None
    bytes_per_turn: float | None = None  # both ways
    connections_opened: int | None = None  # during the measured turns, all rounds
    client_cpu_us_per_turn: float | None = None  # the benchmark process's CPU (the proxy's thread excluded)


@dataclass
class Plan:
    cells: list[Cell]
    turns: int
    limit: int
    rounds: int
    peer_rounds: int
    stores: list[str]  # asked for, in this order; those that do not apply to a database are left out there
    pool_size: int
    ping: str = "idle"  # --ping: idle (the course's default), always (pool_pre_ping), never
    think: Think = Think()
    count: bool = True  # count round trips, statements and bytes through a proxy (server databases)

    def rounds_for(self, store: str) -> int:
        return self.peer_rounds if store in PEERS else self.rounds


def applies(store: str, url: str, first: bool = True) -> bool:
    """Whether *store* runs with this database (the others are left out of its runs). The Redis stores have
    servers of their own: they run once, with the *first* database of the run."""
    if store in REDIS_STORES:
        return first
    backend = make_url(url).get_backend_name()
    return {"sdk_sqlite": backend == "sqlite", "llamaindex": backend == "postgresql"}.get(store, True)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def per_turn(done: list[Run], value: Callable[[Run], float]) -> float | None:
    turns = sum(len(run.latencies) + run.errors for run in done)
    return round(sum(value(run) for run in done) / turns, 2) if turns else None


def wire_counts(done: list[Run]) -> dict[str, Any]:
    if any(run.counts is None for run in done):
        return {}
    return {"round_trips_per_turn": per_turn(done, lambda run: wire(run).round_trips),
            "statements_per_turn": per_turn(done, lambda run: wire(run).statements),
            "bytes_per_turn": per_turn(done, lambda run: wire(run).bytes_up + wire(run).bytes_down),
            "connections_opened": sum(wire(run).connections for run in done)}


def wire(run: Run) -> Counts:
    assert run.counts is not None  # wire_counts returns early when a run was not counted
    return run.counts


def summarise(name: str, database: str, cell: Cell, plan: Plan, done: list[Run]) -> Result:
    """One store's rounds at one cell: the median rate, latency percentiles, and every message accounted for."""
    latencies = [latency for run in done for latency in run.latencies]
    rates = [round(len(run.latencies) / run.elapsed, 1) for run in done]
    return Result(
        store=name, database=database, concurrency=cell.concurrency, history=cell.history,
        read=cell.read, limit=plan.limit if cell.read == "limit" else None, turns=len(latencies),
        rounds=len(done), turns_per_s=round(statistics.median(rates), 1), turns_per_s_rounds=rates,
        p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
        max_ms=round(max(latencies, default=float("nan")) * 1000, 1),
        errors=sum(run.errors for run in done), checked=sum(run.checked for run in done),
        lost=sum(run.lost for run in done), duplicated=sum(run.duplicated for run in done),
        misordered=sum(run.misordered for run in done), pool_size=plan.pool_size,
        model_s=plan.think.model_s, pause_s=plan.think.pause_s,
        client_cpu_us_per_turn=per_turn(done, lambda run: run.cpu_s * 1e6),
        **wire_counts(done),
    )


async def open_stores(plan: Plan, url: str, engine: AsyncEngine, closers: list[Close]) -> dict[str, StoreFactory]:
    """Every store of the plan that applies to this database (each one's cleanup appended to *closers*)."""
    stores: dict[str, StoreFactory] = {}
    for name in plan.stores:
        opened = await {**STORES, **PEERS, **REDIS_STORES}[name](url, engine, plan.pool_size)
        if opened is not None:
            stores[name], close = opened
            closers.append(close)
    return stores


async def measure_cell(stores: dict[str, StoreFactory], cell: Cell, shift_by: int, plan: Plan, engine: AsyncEngine,
                       progress: Progress, proxy: CountingProxy | None, sdk_tables: Prefill) -> dict[str, list[Run]]:
    """Every store's rounds at one cell, interleaved: each round in another order, so all see the same machine."""
    names = list(stores)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_number in range(max(plan.rounds_for(name) for name in names)):
        shift = (shift_by + round_number) % len(names)
        for name in names[shift:] + names[:shift]:
            if round_number >= plan.rounds_for(name):
                continue
            label = f"{name} c={cell.concurrency} h={cell.history} {cell.read} {engine.dialect.name}"
            runs[name].append(await run_store(
                stores[name], cell, plan.turns, plan.limit, progress, label,
                f"bench-{uuid.uuid4().hex[:8]}-{name}", plan.think,
                proxy if name not in REDIS_STORES else None, sdk_tables if name in SDK_TABLE_STORES else None))
    return runs


async def benchmark(url: str, plan: Plan, progress: Progress, rotation: int) -> list[Result]:
    ping = {} if plan.ping == "idle" else {"pool_pre_ping": plan.ping == "always"}
    proxy = CountingProxy(url) if plan.count and make_url(url).get_backend_name() != "sqlite" else None
    if proxy:
        proxy.start()
        url = proxy.url  # every store, the SDK's and the peers' included, talks to the server through it
    engine = create_engine(url, pool_size=plan.pool_size, max_overflow=0, pool_timeout=120, **ping)
    results: list[Result] = []
    closers: list[Close] = []
    sdk_tables = conversation_prefill(engine)
    try:
        await create_session_tables(engine)
        stores = await open_stores(plan, url, engine, closers)
        for name in stores:  # warm up: open every pool's connections, prepare statements, create tables
            await run_store(stores[name], Cell(min(plan.pool_size, max(c.concurrency for c in plan.cells))), 1,
                            plan.limit, Progress(1, enabled=False), name, f"bench-warmup-{uuid.uuid4().hex[:8]}")
        for index, cell in enumerate(plan.cells):
            runs = await measure_cell(stores, cell, index + rotation, plan, engine, progress, proxy, sdk_tables)
            results += [summarise(name, "redis" if name in REDIS_STORES else engine.dialect.name, cell, plan, done)
                        for name, done in runs.items()]
    finally:
        for close in closers:
            await close()
        async with engine.begin() as connection:  # leave the database as we found it (the peers' own tables stay)
            await connection.execute(text("DELETE FROM agent_messages WHERE session_id LIKE 'bench-%'"))
            await connection.execute(text("DELETE FROM agent_sessions WHERE session_id LIKE 'bench-%'"))
        await engine.dispose()
        if proxy:
            proxy.stop()
    return results
