"""What encryption costs: the same writes and reads with and without EncryptedSession.

    uv run python -m session_management.04_encrypted_session.benchmark [--database ...] [--turns 200]

Each store gets a fresh session; a "turn" adds a user and an assistant item (about 300 bytes of text each),
and after all turns the whole history is read 20 times. Stores run alternately, so machine noise hits both.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from agents.memory import Session
from cryptography.fernet import Fernet

from session_management.common import lesson_parser, note, open_database, redact, resolve_database_url, run_lesson

TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 5


async def measure(session: Session, turns: int, reads: int) -> tuple[float, float]:
    started = time.perf_counter()
    for turn in range(turns):
        await session.add_items([{"role": "user", "content": f"{turn} {TEXT}"},
                                 {"role": "assistant", "content": f"{turn} {TEXT}"}])
    add_ms = (time.perf_counter() - started) * 1000 / turns
    read_times = []
    for _ in range(reads):
        started = time.perf_counter()
        items = await session.get_items()
        read_times.append((time.perf_counter() - started) * 1000)
        assert len(items) == 2 * turns
    await session.clear_session()
    return add_ms, statistics.median(read_times)


async def main(args: argparse.Namespace) -> None:
    url = resolve_database_url(args.database)
    key = Fernet.generate_key().decode()
    print(f"database: {redact(url)}; {args.turns} turns, history read {args.reads} times, {args.rounds} rounds")
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "encrypted": []}
    async with open_database(url) as engine:
        for _ in range(args.rounds):
            for name in results:
                session_id = f"bench-{uuid.uuid4()}"
                plain = SQLAlchemySession(session_id, engine=engine)
                store: Session = plain if name == "plain" else EncryptedSession(session_id, plain, key)
                results[name].append(await measure(store, args.turns, args.reads))
    print(f"\n{'store':<10} {'add_items ms/turn':>18} {'get_items ms (' + str(2 * args.turns) + ' items)':>26}")
    medians = {}
    for name, runs in results.items():
        medians[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"{name:<10} {medians[name][0]:>18.2f} {medians[name][1]:>26.2f}")
    add_ratio = medians["encrypted"][0] / medians["plain"][0]
    get_ratio = medians["encrypted"][1] / medians["plain"][1]
    note(f"encryption costs x{add_ratio:.2f} on writes and x{get_ratio:.2f} on reads of the whole history")
    per_item_us = (medians["encrypted"][1] - medians["plain"][1]) * 1000 / (2 * args.turns)
    note(f"a read pays {per_item_us:.0f} µs per item to authenticate and decrypt")


if __name__ == "__main__":
    parser = lesson_parser("Lesson 04: the cost of EncryptedSession")
    parser.add_argument("--turns", type=int, default=200, help="turns per session (default 200)")
    parser.add_argument("--reads", type=int, default=20, help="full-history reads per session (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per store (default 3)")
    run_lesson(main, parser.parse_args())
