"""The benchmark's workload: C conversations of K turns on one store, timed, then read back and checked.

A turn is `get_items()` then `add_items([user, assistant])`, what a chat service does per message. Every message
is unique, so after the run a lost, doubled or reordered message shows when the conversation is read back.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import MetaData, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common.progress import Progress
from session_management.common.schema import session_tables

from .counting import CountingProxy, Counts
from .stores import StoreFactory, TurnStore

QUESTION = "What did we decide about the launch date? " * 3
ANSWER = "We agreed on the second Tuesday of next month. " * 3


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
            now = (await connection.execute(select(func.current_timestamp()))).scalar_one()
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


@dataclass
class Conversations:
    """One run's conversations on one store: what was written to each, and what may or may not have been."""

    factory: StoreFactory
    cell: Cell
    turns: int
    read_limit: int | None
    progress: Progress
    label: str
    think: Think
    run: Run = field(default_factory=lambda: Run([], 0, 0.0, 0, 0, 0, 0))
    written: dict[str, list[str]] = field(default_factory=dict)
    unsure: dict[str, set[str]] = field(default_factory=dict)

    async def prepare(self, session_id: str, prefill: Prefill | None) -> tuple[str, TurnStore]:
        store, items = self.factory(session_id), history_items(session_id, self.cell.history)
        if items:  # untimed: the SDK tables' conversation-shaped prefill, or a store's own bulk path
            own = getattr(store, "prefill", None)
            await (prefill(session_id, items) if prefill else own(items) if own else store.add_items(items))
        self.written[session_id], self.unsure[session_id] = [item["content"] for item in items], set()
        return session_id, store

    async def converse(self, session_id: str, store: TurnStore) -> None:
        if self.think.pause_s:
            await asyncio.sleep(random.Random(session_id).uniform(0, self.think.pause_s))
        for turn in range(self.turns):
            if turn and self.think.pause_s:
                await asyncio.sleep(self.think.pause_s)
            await self.one_turn(session_id, store, turn_items(session_id, turn))
            self.progress.advance(label=self.label)
        close_store(store)

    async def one_turn(self, session_id: str, store: TurnStore, items: list[dict[str, str]]) -> None:
        """The store's time for a turn: its read and its write, not the model's time between them."""
        started = time.perf_counter()
        try:
            await store.get_items(self.read_limit)
            read_s = time.perf_counter() - started
            if self.think.model_s:
                await asyncio.sleep(self.think.model_s)
            started = time.perf_counter()
            await store.add_items(items)
            self.run.latencies.append(read_s + time.perf_counter() - started)
            self.written[session_id] += [item["content"] for item in items]
        except Exception as error:  # noqa: BLE001 - counted and reported, the run goes on
            self.run.errors += 1
            self.unsure[session_id].update(item["content"] for item in items)
            if self.run.errors <= 3:
                print(f"\n{self.label}: {type(error).__name__}: {str(error)[:200]}", file=sys.stderr)

    async def verify(self, session_id: str) -> None:
        reader = self.factory(session_id)
        found = [item["content"] for item in await reader.get_items()]
        close_store(reader)
        lost, duplicated, misordered = compare(self.written[session_id], found, self.unsure[session_id])
        self.run.checked += len(found)
        self.run.lost += lost
        self.run.duplicated += duplicated
        self.run.misordered += misordered

    async def clear(self, session_id: str) -> None:
        store = self.factory(session_id)
        await store.clear_session()
        close_store(store)


async def run_store(factory: StoreFactory, cell: Cell, turns: int, limit: int, progress: Progress, label: str,
                    prefix: str, think: Think = Think(), proxy: CountingProxy | None = None,
                    prefill: Prefill | None = None) -> Run:
    """C conversations at once, each `history` items long before it starts, then K timed turns; afterwards every
    conversation is read back (untimed) and compared with what was written.

    A turn's latency is the store's time (its read and its write), not the model's or the user's. With *think*,
    each conversation starts at a random moment within one pause (so they do not arrive in lockstep), waits
    `model_s` between read and write and `pause_s` before its next turn."""
    chats = Conversations(factory, cell, turns, limit if cell.read == "limit" else None, progress, label, think)
    run = chats.run
    conversations = await asyncio.gather(*(chats.prepare(f"{prefix}-{n}", prefill) for n in range(cell.concurrency)))
    # The proxy runs in a thread of its own: with it, the client's CPU is this thread's; without, the process's
    # (SQLite's driver works in a thread of its own).
    cpu_clock = time.thread_time if proxy else time.process_time
    counted, cpu, started = proxy.snapshot() if proxy else None, cpu_clock(), time.perf_counter()
    await asyncio.gather(*(chats.converse(session_id, store) for session_id, store in conversations))
    run.elapsed, run.cpu_s = time.perf_counter() - started, cpu_clock() - cpu
    if proxy and counted:
        run.counts = proxy.snapshot() - counted
    await asyncio.gather(*(chats.verify(session_id) for session_id, _ in conversations))
    # Every run starts from the same tables: a store whose reads scan more than one conversation (LangChain's
    # table has no index on session_id) would otherwise pay for the runs before it.
    await asyncio.gather(*(chats.clear(session_id) for session_id, _ in conversations))
    return run
