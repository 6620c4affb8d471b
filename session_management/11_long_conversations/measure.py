"""What a long history costs per turn: the read, the items and tokens sent, the whole turn.

    uv run python -m session_management.11_long_conversations.measure                   # SQLite, up to 1,000
    uv run python -m session_management.11_long_conversations.measure --database sqlite --database postgres \\
        --database mysql --sizes 10,100,1000,10000 --json .data/lesson11.json --plot .data/lesson11.png

For each history length N it stores N items (alternating user and assistant messages of a realistic length) in a
fresh session, then measures, as medians of several repetitions:

* ``get_items()`` of the whole history, and ``get_items(limit=LIMIT)``, in milliseconds;
* the items and estimated tokens a turn sends the model (history + the new message; one token per 4 characters);
* one whole turn, ``Runner.run`` with the offline model (read, prepare the input, answer, write), in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents import Agent, Runner, TResponseInputItem, set_tracing_disabled
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import (
    CourseError,
    OfflineModel,
    heading,
    lesson_parser,
    open_database,
    redact,
    resolve_database_url,
    run_lesson,
)
from session_management.common.plots import log_log, new_figure, save
from session_management.common.tables import Column
from session_management.common.tables import print_table as table
from session_management.stores.summarizing_session import item_tokens

LIMIT = 20
QUESTION = "Can you remind me what we decided about the venue, the budget and who is bringing the projector? "
ANSWER = ("We settled on the community hall on Elm Street, a budget of 1,200 euros including catering, and Sam "
          "said he would bring the projector and a spare HDMI cable. The open question is the date for the "
          "rehearsal, which we wanted to fix once the speakers confirm. ")


@dataclass
class Row:
    database: str
    items: int
    get_all_ms: float
    get_limited_ms: float
    items_sent: int
    tokens_sent: int
    turn_ms: float


def history(count: int) -> list[TResponseInputItem]:
    return [{"role": "user", "content": f"{QUESTION}({n})"} if n % 2 == 0 else
            {"role": "assistant", "content": f"{ANSWER}({n})"} for n in range(count)]


async def timed(call: Callable[[], Awaitable[object]], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


async def measure_one(engine: AsyncEngine, count: int, repeats: int) -> Row:
    session = SQLAlchemySession(f"measure-{uuid.uuid4().hex[:12]}", engine=engine)
    try:
        items = history(count)
        for start in range(0, count, 1000):  # in batches: one statement per 1,000 rows
            await session.add_items(items[start:start + 1000])
        await session.get_items()  # warm up the connection and statement caches
        get_all = await timed(session.get_items, repeats)
        get_limited = await timed(lambda: session.get_items(limit=LIMIT), repeats)
        new_message = {"role": "user", "content": "What is my name?"}
        tokens = sum(map(item_tokens, items)) + item_tokens(new_message)
        agent = Agent(name="Assistant", model=OfflineModel())

        turns = []
        for attempt in range(max(1, repeats // 2) + 1):
            started = time.perf_counter()
            await Runner.run(agent, "What is my name?", session=session)
            if attempt:  # the first run warms up the Runner
                turns.append((time.perf_counter() - started) * 1000)
            await session.pop_item()  # keep the length at N: take back the answer and the question
            await session.pop_item()
        turn = round(statistics.median(turns), 1)
        return Row(engine.dialect.name, count, get_all, get_limited, count + 1, tokens, turn)
    finally:
        await session.clear_session()


async def measure(url: str, sizes: list[int], repeats: int) -> list[Row]:
    async with open_database(url) as engine:
        return [await measure_one(engine, size, repeats) for size in sizes]


def print_table(rows: list[Row]) -> None:
    columns = [Column("database", 11, align="<"), Column("items", 6), Column("get_items ms", 12, ".2f"),
               Column(f"limit={LIMIT} ms", 12, ".2f"), Column("items sent", 10), Column("tokens sent", 11),
               Column("turn ms", 8, ".1f")]
    table(columns, [(r.database, r.items, r.get_all_ms, r.get_limited_ms, r.items_sent, r.tokens_sent, r.turn_ms)
                    for r in rows])


def plot(rows: list[Row], path: Path) -> None:
    figure, ((reads, tokens),) = new_figure(1, 2, (12, 4.5))
    draw_times(reads, rows)
    draw_tokens(tokens, rows)
    for axis, title, unit in ((reads, "time per turn", "ms"), (tokens, "estimated tokens sent per turn", "tokens")):
        log_log(axis, title=title, x="items in the session", y=unit)
        axis.legend(fontsize=7)
    save(figure, path, dpi=110)


def draw_times(axis: Any, rows: list[Row]) -> None:
    """Per database: the whole turn, a full read and a limited read, against the history's length."""
    colours = {"sqlite": "tab:green", "postgresql": "tab:blue", "mysql": "tab:orange", "mariadb": "tab:orange"}
    for database in sorted({r.database for r in rows}):
        series = sorted((r for r in rows if r.database == database), key=lambda r: r.items)
        sizes, colour = [r.items for r in series], colours.get(database, "tab:gray")
        axis.plot(sizes, [r.turn_ms for r in series], "--o", color=colour, label=f"whole turn ({database})")
        axis.plot(sizes, [r.get_all_ms for r in series], "-o", color=colour, label=f"get_items() ({database})")
        axis.plot(sizes, [r.get_limited_ms for r in series], ":o", color=colour,
                  label=f"get_items(limit={LIMIT}) ({database})")


def draw_tokens(axis: Any, rows: list[Row]) -> None:
    """The tokens a turn sends: the whole history, against only the newest LIMIT items."""
    first = sorted((r for r in rows if r.database == rows[0].database), key=lambda r: r.items)
    axis.plot([r.items for r in first], [r.tokens_sent for r in first], "-o", label="whole history")
    limited = [item_tokens(item) for item in history(LIMIT)]
    axis.plot([r.items for r in first], [sum(limited[: min(r.items, LIMIT)]) for r in first], ":o",
              label=f"the newest {LIMIT} items only (limit={LIMIT})")


def sizes_from(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CourseError(f"--sizes {text!r} is not a list of whole numbers", "use e.g. --sizes 10,100,1000") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise CourseError("history sizes must be positive", "use e.g. --sizes 10,100,1000")
    return sizes


async def main(args: argparse.Namespace) -> None:
    sizes = sizes_from(args.sizes)
    if args.repeats <= 0:
        raise CourseError("--repeats must be positive", "use e.g. --repeats 5")
    urls = [resolve_database_url(name) for name in (args.database or ["sqlite"])]
    set_tracing_disabled(True)  # the offline model answers; nothing to upload
    heading("Lesson 11: what a long history costs per turn")
    rows: list[Row] = []
    for url in urls:
        print(f"database: {redact(url)}", flush=True)
        rows += await measure(url, sizes, args.repeats)
    print()
    print_table(rows)
    if args.json:
        document = json.dumps({"limit": LIMIT, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(Path(args.json).write_text, document)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(rows, Path(args.plot))
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    parser = lesson_parser("Lesson 11: measure what a long history costs per turn", database=False)
    parser.add_argument("--database", action="append",
                        help="sqlite | postgres | mysql | URL; repeat for several (default: sqlite)")
    parser.add_argument("--sizes", default="10,100,1000", help="history lengths, e.g. 10,100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions per measurement (median)")
    parser.add_argument("--json", help="write the rows to this JSON file (e.g. .data/lesson11.json)")
    parser.add_argument("--plot", help="draw the plot into this PNG (e.g. .data/lesson11.png)")
    run_lesson(main, parser.parse_args())
