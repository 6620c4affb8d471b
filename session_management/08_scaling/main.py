"""Lesson 08: measure session stores under concurrency, the SDK's and the course's own.

    uv run python -m session_management.08_scaling.main                                  # offline: SQLite, small
    uv run python -m session_management.08_scaling.main --database postgres --database mysql \\
        --concurrency 10,100,1000 --turns 5 --json results.json --plot results.png

C concurrent conversations, each of K turns; a turn is `get_items()` then `add_items([user, assistant])`, what a
chat service does per message. Every store runs on fresh session ids, one after another at each concurrency,
in an order that rotates, so all see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from session_management.common import (
    CourseError,
    create_engine,
    create_session_tables,
    heading,
    lesson_parser,
    redact,
    resolve_database_url,
    run_lesson,
)

from .redis_stores import REDIS_STORES
from .stores import make_stores

USER = {"role": "user", "content": "What did we decide about the launch date? " * 3}
ASSISTANT = {"role": "assistant", "content": "We agreed on the second Tuesday of next month. " * 3}


@dataclass
class Result:
    store: str
    database: str
    concurrency: int
    turns: int
    turns_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    pool_size: int


class Progress:
    """A one-line progress bar on stderr (redrawn on a terminal, a line per 25% otherwise)."""

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
        elif int(fraction * 4) > self.last_quarter:
            self.last_quarter = int(fraction * 4)
            print(f"progress: {self.done}/{self.total} turns ({fraction:.0%}, "
                  f"{time.monotonic() - self.started:.0f} s)", file=sys.stderr, flush=True)


class _Silent(Progress):
    def __init__(self) -> None:
        super().__init__(1)

    def advance(self, label: str) -> None:
        pass


async def run_store(factory: Any, concurrency: int, turns: int, progress: Progress, label: str,
                    prefix: str) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0

    async def conversation(number: int) -> None:
        nonlocal errors
        store = factory(f"{prefix}-{number}")
        for _ in range(turns):
            started = time.perf_counter()
            try:
                await store.get_items()
                await store.add_items([USER, ASSISTANT])
                latencies.append(time.perf_counter() - started)
            except Exception as error:  # noqa: BLE001 - counted and reported, the run goes on
                errors += 1
                if errors <= 3:
                    print(f"\n{label}: {type(error).__name__}: {str(error)[:200]}", file=sys.stderr)
            progress.advance(label)
        if hasattr(store, "close"):
            store.close()

    started = time.perf_counter()
    await asyncio.gather(*(conversation(n) for n in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def benchmark(url: str, concurrencies: list[int], turns: int, pool_size: int, stores_wanted: list[str] | None,
                    progress: Progress, rotation: int, rounds: int = 1, pre_ping: bool = True,
                    redis: bool = False) -> list[Result]:
    engine = create_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=120, pool_pre_ping=pre_ping)
    results: list[Result] = []
    try:
        await create_session_tables(engine)
        stores, close = await make_stores(url, engine, pool_size, redis)
        try:
            names = [n for n in stores if stores_wanted is None or n in stores_wanted]
            for name in names:  # warm up: open every pool's connections, prepare statements, fill caches
                await run_store(stores[name], min(pool_size, max(concurrencies)), 1, _Silent(), name,
                                f"bench-warmup-{uuid.uuid4().hex[:8]}")
            for index, concurrency in enumerate(concurrencies):
                runs: dict[str, tuple[list[float], int, float]] = {name: ([], 0, 0.0) for name in names}
                for round_number in range(rounds):  # interleaved: every store once per round
                    shift = (index + rotation + round_number) % len(names)
                    for name in names[shift:] + names[:shift]:
                        prefix = f"bench-{uuid.uuid4().hex[:8]}-{name}"
                        label = f"{name} c={concurrency} {engine.dialect.name}"
                        latencies, errors, elapsed = await run_store(stores[name], concurrency, turns, progress,
                                                                     label, prefix)
                        total = runs[name]
                        runs[name] = (total[0] + latencies, total[1] + errors, total[2] + elapsed)
                for name, (latencies, errors, elapsed) in runs.items():
                    results.append(Result(
                        store=name, database="redis" if name in REDIS_STORES else engine.dialect.name,
                        concurrency=concurrency, turns=len(latencies),
                        turns_per_s=round(len(latencies) / elapsed, 1),
                        p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
                        p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
                        max_ms=round(max(latencies, default=float("nan")) * 1000, 1),
                        errors=errors, pool_size=pool_size,
                    ))
        finally:
            await close()
        async with engine.begin() as connection:  # leave the database as we found it
            await connection.execute(text("DELETE FROM agent_messages WHERE session_id LIKE 'bench-%'"))
            await connection.execute(text("DELETE FROM agent_sessions WHERE session_id LIKE 'bench-%'"))
    finally:
        await engine.dispose()
    return results


def print_table(results: list[Result]) -> None:
    header = f"{'database':<10} {'C':>5} {'pool':>4} {'store':<15} {'turns/s':>9} {'p50 ms':>8} {'p99 ms':>8} " \
             f"{'max ms':>8} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for r in sorted(results, key=lambda r: (r.database, r.concurrency, r.pool_size, -r.turns_per_s)):
        print(f"{r.database:<10} {r.concurrency:>5} {r.pool_size:>4} {r.store:<15} {r.turns_per_s:>9.0f} "
              f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} {r.errors:>6}")
    print()
    groups: dict[tuple[str, int, int], dict[str, Result]] = {}
    for r in results:
        groups.setdefault((r.database, r.concurrency, r.pool_size), {})[r.store] = r
    for (database, concurrency, pool), by_store in sorted(groups.items()):
        course = by_store.get("course_session")
        if course is None:
            continue
        ratios = [f"{course.turns_per_s / other.turns_per_s:.2f}x {name}"
                  for name, other in by_store.items() if name != "course_session" and other.turns_per_s]
        print(f"{database} C={concurrency} pool={pool}: course_session = " + ", ".join(ratios))


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, p99) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        series.setdefault((r.database, r.store, r.pool_size), []).append(r)
    pools = {r.pool_size for r in results}
    for (database, store, pool), rows in sorted(series.items()):
        rows.sort(key=lambda r: r.concurrency)
        label = f"{store} ({database}" + (f", pool {pool})" if len(pools) > 1 else ")")
        style = "-" if database == "postgresql" else "--" if database in ("mysql", "mariadb") else ":"
        throughput.plot([r.concurrency for r in rows], [r.turns_per_s for r in rows], style, marker="o", label=label)
        p99.plot([r.concurrency for r in rows], [r.p99_ms for r in rows], style, marker="o", label=label)
    for axis, title, unit in ((throughput, "throughput", "turns/s"), (p99, "p99 latency per turn", "ms")):
        axis.set_xscale("log")
        axis.set_xlabel("concurrent conversations")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    p99.set_yscale("log")
    throughput.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def int_list(values: list[str] | None, default: list[int]) -> list[int]:
    if not values:
        return default
    try:
        numbers = [int(part) for value in values for part in value.split(",") if part.strip()]
    except ValueError:
        raise CourseError(f"not a whole number in {values}", "use e.g. --concurrency 10,100,1000") from None
    if any(n <= 0 for n in numbers):
        raise CourseError("concurrency, turns and pool sizes must be positive", "use e.g. --concurrency 10,100")
    return numbers


async def main(args: argparse.Namespace) -> None:
    databases = args.database or ["sqlite"]
    urls = [resolve_database_url(d) for d in databases]
    concurrencies = int_list(args.concurrency, [1, 10])
    pools = int_list(args.pool_size, [20])
    unknown = set(args.store or []) - {"sdk_sqlalchemy", "course_session", "raw_driver", "sdk_sqlite", *REDIS_STORES}
    if unknown:
        raise CourseError(f"unknown store(s): {', '.join(sorted(unknown))}",
                          "choose from sdk_sqlalchemy, course_session, raw_driver, sdk_sqlite")
    if args.turns <= 0:
        raise CourseError("--turns must be positive", "use e.g. --turns 5")
    heading("Lesson 08: session stores under load")
    for url in urls:
        print(f"database: {redact(url)}")
    print(f"concurrency: {concurrencies}; turns per conversation: {args.turns}; pool size: {pools}; "
          f"rounds: {args.rounds}; pool_pre_ping: {not args.no_pre_ping}")
    all_stores = {"sdk_sqlalchemy", "course_session", "raw_driver"}
    store_counts = [len((all_stores | ({"sdk_sqlite"} if url.startswith("sqlite") else set()))
                        & set(args.store or ["sdk_sqlalchemy", "course_session", "raw_driver", "sdk_sqlite"]))
                    for url in urls]
    store_counts[0] += len(set(REDIS_STORES) & set(args.store or REDIS_STORES)) if args.redis else 0
    if args.rounds <= 0:
        raise CourseError("--rounds must be positive", "use e.g. --rounds 3")
    progress = Progress(sum(c * args.turns for c in concurrencies) * sum(store_counts) * len(pools) * args.rounds)
    results: list[Result] = []
    for rotation, url in enumerate(urls):
        for pool in pools:
            results += await benchmark(url, concurrencies, args.turns, pool, args.store, progress, rotation,
                                       args.rounds, not args.no_pre_ping, args.redis and rotation == 0)
    progress.total = progress.done
    print()
    print_table(results)
    if args.json:
        document = json.dumps({"results": [asdict(r) for r in results]}, indent=2) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, document)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(results, Path(args.plot))
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    parser = lesson_parser("Lesson 08: benchmark session stores", database=False)
    parser.add_argument("--database", action="append",
                        help="sqlite | postgres | mysql | URL; repeat for several (default: sqlite)")
    parser.add_argument("--concurrency", action="append", help="concurrent conversations: repeat or 10,100,1000")
    parser.add_argument("--turns", type=int, default=3, help="turns per conversation (default 3)")
    parser.add_argument("--pool-size", action="append", help="connection pool size(s) (default 20)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every measurement this many times, interleaved, and pool the numbers")
    parser.add_argument("--store", action="append",
                        help="only these stores: sdk_sqlalchemy, course_session, raw_driver, sdk_sqlite")
    parser.add_argument("--no-pre-ping", action="store_true",
                        help="create the engine without pool_pre_ping (the course's default is on)")
    parser.add_argument("--redis", action="store_true",
                        help="also benchmark lesson 09's Redis stores (throwaway redis-server processes)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--plot", help="draw throughput and p99 against concurrency into this PNG")
    run_lesson(main, parser.parse_args())
