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

This file is the story; the pieces: `options.py` (the command line, checked), `workload.py` (one measured run of
C conversations), `benchmark.py` (every store on one database), `durability.py` (refusing a server that does not
make commits durable), `report.py` (the tables) and `plot.py` (the PNG).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from session_management.common import CourseError, heading, open_database, redact, run_lesson
from session_management.common.progress import Progress

from .benchmark import Result, applies, benchmark
from .durability import check_servers
from .options import Options, build_parser, read_options
from .plot import plot
from .report import print_table


def describe(args: argparse.Namespace, options: Options) -> None:
    heading("Lesson 09: session stores under load")
    for url in options.urls:
        print(f"database: {redact(url)}")
    print(f"concurrency: {options.concurrencies}; turns per conversation: {args.turns}; pool size: {options.pools}; "
          f"rounds: {args.rounds} (peers: {options.peer_rounds}); ping: {args.ping}")
    print("think (model s / user pause s): " + ", ".join(f"{t.model_s:g}/{t.pause_s:g}" for t in options.thinks)
          + ("; round trips, statements and bytes not counted (--no-count)" if args.no_count else ""))
    if options.histories:
        print(f"history: {options.histories} items before the turns, at C={args.history_concurrency}, full reads "
              f"and reads of the last {args.limit}")


async def check_databases(options: Options, allow_non_durable: bool) -> dict[str, dict[str, Any]]:
    """Before any benchmark: one clear line for a database that is down, refuses us, lacks rights, or is not
    durable."""
    for url in options.urls:
        async with open_database(url):
            pass
    return await check_servers(options.urls, allow_non_durable)


async def run_benchmarks(options: Options) -> list[Result]:
    """Every plan on every database, one after another; the Redis stores once, with the first database."""
    # A bar on a terminal; elsewhere (a CI log) a line per 5% of the turns.
    progress = Progress(options.turns_to_run(), unit=" turns", log_lines=20)
    results: list[Result] = []
    try:
        for rotation, url in enumerate(options.urls):
            for plan in options.plans:
                stores = [name for name in plan.stores if applies(name, url, rotation == 0)]
                if stores:
                    results += await benchmark(url, replace(plan, stores=stores), progress, rotation)
    finally:
        progress.close()
    return results


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("openai-agents", "sqlalchemy", "asyncpg", "aiomysql", "langchain-community", "google-adk",
                 "llama-index-storage-chat-store-postgres"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


async def write_json(path: str, args: argparse.Namespace, options: Options, servers: dict[str, dict[str, Any]],
                     results: list[Result], started: float) -> None:
    command = " ".join(redact(part) if "://" in part else part for part in sys.argv[1:])  # no passwords
    document = {"run": {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "cpus": os.cpu_count(), "seconds": round(time.monotonic() - started),
                        "ping": args.ping, "think": [asdict(t) for t in options.thinks],
                        "counted": not args.no_count, "versions": package_versions()},
                "servers": servers, "results": [asdict(r) for r in results]}
    await asyncio.to_thread(Path(path).write_text, json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {path}")


def refuse_lost_messages(results: list[Result]) -> None:
    broken = [r for r in results if r.lost or r.duplicated or r.misordered]
    if broken:
        raise CourseError("messages were lost, duplicated or reordered: " + ", ".join(
            f"{r.store} on {r.database} (C={r.concurrency}: {r.lost} lost, {r.duplicated} duplicated, "
            f"{r.misordered} conversations out of order)" for r in broken), "see the table above")


async def main(args: argparse.Namespace) -> None:
    options = read_options(args)
    describe(args, options)
    servers = await check_databases(options, args.allow_non_durable)
    started = time.monotonic()
    results = await run_benchmarks(options)
    print(f"\n({time.monotonic() - started:.0f} s)")
    print_table(results)
    if args.json:
        await write_json(args.json, args, options, servers, results, started)
    if args.plot:
        plot(results, Path(args.plot))
        print(f"wrote {args.plot}")
    refuse_lost_messages(results)


if __name__ == "__main__":
    run_lesson(main, build_parser().parse_args())
