"""The benchmark's report on the terminal: one table of rates and latencies, the course's store against the
others, what a turn cost on the wire, and how each store's rate changes with the history's length."""

from __future__ import annotations

from typing import Any

from session_management.common.tables import Column
from session_management.common.tables import print_table as table

from .benchmark import Result
from .peers import PEERS
from .redis_stores import REDIS_STORES
from .stores import STORES

# Results measured under the same conditions: database, concurrency, history, read, pool size, model s, pause s.
Group = tuple[str, int, int, str, int, float, float]


def store_rank(store: str) -> tuple[int, str]:
    """Rows in one fixed order, the stores' order of registration (stores.py, peers, Redis), never by speed: which
    store is fastest changes from run to run, and a table that reorders itself would show a ranking the next run
    may not reproduce. Stores of older runs (``raw_driver`` in results.json) come last."""
    order = [*STORES, *PEERS, *REDIS_STORES]
    return (order.index(store), "") if store in order else (len(order), store)


def think_label(r: Result) -> str:
    return f"{r.model_s:g}/{r.pause_s:g}"


def order(r: Result) -> tuple[Any, ...]:
    return r.database, r.history, r.read, r.concurrency, r.pool_size, r.model_s, r.pause_s


class Columns:
    """The optional columns: a pool column only when --pool-size varies it, a think column only when --think does."""

    def __init__(self, results: list[Result]) -> None:
        self.pools = len({r.pool_size for r in results}) > 1
        self.thinks = len({think_label(r) for r in results}) > 1

    def tag(self, r: Result) -> str:
        return (f" pool={r.pool_size}" if self.pools else "") + (f" think={think_label(r)}" if self.thinks else "")


def print_table(results: list[Result]) -> None:
    columns = Columns(results)
    print_rates(results, columns)
    print()
    groups: dict[Group, dict[str, Result]] = {}
    for r in results:
        groups.setdefault((r.database, r.concurrency, r.history, r.read, r.pool_size, r.model_s, r.pause_s),
                          {})[r.store] = r
    print_ratios(groups, columns)
    print_costs(results, groups, columns.pools)
    print_growth(results, columns)


def print_rates(results: list[Result], columns: Columns) -> None:
    table([Column("database", 10, align="<"), Column("C", 5), Column("hist", 5), Column("read", 5, align="<"),
           Column("store", 15, align="<"), *([Column("pool", 4)] if columns.pools else []),
           *([Column("think s", 7)] if columns.thinks else []), Column("turns/s", 8, ".0f"),
           Column("rounds (min-max)", 17), Column("p50 ms", 8, ".1f"), Column("p99 ms", 8, ".1f"),
           Column("max ms", 8, ".1f"), Column("err", 4), Column("lost", 4), Column("dup", 4)],
          [(r.database, r.concurrency, r.history, r.read, r.store, *([r.pool_size] if columns.pools else []),
            *([think_label(r)] if columns.thinks else []), r.turns_per_s,
            f"{r.rounds} ({min(r.turns_per_s_rounds):.0f}-{max(r.turns_per_s_rounds):.0f})", r.p50_ms, r.p99_ms,
            r.max_ms, r.errors, r.lost, r.duplicated + r.misordered)
           for r in sorted(results, key=lambda r: (*order(r), store_rank(r.store)))])


def print_ratios(groups: dict[Group, dict[str, Result]], columns: Columns) -> None:
    """`course_session`'s rate against every other store's, measured under the same conditions."""
    for (database, concurrency, history, read, *_), by_store in sorted(groups.items()):
        course = by_store.get("course_session")
        if course is None or len(by_store) < 2:
            continue
        ratios = [f"{course.turns_per_s / other.turns_per_s:.2f}x {name}"
                  for name, other in sorted(by_store.items(), key=lambda pair: store_rank(pair[0]))
                  if name != "course_session" and other.turns_per_s]
        print(f"{database} C={concurrency} history={history} {read}{columns.tag(course)}: course_session = "
              + ", ".join(ratios))


def print_growth(results: list[Result], columns: Columns) -> None:
    """Each store's rate at the shortest and the longest history measured."""
    growth: dict[tuple[str, str, str, int, float, float], list[Result]] = {}
    for r in results:
        growth.setdefault((r.database, r.store, r.read, r.pool_size, r.model_s, r.pause_s), []).append(r)
    lines = []
    for (database, store, read, *_), rows in sorted(growth.items()):
        rows = sorted((r for r in rows if r.history), key=lambda r: r.history)
        if len(rows) >= 2:
            first, last = rows[0], rows[-1]
            lines.append(f"{database} {store} {read}{columns.tag(first)}: {first.turns_per_s:.0f} turns/s at history "
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
    print("\nper turn (round trips, statements, bytes: counted on the wire; CPU: the client process's):")
    table([Column("database", 10, align="<"), Column("C", 5), Column("hist", 5), Column("read", 5, align="<"),
           Column("think s", 7), Column("store", 15, align="<"), Column("round trips", 11, ".2f"),
           Column("statements", 10, ".2f"), Column("bytes", 7, ".0f"), Column("new conns", 9, "d"),
           Column("client CPU µs", 13, ".0f")],
          [(r.database, r.concurrency, r.history, r.read, think_label(r), r.store, r.round_trips_per_turn,
            r.statements_per_turn, r.bytes_per_turn, r.connections_opened, r.client_cpu_us_per_turn)
           for r in sorted(counted, key=lambda r: (*order(r), store_rank(r.store)))])
    print()
    for key, by_store in sorted(groups.items()):
        course, floor = by_store.get("course_session"), by_store.get("floor")
        if course is None or floor is None or course.client_cpu_us_per_turn is None:
            continue
        database, concurrency, history, read = key[:4]
        pool = f" pool={course.pool_size}" if several_pools else ""
        print(f"{database} C={concurrency} history={history} {read} think={think_label(course)}{pool}: "
              f"course_session against the floor: " + ", ".join(against_the_floor(course, floor)))


def against_the_floor(course: Result, floor: Result) -> list[str]:
    """`course_session`'s round trips, client CPU and rate as multiples of the floor's."""
    parts = []
    if course.round_trips_per_turn is not None and floor.round_trips_per_turn:
        ratio = course.round_trips_per_turn / floor.round_trips_per_turn
        parts.append(f"{course.round_trips_per_turn:.2f} round trips ({ratio:.2f}x)")
    if floor.client_cpu_us_per_turn and course.client_cpu_us_per_turn is not None:
        parts.append(f"{course.client_cpu_us_per_turn:.0f} µs client CPU "
                     f"({course.client_cpu_us_per_turn / floor.client_cpu_us_per_turn:.2f}x)")
    if floor.turns_per_s:
        parts.append(f"{course.turns_per_s / floor.turns_per_s:.2f}x turns/s")
    return parts
