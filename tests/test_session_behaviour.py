"""What every session store must guarantee, on every backend.

Parametrized over the backends (the ``engine`` fixture) and over the stores in ``tests/stores.py``; a store
joins every case by adding one entry there. Cases use only the SDK's ``Session`` protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from agents.memory import Session
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_engine, create_session_tables
from tests.stores import STORES


def msg(text: str, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": text}


@pytest.fixture(params=sorted(STORES))
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(engine: AsyncEngine, store_name: str) -> Callable[[str], Session]:
    await create_session_tables(engine)
    store = STORES[store_name]
    return lambda session_id: store.session(engine, session_id, None)


async def test_order_is_insertion_order_even_within_one_millisecond(make: Callable[[str], Session]) -> None:
    session = make("order")
    batch = [msg(f"item {i}") for i in range(50)]  # one call: every row gets the same timestamp
    await session.add_items(batch)
    for i in range(50, 60):  # separate calls, microseconds apart
        await session.add_items([msg(f"item {i}")])
    assert [item["content"] for item in await session.get_items()] == [f"item {i}" for i in range(60)]


async def test_limit_returns_the_latest_n_in_order(make: Callable[[str], Session]) -> None:
    session = make("limit")
    await session.add_items([msg(f"m{i}") for i in range(10)])
    assert [item["content"] for item in await session.get_items(limit=3)] == ["m7", "m8", "m9"]
    assert len(await session.get_items(limit=100)) == 10
    assert await session.get_items(limit=0) == []


async def test_pop_item_returns_and_removes_the_newest(make: Callable[[str], Session]) -> None:
    session = make("pop")
    await session.add_items([msg("first"), msg("second", "assistant"), msg("third")])
    assert await session.pop_item() == msg("third")
    assert await session.pop_item() == msg("second", "assistant")
    assert await session.get_items() == [msg("first")]
    assert await session.pop_item() == msg("first")
    assert await session.pop_item() is None


async def test_clear_session_empties_only_that_session(make: Callable[[str], Session]) -> None:
    mine, yours = make("mine"), make("yours")
    await mine.add_items([msg("a"), msg("b")])
    await yours.add_items([msg("c")])
    await mine.clear_session()
    assert await mine.get_items() == []
    assert await yours.get_items() == [msg("c")]
    await mine.add_items([msg("again")])  # a cleared session can be used again
    assert await mine.get_items() == [msg("again")]


async def test_session_ids_are_isolated(make: Callable[[str], Session]) -> None:
    ids = ["user-1", "user-2", "User-1", "user-1 ", "user-1%", "user_1", "ユーザー"]
    for session_id in ids:
        await make(session_id).add_items([msg(f"I am {session_id!r}")])
    for session_id in ids:
        assert await make(session_id).get_items() == [msg(f"I am {session_id!r}")]


async def test_history_survives_a_new_engine(make: Callable[[str], Session], database_url: str,
                                             store_name: str) -> None:
    await make("durable").add_items([msg("remember me"), msg("ok", "assistant")])
    fresh_engine = create_engine(database_url)
    try:
        reopened = STORES[store_name].session(fresh_engine, "durable", None)
        assert await reopened.get_items() == [msg("remember me"), msg("ok", "assistant")]
    finally:
        await fresh_engine.dispose()


async def concurrent_writers(make: Callable[[str], Session], session_id: str, writers: int = 100,
                             per_writer: int = 3) -> None:
    """*writers* tasks, each with its own session object, each adding *per_writer* two-item batches."""

    async def writer(number: int) -> None:
        session = make(session_id)  # a separate object per writer, as separate requests would have
        for step in range(per_writer):
            await session.add_items([msg(f"w{number}-s{step}-a"), msg(f"w{number}-s{step}-b", "assistant")])

    await asyncio.gather(*(writer(n) for n in range(writers)))
    contents = [item["content"] for item in await make(session_id).get_items()]
    contents = [c for c in contents if c.startswith("w")]
    assert len(contents) == writers * per_writer * 2
    assert len(set(contents)) == len(contents), "an item was stored twice"
    for number in range(writers):
        own = [c for c in contents if c.startswith(f"w{number}-")]
        expected = [f"w{number}-s{s}-{part}" for s in range(per_writer) for part in ("a", "b")]
        assert own == expected, f"writer {number}'s items are out of order"
    for index in range(0, len(contents), 2):  # a batch is never split by another writer's batch
        assert contents[index][:-2] == contents[index + 1][:-2]


async def test_concurrent_writers_lose_nothing_and_keep_each_writers_order(
    make: Callable[[str], Session],
) -> None:
    """100 concurrent writers to one conversation that already exists (the usual case in a service)."""
    await make("shared").add_items([msg("the conversation starts")])
    await concurrent_writers(make, "shared")


async def test_concurrent_first_writes_to_a_new_session(
    make: Callable[[str], Session], backend: str, store_name: str, request: pytest.FixtureRequest
) -> None:
    """100 writers racing to create the same new session.

    The SDK's SQLAlchemySession fails this on MySQL/MariaDB: the racing INSERTs of the session row deadlock in
    InnoDB (error 1213) and add_items raises OperationalError. Strict xfail: if upstream fixes it, this test
    fails and tells us to update lesson 02's note.
    """
    known_deadlock = store_name == "sdk_sqlalchemy" and backend == "mysql"
    if known_deadlock:
        request.applymarker(pytest.mark.xfail(strict=True, reason="SDK: InnoDB deadlock on concurrent first writes"))
    # A deadlock is a race, so the known case races five fresh sessions: the strict xfail then fails only if
    # none of them deadlocks, never because one run was lucky.
    for attempt in range(5 if known_deadlock else 1):
        await concurrent_writers(make, f"brand-new-{attempt}")


async def test_large_items_unicode_and_emoji_round_trip(make: Callable[[str], Session]) -> None:
    session = make("big")
    large = msg("é" * (1024 * 1024))  # 1 MB of text, 2 MB as JSON escapes
    fancy = msg("naïve café 👩‍💻🚀 漢字 עברית \u0000 \\ \" '")
    nested = {"type": "function_call_output", "call_id": "c1", "output": json.dumps({"ok": [1, 2.5, None]})}
    await session.add_items([large, fancy, nested])
    assert await session.get_items() == [large, fancy, nested]


async def test_non_json_item_is_refused_and_history_unchanged(make: Callable[[str], Session]) -> None:
    session = make("strict")
    await session.add_items([msg("before")])
    with pytest.raises(TypeError, match="not JSON serializable"):
        await session.add_items([msg("fine"), {"role": "user", "content": object()}])  # type: ignore[list-item]
    assert await session.get_items() == [msg("before")]
