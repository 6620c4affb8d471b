"""Lesson 09: measure session stores under concurrency: the SDK's, the course's, the floor and the peers.

    uv run python -m session_management.09_scaling.main                                  # offline: SQLite, small
    uv run --group peers python -m session_management.09_scaling.main --database postgres --database mysql \\
        --peers --concurrency 10,100,1000 --turns 5 --rounds 3 --peer-rounds 1 --history 10,100,1000 \\
        --json results.json --plot results.png

C concurrent conversations, each of K turns; a turn is `get_items()` then `add_items([user, assistant])`, what a
chat service does per message. Every store runs on fresh session ids, one after another at each measurement, in
an order that rotates every round, so all see the same machine; afterwards every conversation is read back and
checked for lost, duplicated and reordered messages. `--history N` repeats the measurement with N items stored
in each conversation first, reading everything and reading the last `--limit`. The servers' durability settings
are read first: a server that acknowledges commits before they reach the disk is refused. `--think` paces turns
like a chat (model time between read and write, user time between turns). On a server database every store
talks through a counting proxy (counting.py): round trips, statements and bytes per turn are counted on the
wire, next to the client's CPU time per turn.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    CourseError,
    create_engine,
    create_session_tables,
    heading,
    lesson_parser,
    open_database,
    redact,
    resolve_database_url,
    run_lesson,
)
from session_management.common.schema import session_tables

from .counting import CountingProxy, Counts
from .durability import durability_problems, server_settings
from .peers import PEERS, require
from .redis_stores import REDIS_STORES
from .stores import SDK_TABLE_STORES, STORES, Close, StoreFactory, TurnStore

QUESTION = "What did we decide about the launch date? " * 3
ANSWER = "We agreed on the second Tuesday of next month. " * 3


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


@dataclass(frozen=True)
class Think:
    """A chat's pacing: the model's time between a turn's read and its write, the user's before the next turn."""

    model_s: float = 0.0
    pause_s: float = 0.0


@dataclass(frozen=True)
class Cell:
    concurrency: int
    history: int = 0
    read: str = "full"


class Progress:
    """A one-line progress bar on stderr (redrawn on a terminal, a line per 5% otherwise)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_quarter = -1

    def advance(self, label: str) -> None:
        self.done += 1
        fraction = self.done / self.total
        if self.tty:
            bar = "#" * int(30 * fraction)
            sys.stderr.write(f"\r[{bar:<30}] {self.done}/{self.total} turns  {label:<40}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif int(fraction * 20) > self.last_quarter:
            self.last_quarter = int(fraction * 20)
            print(f"progress: {self.done}/{self.total} turns ({fraction:.0%}, "
                  f"{time.monotonic() - self.started:.0f} s) {label}", file=sys.stderr, flush=True)


class _Silent(Progress):
    def __init__(self) -> None:
        super().__init__(1)

    def advance(self, label: str) -> None:
        pass


def turn_items(session_id: str, turn: int) -> list[dict[str, str]]:
    """The measured turn's question and answer: unique, so a lost or doubled message shows when read back."""
    return [{"role": "user", "content": f"{session_id} t{turn} {QUESTION}"},
            {"role": "assistant", "content": f"{session_id} t{turn} {ANSWER}"}]


def history_items(session_id: str, count: int) -> list[dict[str, str]]:
    return [{"role": "user" if n % 2 == 0 else "assistant", "content": f"{session_id} h{n} {QUESTION}"}
            for n in range(count)]


Prefill = Callable[[str, list[dict[str, str]]], Awaitable[None]]


def conversation_prefill(engine: AsyncEngine) -> Prefill:
    """Write a history the way a conversation would have: each turn's two items one second after the previous
    turn's (one `add_items` of everything would give every item the same `created_at`, which no conversation
    has, and which changes how a database finds the newest rows). For the stores on the SDK's tables."""
    sessions, messages = session_tables(MetaData())

    async def prefill(session_id: str, items: list[dict[str, str]]) -> None:
        async with engine.begin() as connection:
            now = await connection.scalar(select(func.current_timestamp()))
            if isinstance(now, str):  # SQLite answers with text
                now = datetime.fromisoformat(now)
            now = now.replace(tzinfo=None, microsecond=0)
            turns = (len(items) + 1) // 2
            await connection.execute(insert(sessions).values(session_id=session_id))
            await connection.execute(insert(messages), [
                {"session_id": session_id, "message_data": json.dumps(item, separators=(",", ":")),
                 "created_at": now - timedelta(seconds=turns + 1 - n // 2)} for n, item in enumerate(items)])

    return prefill


def compare(expected: list[str], found: list[str], unsure: set[str]) -> tuple[int, int, bool]:
    """(lost, duplicated, misordered) for one conversation. A turn that raised may or may not have been stored
    (`unsure`): once is fine, twice is a duplicate."""
    wanted, got = Counter(expected), Counter(found)
    lost = sum((wanted - got).values())
    duplicated = sum(count - (1 if item in unsure and item not in wanted else 0)
                     for item, count in (got - wanted).items())
    confirmed = [item for item in found if item in wanted]
    return lost, duplicated, lost == 0 and duplicated == 0 and confirmed != expected


def close_store(store: TurnStore) -> None:
    """Close a store object that holds a connection of its own (the SDK's SQLiteSession)."""
    closer = getattr(store, "close", None)
    if closer is not None:
        closer()


@dataclass
class Run:
    latencies: list[float]
    errors: int
    elapsed: float
    checked: int
    lost: int
    duplicated: int
    misordered: int
    cpu_s: float = 0.0  # the client's CPU time over the measured turns
    counts: Counts | None = None  # what went over the wire during the measured turns


async def run_store(factory: StoreFactory, cell: Cell, turns: int, limit: int, progress: Progress, label: str,
                    prefix: str, think: Think = Think(), proxy: CountingProxy | None = None,
                    prefill: Prefill | None = None) -> Run:
    """C conversations at once, each `history` items long before it starts, then K timed turns; afterwards every
    conversation is read back (untimed) and compared with what was written.

    A turn's latency is the store's time (its read and its write), not the model's or the user's. With *think*,
    each conversation starts at a random moment within one pause (so they do not arrive in lockstep), waits
    `model_s` between read and write and `pause_s` before its next turn."""
    run = Run([], 0, 0.0, 0, 0, 0, 0)
    written: dict[str, list[str]] = {}
    unsure: dict[str, set[str]] = {}
    read_limit = limit if cell.read == "limit" else None

    async def prepare(number: int) -> tuple[str, TurnStore]:
        session_id = f"{prefix}-{number}"
        store, items = factory(session_id), history_items(session_id, cell.history)
        if items:  # untimed: the SDK tables' conversation-shaped prefill, or a store's own bulk path
            own = getattr(store, "prefill", None)
            await (prefill(session_id, items) if prefill else own(items) if own else store.add_items(items))
        written[session_id], unsure[session_id] = [item["content"] for item in items], set()
        return session_id, store

    async def conversation(session_id: str, store: TurnStore) -> None:
        if think.pause_s:
            await asyncio.sleep(random.Random(session_id).uniform(0, think.pause_s))
        for turn in range(turns):
            items = turn_items(session_id, turn)
            if turn and think.pause_s:
                await asyncio.sleep(think.pause_s)
            started = time.perf_counter()
            try:
                await store.get_items(read_limit)
                read_s = time.perf_counter() - started
                if think.model_s:
                    await asyncio.sleep(think.model_s)
                started = time.perf_counter()
                await store.add_items(items)
                run.latencies.append(read_s + time.perf_counter() - started)
                written[session_id] += [item["content"] for item in items]
            except Exception as error:  # noqa: BLE001 - counted and reported, the run goes on
                run.errors += 1
                unsure[session_id].update(item["content"] for item in items)
                if run.errors <= 3:
                    print(f"\n{label}: {type(error).__name__}: {str(error)[:200]}", file=sys.stderr)
            progress.advance(label)
        close_store(store)

    async def verify(session_id: str) -> None:
        reader = factory(session_id)
        found = [item["content"] for item in await reader.get_items()]
        close_store(reader)
        lost, duplicated, misordered = compare(written[session_id], found, unsure[session_id])
        run.checked += len(found)
        run.lost, run.duplicated, run.misordered = run.lost + lost, run.duplicated + duplicated, \
            run.misordered + misordered

    async def clear(session_id: str) -> None:
        store = factory(session_id)
        await store.clear_session()
        close_store(store)

    conversations = await asyncio.gather(*(prepare(n) for n in range(cell.concurrency)))
    # The proxy runs in a thread of its own: with it, the client's CPU is this thread's; without, the process's
    # (SQLite's driver works in a thread of its own).
    cpu_clock = time.thread_time if proxy else time.process_time
    counted, cpu, started = proxy.snapshot() if proxy else None, cpu_clock(), time.perf_counter()
    await asyncio.gather(*(conversation(session_id, store) for session_id, store in conversations))
    run.elapsed, run.cpu_s = time.perf_counter() - started, cpu_clock() - cpu
    if proxy and counted:
        run.counts = proxy.snapshot() - counted
    await asyncio.gather(*(verify(session_id) for session_id, _ in conversations))
    # Every run starts from the same tables: a store whose reads scan more than one conversation (LangChain's
    # table has no index on session_id) would otherwise pay for the runs before it.
    await asyncio.gather(*(clear(session_id) for session_id, _ in conversations))
    return run


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


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


def per_turn(done: list[Run], value: Callable[[Run], float]) -> float | None:
    turns = sum(len(run.latencies) + run.errors for run in done)
    return round(sum(value(run) for run in done) / turns, 2) if turns else None


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
        stores: dict[str, StoreFactory] = {}
        for name in plan.stores:
            opened = await {**STORES, **PEERS, **REDIS_STORES}[name](url, engine, plan.pool_size)
            if opened is not None:
                stores[name], close = opened
                closers.append(close)
        names = list(stores)
        for name in names:  # warm up: open every pool's connections, prepare statements, create tables
            await run_store(stores[name], Cell(min(plan.pool_size, max(c.concurrency for c in plan.cells))), 1,
                            plan.limit, _Silent(), name, f"bench-warmup-{uuid.uuid4().hex[:8]}")
        for index, cell in enumerate(plan.cells):
            runs: dict[str, list[Run]] = {name: [] for name in names}
            for round_number in range(max(plan.rounds_for(name) for name in names)):  # interleaved rounds
                shift = (index + rotation + round_number) % len(names)
                for name in names[shift:] + names[:shift]:
                    if round_number >= plan.rounds_for(name):
                        continue
                    label = f"{name} c={cell.concurrency} h={cell.history} {cell.read} {engine.dialect.name}"
                    runs[name].append(await run_store(
                        stores[name], cell, plan.turns, plan.limit, progress, label,
                        f"bench-{uuid.uuid4().hex[:8]}-{name}", plan.think,
                        proxy if name not in REDIS_STORES else None, sdk_tables if name in SDK_TABLE_STORES else None))
            for name, done in runs.items():
                latencies = [latency for run in done for latency in run.latencies]
                rates = [round(len(run.latencies) / run.elapsed, 1) for run in done]
                results.append(Result(
                    store=name, database="redis" if name in REDIS_STORES else engine.dialect.name,
                    concurrency=cell.concurrency, history=cell.history,
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
                ))
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


def wire_counts(done: list[Run]) -> dict[str, Any]:
    if any(run.counts is None for run in done):
        return {}
    return {"round_trips_per_turn": per_turn(done, lambda run: run.counts.round_trips),  # type: ignore[union-attr]
            "statements_per_turn": per_turn(done, lambda run: run.counts.statements),  # type: ignore[union-attr]
            "bytes_per_turn": per_turn(done, lambda run: run.counts.bytes_up + run.counts.bytes_down),  # type: ignore[union-attr]
            "connections_opened": sum(run.counts.connections for run in done)}  # type: ignore[union-attr]


def think_label(r: Result) -> str:
    return f"{r.model_s:g}/{r.pause_s:g}"


def store_rank(store: str) -> tuple[int, str]:
    """Rows in one fixed order, the stores' order of registration (stores.py, peers, Redis), never by speed: which
    store is fastest changes from run to run, and a table that reorders itself would show a ranking the next run
    may not reproduce. Stores of older runs (``raw_driver`` in results.json) come last."""
    order = [*STORES, *PEERS, *REDIS_STORES]
    return (order.index(store), "") if store in order else (len(order), store)


def print_table(results: list[Result]) -> None:
    several_pools = len({r.pool_size for r in results}) > 1  # a pool column only when --pool-size varies it
    several_thinks = len({think_label(r) for r in results}) > 1  # a think column only when --think varies it
    pool_head = f" {'pool':>4}" if several_pools else ""
    think_head = f" {'think s':>7}" if several_thinks else ""

    def tag(r: Result) -> str:
        return (f" pool={r.pool_size}" if several_pools else "") + (f" think={think_label(r)}" if several_thinks
                                                                    else "")

    header = (f"{'database':<10} {'C':>5} {'hist':>5} {'read':<5} {'store':<15}{pool_head}{think_head} {'turns/s':>8} "
              f"{'rounds (min-max)':>17} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'err':>4} {'lost':>4} {'dup':>4}")
    print(header)
    print("-" * len(header))
    for r in sorted(results, key=lambda r: (r.database, r.history, r.read, r.concurrency, r.pool_size, r.model_s,
                                            r.pause_s, store_rank(r.store))):
        spread = f"{r.rounds} ({min(r.turns_per_s_rounds):.0f}-{max(r.turns_per_s_rounds):.0f})"
        pool = f" {r.pool_size:>4}" if several_pools else ""
        think = f" {think_label(r):>7}" if several_thinks else ""
        print(f"{r.database:<10} {r.concurrency:>5} {r.history:>5} {r.read:<5} {r.store:<15}{pool}{think} "
              f"{r.turns_per_s:>8.0f} {spread:>17} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} {r.errors:>4} "
              f"{r.lost:>4} {r.duplicated + r.misordered:>4}")
    print()
    groups: dict[tuple[str, int, int, str, int, float, float], dict[str, Result]] = {}
    for r in results:
        groups.setdefault((r.database, r.concurrency, r.history, r.read, r.pool_size, r.model_s, r.pause_s),
                          {})[r.store] = r
    for (database, concurrency, history, read, *_), by_store in sorted(groups.items()):
        course = by_store.get("course_session")
        if course is None or len(by_store) < 2:
            continue
        ratios = [f"{course.turns_per_s / other.turns_per_s:.2f}x {name}"
                  for name, other in sorted(by_store.items(), key=lambda pair: store_rank(pair[0]))
                  if name != "course_session" and other.turns_per_s]
        print(f"{database} C={concurrency} history={history} {read}{tag(course)}: course_session = "
              + ", ".join(ratios))
    print_costs(results, groups, several_pools)
    growth: dict[tuple[str, str, str, int, float, float], list[Result]] = {}
    for r in results:
        growth.setdefault((r.database, r.store, r.read, r.pool_size, r.model_s, r.pause_s), []).append(r)
    lines = []
    for (database, store, read, *_), rows in sorted(growth.items()):
        rows = sorted((r for r in rows if r.history), key=lambda r: r.history)
        if len(rows) >= 2:
            first, last = rows[0], rows[-1]
            lines.append(f"{database} {store} {read}{tag(first)}: {first.turns_per_s:.0f} turns/s at history "
                         f"{first.history}, {last.turns_per_s:.0f} at {last.history} "
                         f"({last.turns_per_s / first.turns_per_s:.2f}x)")
    if lines:
        print("\ncost against history length (C=" + str(max(r.concurrency for r in results if r.history)) + "):")
        print("\n".join(lines))


def print_costs(results: list[Result], groups: dict[Any, dict[str, Result]], several_pools: bool) -> None:
    """What a turn cost, counted (round trips, statements, bytes on the wire) and measured (the client's CPU), and
    `course_session` against the floor. Nothing for runs that were not counted (the committed run predates it)."""
    counted = [r for r in results if r.client_cpu_us_per_turn is not None]
    if not counted:
        return
    header = (f"{'database':<10} {'C':>5} {'hist':>5} {'read':<5} {'think s':>7} {'store':<15} {'round trips':>11} "
              f"{'statements':>10} {'bytes':>7} {'new conns':>9} {'client CPU µs':>13}")
    print("\nper turn (round trips, statements, bytes: counted on the wire; CPU: the client process's):")
    print(header)
    print("-" * len(header))

    def shown(value: float | None, form: str) -> str:
        return "-".rjust(int(form.rstrip("dfs").split(".")[0])) if value is None else format(value, form)

    for r in sorted(counted, key=lambda r: (r.database, r.history, r.read, r.concurrency, r.pool_size, r.model_s,
                                            r.pause_s, store_rank(r.store))):
        print(f"{r.database:<10} {r.concurrency:>5} {r.history:>5} {r.read:<5} {think_label(r):>7} {r.store:<15} "
              f"{shown(r.round_trips_per_turn, '11.2f')} {shown(r.statements_per_turn, '10.2f')} "
              f"{shown(r.bytes_per_turn, '7.0f')} {shown(r.connections_opened, '9d')} "
              f"{shown(r.client_cpu_us_per_turn, '13.0f')}")
    print()
    for key, by_store in sorted(groups.items()):
        course, floor = by_store.get("course_session"), by_store.get("floor")
        if course is None or floor is None or course.client_cpu_us_per_turn is None:
            continue
        parts = []
        if course.round_trips_per_turn is not None and floor.round_trips_per_turn:
            ratio = course.round_trips_per_turn / floor.round_trips_per_turn
            parts.append(f"{course.round_trips_per_turn:.2f} round trips ({ratio:.2f}x)")
        if floor.client_cpu_us_per_turn:
            parts.append(f"{course.client_cpu_us_per_turn:.0f} µs client CPU "
                         f"({course.client_cpu_us_per_turn / floor.client_cpu_us_per_turn:.2f}x)")
        if floor.turns_per_s:
            parts.append(f"{course.turns_per_s / floor.turns_per_s:.2f}x turns/s")
        database, concurrency, history, read = key[:4]
        pool = f" pool={course.pool_size}" if several_pools else ""
        print(f"{database} C={concurrency} history={history} {read} think={think_label(course)}{pool}: "
              f"course_session against the floor: " + ", ".join(parts))


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*STORES, *PEERS]
    color = {name: plt.get_cmap("tab10")(names.index(name) % 10) for name in names}  # one colour per store
    databases = sorted({r.database for r in results if r.history})
    rows = 2 if databases else 1
    figure, axes = plt.subplots(rows, max(2, len(databases)), figsize=(13, 4.6 * rows), squeeze=False)
    throughput, p99 = axes[0][0], axes[0][1]
    series: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.history == 0 and r.read == "full":
            series.setdefault((r.database, r.store), []).append(r)
    for (database, store), points in sorted(series.items()):
        points.sort(key=lambda r: r.concurrency)
        style = "-" if database == "postgresql" else "--" if database == "mysql" else ":"
        label = f"{store} ({database}{', dashed' if database == 'mysql' else ''})"
        throughput.plot([r.concurrency for r in points], [r.turns_per_s for r in points], style, marker="o",
                        label=label, color=color[store])
        p99.plot([r.concurrency for r in points], [r.p99_ms for r in points], style, marker="o", label=label,
                 color=color[store])
    for axis, title, unit in ((throughput, "throughput (history 0)", "turns/s"),
                              (p99, "p99 latency per turn (history 0)", "ms")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("concurrent conversations")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    throughput.legend(fontsize=6)
    for axis, database in zip(axes[1] if databases else [], databases, strict=False):
        by_store: dict[tuple[str, str], list[Result]] = {}
        for r in results:
            if r.database == database and r.history:
                by_store.setdefault((r.store, r.read), []).append(r)
        for (store, read), points in sorted(by_store.items()):
            points.sort(key=lambda r: r.history)
            axis.plot([r.history for r in points], [r.turns_per_s for r in points], "-" if read == "full" else "--",
                      marker="o", label=f"{store} ({read})", color=color[store])
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("items in the conversation before the turns")
        axis.set_ylabel("turns/s")
        concurrency = max(r.concurrency for r in results if r.history)
        axis.set_title(f"cost against history, {database}, C={concurrency} (dashed: limit reads)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def int_list(values: list[str] | None, default: list[int], *, zero: bool = False) -> list[int]:
    if not values:
        return default
    try:
        numbers = [int(part) for value in values for part in value.split(",") if part.strip()]
    except ValueError:
        raise CourseError(f"not a whole number in {values}", "use e.g. --concurrency 10,100,1000") from None
    if any(n < 0 or (n == 0 and not zero) for n in numbers):
        raise CourseError("concurrency, turns, rounds and pool sizes must be positive, histories not negative",
                          "use e.g. --concurrency 10,100 --history 10,100,1000")
    return numbers


def think_list(values: list[str] | None) -> list[Think]:
    """`--think 1.5` (the model 1.5 s, the user 1.5 s), `--think 2/5` (model/user), `--think 0` (back to back)."""
    if not values:
        return [Think()]
    thinks = []
    for value in (part for given in values for part in given.split(",") if part.strip()):
        try:
            seconds = [float(number) for number in value.split("/")]
        except ValueError:
            seconds = []
        if len(seconds) not in (1, 2) or any(not 0 <= number < 3600 for number in seconds):
            raise CourseError(f"--think {value}: not a time in seconds, or MODEL/PAUSE",
                              "use e.g. --think 0,1.5 (back to back, then 1.5 s each) or --think 2/5")
        thinks.append(Think(seconds[0], seconds[-1]))
    return list(dict.fromkeys(thinks))


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("openai-agents", "sqlalchemy", "asyncpg", "aiomysql", "langchain-community", "google-adk",
                 "llama-index-storage-chat-store-postgres"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


async def check_servers(urls: list[str], allow_non_durable: bool) -> dict[str, dict[str, Any]]:
    """Read each server's durability settings; refuse a server that acknowledges commits before they are on disk."""
    servers: dict[str, dict[str, Any]] = {}
    for url in urls:
        engine = create_engine(url)
        try:
            settings = await server_settings(engine)
            problems = durability_problems(engine.dialect.name, settings)
            servers[engine.dialect.name] = {"url": redact(url), "settings": settings, "durable": not problems}
        finally:
            await engine.dispose()
        shown = ", ".join(f"{key}={value}" for key, value in settings.items())
        print(f"{engine.dialect.name} server settings: {shown}")
        if problems and not allow_non_durable:
            raise CourseError(f"{redact(url)} does not make commits durable ({', '.join(problems)}): its numbers "
                              "would flatter every store and say nothing about production",
                              "measure on a durable server (scripts/db-servers.sh starts them so unless "
                              "DB_SERVERS_FAST=1), or pass --allow-non-durable to measure anyway")
        if problems:
            print(f"WARNING: {engine.dialect.name} is NOT durable ({', '.join(problems)}): "
                  "these numbers are not production numbers (--allow-non-durable)")
    return servers


async def main(args: argparse.Namespace) -> None:
    databases = args.database or ["sqlite"]
    urls = [resolve_database_url(d) for d in databases]
    concurrencies = int_list(args.concurrency, [1, 10])
    histories = int_list(args.history, [], zero=True)
    pools = int_list(args.pool_size, [20])
    thinks = think_list(args.think)
    wanted = list(dict.fromkeys(args.store or [*STORES, *(PEERS if args.peers else []),
                                               *(REDIS_STORES if args.redis else [])]))
    unknown = set(wanted) - set(STORES) - set(PEERS) - set(REDIS_STORES)
    if unknown:
        raise CourseError(f"unknown store(s): {', '.join(sorted(unknown))}",
                          f"choose from {', '.join([*STORES, *PEERS, *REDIS_STORES])}")
    for name in wanted:
        if name in PEERS:
            require(name)
    for name, value in (("--turns", args.turns), ("--rounds", args.rounds), ("--limit", args.limit),
                        ("--history-concurrency", args.history_concurrency)):
        if value <= 0:
            raise CourseError(f"{name} must be positive", f"use e.g. {name} 3")
    peer_rounds = args.peer_rounds or args.rounds
    if peer_rounds <= 0:
        raise CourseError("--peer-rounds must be positive", "use e.g. --peer-rounds 1")
    cells = [Cell(c) for c in concurrencies]
    cells += [Cell(args.history_concurrency, n, read) for n in histories for read in ("full", "limit")]
    heading("Lesson 09: session stores under load")
    for url in urls:
        print(f"database: {redact(url)}")
    print(f"concurrency: {concurrencies}; turns per conversation: {args.turns}; pool size: {pools}; "
          f"rounds: {args.rounds} (peers: {peer_rounds}); ping: {args.ping}")
    print("think (model s / user pause s): " + ", ".join(f"{t.model_s:g}/{t.pause_s:g}" for t in thinks)
          + ("; round trips, statements and bytes not counted (--no-count)" if args.no_count else ""))
    if histories:
        print(f"history: {histories} items before the turns, at C={args.history_concurrency}, full reads and "
              f"reads of the last {args.limit}")
    for url in urls:  # before any benchmark: one clear line for a database that is down, refuses us, or lacks rights
        async with open_database(url):
            pass
    servers = await check_servers(urls, args.allow_non_durable)
    plans = [Plan(cells, args.turns, args.limit, args.rounds, peer_rounds, wanted, pool, args.ping, think,
                  not args.no_count) for pool in pools for think in thinks]
    progress = Progress(sum(cell.concurrency * args.turns * plan.rounds_for(name)
                            for url in urls for plan in plans for cell in cells for name in wanted
                            if applies(name, url, url == urls[0])))
    started = time.monotonic()
    results: list[Result] = []
    for rotation, url in enumerate(urls):
        for plan in plans:
            stores = [name for name in plan.stores if applies(name, url, rotation == 0)]
            if stores:
                results += await benchmark(url, replace(plan, stores=stores), progress, rotation)
    print(f"\n({time.monotonic() - started:.0f} s)")
    print_table(results)
    if args.json:
        command = " ".join(redact(part) if "://" in part else part for part in sys.argv[1:])  # no passwords
        document = {"run": {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "cpus": os.cpu_count(), "seconds": round(time.monotonic() - started),
                            "ping": args.ping, "think": [asdict(t) for t in thinks],
                            "counted": not args.no_count, "versions": package_versions()},
                    "servers": servers, "results": [asdict(r) for r in results]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(results, Path(args.plot))
        print(f"wrote {args.plot}")
    broken = [r for r in results if r.lost or r.duplicated or r.misordered]
    if broken:
        raise CourseError("messages were lost, duplicated or reordered: " + ", ".join(
            f"{r.store} on {r.database} (C={r.concurrency}: {r.lost} lost, {r.duplicated} duplicated, "
            f"{r.misordered} conversations out of order)" for r in broken), "see the table above")


def applies(store: str, url: str, first: bool = True) -> bool:
    """Whether *store* runs with this database (the others are left out of its runs). The Redis stores have
    servers of their own: they run once, with the *first* database of the run."""
    if store in REDIS_STORES:
        return first
    backend = make_url(url).get_backend_name()
    return {"sdk_sqlite": backend == "sqlite", "llamaindex": backend == "postgresql"}.get(store, True)


if __name__ == "__main__":
    parser = lesson_parser("Lesson 09: benchmark session stores", database=False)
    parser.add_argument("--database", action="append",
                        help="sqlite | postgres | mysql | URL; repeat for several (default: sqlite)")
    parser.add_argument("--concurrency", action="append", help="concurrent conversations: repeat or 10,100,1000")
    parser.add_argument("--turns", type=int, default=3, help="turns per conversation (default 3)")
    parser.add_argument("--history", action="append",
                        help="also measure with this many items stored before the turns: repeat or 10,100,1000")
    parser.add_argument("--history-concurrency", type=int, default=100,
                        help="concurrent conversations for the --history runs (default 100)")
    parser.add_argument("--limit", type=int, default=20,
                        help="items a limited read asks for in the --history runs (default 20)")
    parser.add_argument("--pool-size", action="append", help="connection pool size(s) (default 20)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every measurement this many times, interleaved; report the median")
    parser.add_argument("--peers", action="store_true",
                        help="add the peers: LangChain, Google ADK, LlamaIndex (uv sync --group peers)")
    parser.add_argument("--peer-rounds", type=int, help="rounds for the peers (default: --rounds)")
    parser.add_argument("--store", action="append",
                        help="only these stores: " + ", ".join([*STORES, *PEERS, *REDIS_STORES]))
    parser.add_argument("--allow-non-durable", action="store_true",
                        help="measure on a server whose commits are not durable (fsync off...), with a warning")
    parser.add_argument("--ping", choices=("idle", "always", "never"), default="idle",
                        help="test pooled connections before use: when idle for 1 s (the course's default), "
                             "at every checkout (pool_pre_ping=True) or never")
    parser.add_argument("--think", action="append",
                        help="a chat's pacing: seconds of model time between a turn's read and its write, and of "
                             "user time before the next turn: 1.5 (both), 2/5 (model/user); repeat or 0,1.5 "
                             "(default 0: turns back to back)")
    parser.add_argument("--no-count", action="store_true",
                        help="no counting proxy between the stores and the servers (round trips, statements "
                             "and bytes are then not reported)")
    parser.add_argument("--redis", action="store_true",
                        help="also benchmark lesson 10's Redis stores (throwaway redis-server processes)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--plot", help="draw throughput, p99 and cost against history into this PNG")
    run_lesson(main, parser.parse_args())
