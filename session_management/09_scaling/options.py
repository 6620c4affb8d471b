"""The benchmark's command line: its options, checked, turned into the plans it runs on each database."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from session_management.common import CourseError, lesson_parser, resolve_database_url

from .benchmark import Plan, applies
from .peers import PEERS, require
from .redis_stores import REDIS_STORES
from .stores import STORES
from .workload import Cell, Think


@dataclass
class Options:
    urls: list[str]
    concurrencies: list[int]
    histories: list[int]
    pools: list[int]
    thinks: list[Think]
    stores: list[str]
    peer_rounds: int
    cells: list[Cell]
    plans: list[Plan]

    def turns_to_run(self) -> int:
        """Every measured turn of the whole run (the progress bar's total)."""
        return sum(cell.concurrency * plan.turns * plan.rounds_for(name)
                   for url in self.urls for plan in self.plans for cell in self.cells for name in self.stores
                   if applies(name, url, url == self.urls[0]))


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


def chosen_stores(args: argparse.Namespace) -> list[str]:
    """--store, else the SDK's and the course's stores (and the peers, the Redis stores when asked for)."""
    wanted = list(dict.fromkeys(args.store or [*STORES, *(PEERS if args.peers else []),
                                               *(REDIS_STORES if args.redis else [])]))
    unknown = set(wanted) - set(STORES) - set(PEERS) - set(REDIS_STORES)
    if unknown:
        raise CourseError(f"unknown store(s): {', '.join(sorted(unknown))}",
                          f"choose from {', '.join([*STORES, *PEERS, *REDIS_STORES])}")
    for name in wanted:
        if name in PEERS:
            require(name)
    return wanted


def read_options(args: argparse.Namespace) -> Options:
    """The options checked (one clear line for a mistake), and the plans: one per pool size and pacing."""
    urls = [resolve_database_url(d) for d in args.database or ["sqlite"]]
    concurrencies = int_list(args.concurrency, [1, 10])
    histories = int_list(args.history, [], zero=True)
    pools = int_list(args.pool_size, [20])
    thinks = think_list(args.think)
    wanted = chosen_stores(args)
    for name, value in (("--turns", args.turns), ("--rounds", args.rounds), ("--limit", args.limit),
                        ("--history-concurrency", args.history_concurrency)):
        if value <= 0:
            raise CourseError(f"{name} must be positive", f"use e.g. {name} 3")
    peer_rounds = args.peer_rounds or args.rounds
    if peer_rounds <= 0:
        raise CourseError("--peer-rounds must be positive", "use e.g. --peer-rounds 1")
    cells = [Cell(c) for c in concurrencies]
    cells += [Cell(args.history_concurrency, n, read) for n in histories for read in ("full", "limit")]
    plans = [Plan(cells, args.turns, args.limit, args.rounds, peer_rounds, wanted, pool, args.ping, think,
                  not args.no_count) for pool in pools for think in thinks]
    return Options(urls, concurrencies, histories, pools, thinks, wanted, peer_rounds, cells, plans)


def build_parser() -> argparse.ArgumentParser:
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
    return parser
