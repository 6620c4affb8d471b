"""What one `SQLAlchemySession` per request costs, and the cheapest correct way not to pay it.

    uv run python -m session_management.09_scaling.per_request [--database sqlite|postgres|mysql|URL] [--requests N]

A web service builds a session object per request (lesson 06: `SQLAlchemySession(conversation_id, engine=...)`).
Building one creates its own `MetaData` and `Table` objects, and SQLAlchemy caches a compiled statement per
statement *shape*, where the shape includes the table objects: so every new session object compiles its SQL
again on its first turn. This measures, per request (one turn: `get_items()` then `add_items([user, assistant])`,
on a conversation the request has not seen before):

* `new object`: `SQLAlchemySession(...)` per request, as lesson 06 does;
* `template copy`: one `SQLAlchemySession` built at start-up, and per request a shallow copy of it with the
  request's `session_id` (`sdk_session_factory` below): the same class, tables and engine, so compiled
  statements are found in the cache;

counting the statements SQLAlchemy compiled (cache misses) and measuring the client's CPU time per request.
"""

from __future__ import annotations

import argparse
import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.extensions.memory import SQLAlchemySession
from sqlalchemy import event
from sqlalchemy.engine.default import CACHE_MISS
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import heading, lesson_parser, note, open_database, run_lesson, step


def sdk_session_factory(engine: AsyncEngine, **options: Any) -> Callable[[str], SQLAlchemySession]:
    """`SQLAlchemySession` objects for any conversation, sharing one object's tables: build once, copy per request.

    Correct because everything a `SQLAlchemySession` holds besides `session_id` is the same for every
    conversation on one engine (the engine, the table objects, the session maker, the settings) and is not changed
    by its methods; `tests/lessons/test_lesson_09.py` holds copies to the SDK's behaviour on every backend.
    """
    template = SQLAlchemySession("template", engine=engine, **options)

    def session(session_id: str) -> SQLAlchemySession:
        made = copy.copy(template)
        made.session_id = session_id
        return made

    return session


@dataclass
class Cost:
    name: str
    requests: int
    compiles: int  # statements SQLAlchemy compiled, over all requests
    build_us: float  # client CPU to build the session object, per request
    turn_us: float  # client CPU for the turn itself, per request


def count_compiles(engine: AsyncEngine) -> list[int]:
    """A list that grows by one for each statement SQLAlchemy compiles instead of taking from its cache."""
    misses: list[int] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def compiled(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if context is not None and getattr(context, "cache_hit", None) is CACHE_MISS:
            misses.append(1)

    return misses


async def measure(name: str, make: Callable[[str], SQLAlchemySession], requests: int, misses: list[int]) -> Cost:
    await one_request(make, f"per-request-warm-{uuid.uuid4().hex[:8]}")  # connect, create the template's cache
    compiles, build, turn = 0, 0.0, 0.0
    for _ in range(requests):
        session_id = f"per-request-{uuid.uuid4().hex[:12]}"
        before, started = len(misses), time.process_time()
        session = make(session_id)
        built = time.process_time()
        await session.get_items()
        await session.add_items([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}])
        build, turn = build + built - started, turn + time.process_time() - built
        compiles += len(misses) - before
        await session.clear_session()  # untimed and uncounted: the next request starts from the same tables
    return Cost(name, requests, compiles, build / requests * 1e6, turn / requests * 1e6)


async def one_request(make: Callable[[str], SQLAlchemySession], session_id: str) -> None:
    session = make(session_id)
    await session.get_items()
    await session.add_items([{"role": "user", "content": "warm"}, {"role": "assistant", "content": "up"}])
    await session.clear_session()


async def main(args: argparse.Namespace) -> None:
    heading("Lesson 09: the cost of one SQLAlchemySession per request")
    async with open_database(args.database, create_tables=True) as engine:
        misses = count_compiles(engine)
        step(f"{args.requests} requests, each a turn on a new conversation")
        costs = [await measure("new object", lambda sid: SQLAlchemySession(sid, engine=engine), args.requests,
                               misses),
                 await measure("template copy", sdk_session_factory(engine), args.requests, misses)]
        print(f"    {'':<14} {'compiled statements':>20} {'build µs CPU':>13} {'turn µs CPU':>12}")
        for cost in costs:
            print(f"    {cost.name:<14} {cost.compiles / cost.requests:>13.1f} / req {cost.build_us:>13.0f} "
                  f"{cost.turn_us:>12.0f}")
        note("Counts are exact; CPU times vary with the machine. The difference is the per-request cost.")


if __name__ == "__main__":
    parser = lesson_parser("Lesson 09: what one SQLAlchemySession per request costs")
    parser.add_argument("--requests", type=int, default=200, help="requests to measure (default 200)")
    run_lesson(main, parser.parse_args())
