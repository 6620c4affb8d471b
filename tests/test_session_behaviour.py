"""The contract suite: the SDK's `Session` behaviour (as openai-agents 0.24.0's SQLAlchemySession implements it),
held against every store in ``tests/stores.py``, on every backend the store names.

The SDK's class runs every case too: it is the control. A case it fails is a documented SDK bug (strict xfail,
so an upstream fix makes the suite say so). Cases use the ``Session`` protocol, the store's ``write_raw`` (to
corrupt a history as another tool would) and, where a store declares it, the compaction snapshot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from agents import Agent, Runner
from agents.memory import Session, SessionSettings
from agents.memory.openai_responses_compaction_session import OpenAIResponsesCompactionSession
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import OfflineModel
from tests.stores import SDK_SQL_STORES, STORES, Settings, Store

Make = Callable[..., Session]
PAIRS = [(name, backend) for name, store in sorted(STORES.items()) for backend in store.backends]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every case runs once per (store, backend) pair; ``compaction_snapshot`` cases only where declared."""
    if "store_name" not in metafunc.fixturenames:
        return
    pairs = PAIRS
    if metafunc.definition.get_closest_marker("compaction_snapshot"):
        pairs = [(name, backend) for name, backend in PAIRS if STORES[name].compaction_snapshot]
    metafunc.parametrize(("store_name", "backend"), pairs, ids=[f"{n}-{b}" for n, b in pairs])


def msg(text: str, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": text}


def contents(items: list[Any]) -> list[str]:
    return [item["content"] for item in items]


@pytest.fixture
def store(store_name: str) -> Store:
    return STORES[store_name]


@pytest.fixture
async def handle(store: Store, database_url: str) -> AsyncIterator[Any]:
    async with store.connect(database_url) as opened:
        yield opened


@pytest.fixture
def make(store: Store, handle: Any) -> Make:
    def session(session_id: str, settings: Settings = None) -> Session:
        return store.session(handle, session_id, settings)

    return session


def no_connection_left_out(handle: Any) -> None:
    if isinstance(handle, AsyncEngine):
        assert handle.pool.checkedout() == 0, "a connection was not given back to the pool"


# -- order and limits ------------------------------------------------------------------------------------------
async def test_order_is_insertion_order_even_within_one_millisecond(make: Make) -> None:
    session = make("order")
    await session.add_items([msg(f"item {i}") for i in range(50)])  # one call: every row gets the same timestamp
    for i in range(50, 60):  # separate calls, microseconds apart
        await session.add_items([msg(f"item {i}")])
    assert contents(await session.get_items()) == [f"item {i}" for i in range(60)]


async def test_limit_returns_the_latest_n_in_order(make: Make) -> None:
    session = make("limit")
    await session.add_items([msg(f"m{i}") for i in range(10)])
    assert contents(await session.get_items(limit=3)) == ["m7", "m8", "m9"]
    assert len(await session.get_items(limit=100)) == 10
    assert await session.get_items(limit=0) == []
    assert await make("nobody").get_items(limit=3) == []


@pytest.mark.parametrize("settings", [SessionSettings(limit=2), {"limit": 2}], ids=["object", "dict"])
async def test_session_settings_limit_as_object_or_dict(make: Make, settings: Settings) -> None:
    session = make("settings", settings)
    assert isinstance(session.session_settings, SessionSettings)  # a dict is normalised, as the SDK does
    assert session.session_settings.limit == 2
    await session.add_items([msg(f"m{i}") for i in range(5)])
    assert contents(await session.get_items()) == ["m3", "m4"]
    assert contents(await session.get_items(limit=4)) == ["m1", "m2", "m3", "m4"]  # explicit limit wins
    assert contents(await make("settings").get_items()) == [f"m{i}" for i in range(5)]


async def test_unknown_session_setting_is_refused_when_the_session_is_built(make: Make) -> None:
    with pytest.raises(TypeError, match="limt"):
        make("typo", {"limt": 2})


async def test_runner_accepts_settings_given_as_a_dict(make: Make) -> None:
    session = make("runner", {"limit": 2})
    agent = Agent(name="Assistant", model=OfflineModel())
    await Runner.run(agent, "My name is Ada.", session=session)
    await Runner.run(agent, "What is my name?", session=session)
    assert len(await make("runner").get_items()) == 4


# -- corrupt rows ------------------------------------------------------------------------------------------------
VALID = [msg("u1"), msg("a1", "assistant"), msg("u2"), msg("a2", "assistant")]


async def corrupt_history(make: Make, store: Store, handle: Any, session_id: str, position: int) -> Session:
    """VALID with one stored row that is not JSON at *position* (0 = oldest, len(VALID) = newest)."""
    session = make(session_id)
    if position:
        await session.add_items(VALID[:position])
    await store.write_raw(handle, session_id, '{"role": "user", "content": "trunc')
    if VALID[position:]:
        await session.add_items(VALID[position:])
    return session


@pytest.mark.parametrize("position", range(len(VALID) + 1))
async def test_corrupt_row_is_skipped_by_reads_and_limits(make: Make, store: Store, handle: Any,
                                                          position: int) -> None:
    session = await corrupt_history(make, store, handle, "corrupt", position)
    assert await session.get_items() == VALID
    for n in range(1, len(VALID) + 2):  # limits count valid items: the newest n valid ones
        assert await session.get_items(limit=n) == VALID[-n:], f"limit={n}"
    assert await make("corrupt", {"limit": 2}).get_items() == VALID[-2:]


@pytest.mark.parametrize("position", range(len(VALID) + 1))
async def test_pop_skips_and_removes_corrupt_rows(make: Make, store: Store, handle: Any, position: int) -> None:
    session = await corrupt_history(make, store, handle, "corrupt", position)
    popped = [await session.pop_item() for _ in VALID]
    assert popped == VALID[::-1]  # never None while valid items remain
    assert await session.pop_item() is None
    assert await session.get_items() == []
    await session.add_items([msg("fresh")])  # the corrupt row is gone, not waiting to reappear
    assert await session.get_items() == [msg("fresh")]


async def test_many_corrupt_rows_on_top(make: Make, store: Store, handle: Any) -> None:
    session = make("buried")
    await session.add_items(VALID)
    for n in range(5):  # more bad rows than any first window
        await store.write_raw(handle, "buried", f"not json {n}")
    assert await session.get_items(limit=1) == VALID[-1:]
    assert await session.get_items(limit=3) == VALID[-3:]
    assert await session.pop_item() == VALID[-1]
    assert await session.get_items() == VALID[:-1]


# -- pop and clear -----------------------------------------------------------------------------------------------
async def test_pop_item_returns_and_removes_the_newest(make: Make) -> None:
    assert await make("never-written").pop_item() is None
    session = make("pop")
    await session.add_items([msg("first"), msg("second", "assistant"), msg("third")])
    assert await session.pop_item() == msg("third")
    assert await session.pop_item() == msg("second", "assistant")
    assert await session.get_items() == [msg("first")]
    assert await session.pop_item() == msg("first")
    assert await session.pop_item() is None


async def test_clear_session_empties_only_that_session(make: Make) -> None:
    await make("never-written").clear_session()  # not an error
    mine, yours = make("mine"), make("yours")
    await mine.add_items([msg("a"), msg("b")])
    await yours.add_items([msg("c")])
    await mine.clear_session()
    assert await mine.get_items() == []
    assert await mine.pop_item() is None
    assert await yours.get_items() == [msg("c")]
    await mine.add_items([msg("again")])  # a cleared session can be used again
    assert await mine.get_items() == [msg("again")]


async def test_session_ids_are_isolated(make: Make) -> None:
    ids = ["user-1", "user-2", "User-1", "user-1 ", "user-1%", "user_1", "ユーザー"]
    for session_id in ids:
        await make(session_id).add_items([msg(f"I am {session_id!r}")])
    for session_id in ids:
        assert await make(session_id).get_items() == [msg(f"I am {session_id!r}")]


async def test_history_survives_a_new_connection(make: Make, store: Store, database_url: str) -> None:
    await make("durable").add_items([msg("remember me"), msg("ok", "assistant")])
    async with store.connect(database_url) as fresh:
        assert await store.session(fresh, "durable", None).get_items() == [msg("remember me"), msg("ok", "assistant")]


# -- concurrency ---------------------------------------------------------------------------------------------
async def test_concurrent_pops_never_hand_out_an_item_twice(make: Make) -> None:
    await make("pops").add_items([msg(f"item {n}") for n in range(20)])
    outcomes = await asyncio.gather(*(make("pops").pop_item() for _ in range(30)))
    popped = [item["content"] for item in outcomes if item is not None]
    assert sorted(popped) == sorted(f"item {n}" for n in range(20)), "an item was lost or handed out twice"
    assert outcomes.count(None) == 10
    assert await make("pops").get_items() == []


async def concurrent_writers(make: Make, session_id: str, writers: int = 30, per_writer: int = 3) -> None:
    """*writers* tasks, each with its own session object, each adding *per_writer* two-item batches."""

    async def writer(number: int) -> None:
        session = make(session_id)  # a separate object per writer, as separate requests would have
        for step in range(per_writer):
            await session.add_items([msg(f"w{number}-s{step}-a"), msg(f"w{number}-s{step}-b", "assistant")])

    await asyncio.gather(*(writer(n) for n in range(writers)))
    stored = [c for c in contents(await make(session_id).get_items()) if c.startswith("w")]
    assert len(stored) == writers * per_writer * 2
    assert len(set(stored)) == len(stored), "an item was stored twice"
    for number in range(writers):
        own = [c for c in stored if c.startswith(f"w{number}-")]
        assert own == [f"w{number}-s{s}-{part}" for s in range(per_writer) for part in ("a", "b")], number
    for index in range(0, len(stored), 2):  # a batch is never split by another writer's batch
        assert stored[index][:-2] == stored[index + 1][:-2]


async def test_concurrent_writers_lose_nothing_and_keep_each_writers_order(make: Make) -> None:
    await make("shared").add_items([msg("the conversation starts")])
    await concurrent_writers(make, "shared")


async def test_concurrent_first_writes_to_a_new_session(make: Make, backend: str, store_name: str,
                                                        request: pytest.FixtureRequest) -> None:
    """Writers racing to create the same new session.

    The SDK's SQLAlchemySession fails this on MySQL/MariaDB: the racing INSERTs of the session row deadlock in
    InnoDB (error 1213) and add_items raises OperationalError. Strict xfail: if upstream fixes it, this test
    fails and tells us to update lesson 02's note.
    """
    # The summarizing wrapper writes through the SDK's store, so it inherits the deadlock.
    known_deadlock = store_name in SDK_SQL_STORES and backend == "mysql"
    if known_deadlock:
        request.applymarker(pytest.mark.xfail(strict=True, reason="SDK: InnoDB deadlock on concurrent first writes"))
    # A deadlock is a race, so the known case races five fresh sessions: the strict xfail then fails only if
    # none of them deadlocks, never because one run was lucky.
    for attempt in range(5 if known_deadlock else 1):
        await concurrent_writers(make, f"brand-new-{attempt}", writers=100 if backend == "mysql" else 30)


# -- content ---------------------------------------------------------------------------------------------------
async def test_large_items_unicode_and_emoji_round_trip(make: Make) -> None:
    session = make("big")
    large = msg("é" * (1024 * 1024))  # 1 MB of text, 2 MB as JSON escapes
    fancy = msg("naïve café 👩‍💻🚀 漢字 עברית \u0000 \\ \" '")
    nested = {"type": "function_call_output", "call_id": "c1", "output": json.dumps({"ok": [1, 2.5, None]})}
    await session.add_items([large, fancy, nested])
    assert await session.get_items() == [large, fancy, nested]


async def test_one_add_of_a_thousand_and_one_items_keeps_their_order(make: Make) -> None:
    """More rows than one statement may carry on some databases (SQLite before 3.32: 999 parameters)."""
    session = make("many")
    items = [msg(f"item {n}") for n in range(1001)]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=3) == items[-3:]


async def test_non_json_item_is_refused_and_history_unchanged(make: Make) -> None:
    session = make("strict")
    await session.add_items([msg("before")])
    with pytest.raises(TypeError, match="not JSON serializable"):
        await session.add_items([msg("fine"), {"role": "user", "content": object()}])  # type: ignore[list-item]
    assert await session.get_items() == [msg("before")]


# -- cancellation --------------------------------------------------------------------------------------------
BASE = [msg("a"), msg("b", "assistant")]
OPERATIONS: dict[str, tuple[Callable[[Session], Awaitable[Any]], Any, list[dict[str, str]]]] = {
    # name: (the call, what it returns, the history once it has landed)
    "add_items": (lambda s: s.add_items([msg("x")]), None, [*BASE, msg("x")]),
    "pop_item": (lambda s: s.pop_item(), BASE[-1], BASE[:1]),
    "clear_session": (lambda s: s.clear_session(), None, []),
    "get_items": (lambda s: s.get_items(), BASE, BASE),
}


def cancel_points() -> list[int]:
    """Event-loop steps after which to cancel: each of the first 16, then 50% more each time."""
    points, step = list(range(17)), 16.0
    while step < 50000:
        step *= 1.5
        points.append(int(step))
    return points


async def read_after_cancel(make: Make, store_name: str, database_url: str) -> list[Any]:
    """The victim's history, read by a new session object right after a cancellation.

    An SDK bug on SQLite, seen now and then: cancel the SDK store's ``add_items`` mid-transaction and SQLAlchemy
    discards that connection while aiosqlite's thread still holds its write lock; the next call's new connection
    runs the SDK's ``PRAGMA journal_mode = WAL``, which fails with "database is locked", and the lock has outlasted
    a 2 s retry in CI. For the stores built on the SDK's, on SQLite, the case then ends as an xfail naming that
    bug (it passes whenever the bug does not show); every other store, and every other error, must not happen.
    """
    sdk_on_sqlite = store_name in SDK_SQL_STORES and database_url.startswith("sqlite")
    deadline = asyncio.get_running_loop().time() + 2
    while True:
        try:
            return await make("victim").get_items()
        except OperationalError as error:
            if not sdk_on_sqlite or "database is locked" not in str(error):
                raise
            if asyncio.get_running_loop().time() > deadline:
                pytest.xfail("SDK: a cancelled add_items on SQLite leaves the database locked (lesson 02 README)")
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_cancellation_at_every_step(make: Make, handle: Any, operation: str, store_name: str,
                                          database_url: str, request: pytest.FixtureRequest) -> None:
    """Real cancellation (``Task.cancel``) after 0, 1, 2, ... event-loop steps, until the call finishes first;
    once, or (every other step) twice, the second while the first is being handled.

    The SDK's rule: a write that has started runs to its end, then `CancelledError` is raised, so a cancelled
    caller knows it landed; nothing is half-written; no connection is left checked out or mid-transaction
    (the next call on *another* session sharing the handle works).

    The SDK's RedisSession breaks that rule for ``add_items``: cancelled between its WATCH and EXEC it abandons
    the append, so nothing lands although the call had started (strict xfail; the course's Redis stores keep it).
    """
    if store_name == "sdk_redis" and operation == "add_items":
        request.applymarker(pytest.mark.xfail(strict=True, reason="SDK: RedisSession abandons a started append"))
    call, returns, landed = OPERATIONS[operation]
    session = make("victim")
    await session.add_items(BASE)
    for number, steps in enumerate(cancel_points()):
        task = asyncio.ensure_future(call(session))
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            assert await task == returns  # finished before the cancel: every step before it has been tried
            break
        task.cancel()
        if number % 2:
            await asyncio.sleep(0)
            task.cancel()
        try:
            await task
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        history = await read_after_cancel(make, store_name, database_url)
        if steps == 0:  # cancelled before it started: nothing happened
            assert cancelled and history == BASE
        elif cancelled:
            assert history == landed, f"cancelled after {steps} steps: the started {operation} did not land"
        no_connection_left_out(handle)
        assert await make("bystander").pop_item() is None  # a write on the same handle (pool) still works
        if history != BASE:
            await session.clear_session()
            await session.add_items(BASE)
    else:
        pytest.fail(f"{operation} did not finish within {steps} event-loop steps")


# -- run_sync ------------------------------------------------------------------------------------------------
def test_runner_run_sync_twice(store: Store, database_url: str) -> None:
    """`Runner.run_sync` drives the session on the thread's default loop, which it keeps between calls."""

    def conversation() -> tuple[str, int]:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        connection = store.connect(database_url)
        try:
            handle = loop.run_until_complete(connection.__aenter__())
            try:
                session = store.session(handle, "sync", None)
                agent = Agent(name="Assistant", model=OfflineModel())
                Runner.run_sync(agent, "My name is Ada.", session=session)
                answer = Runner.run_sync(agent, "What is my name?", session=session).final_output
                return str(answer), len(loop.run_until_complete(session.get_items()))
            finally:
                loop.run_until_complete(connection.__aexit__(None, None, None))
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    with ThreadPoolExecutor(1) as thread:  # a thread of its own: a fresh default loop, as in a script
        answer, stored = thread.submit(conversation).result()
    assert "Ada" in answer
    assert stored == 4


# -- compaction --------------------------------------------------------------------------------------------------
class FakeResponses:
    """Stands in for the OpenAI API's ``responses.compact`` (the model, not the database, is faked)."""

    def __init__(self, output: list[dict[str, Any]]) -> None:
        self.output = output
        self.calls: list[dict[str, Any]] = []

    async def compact(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return type("Compacted", (), {"output": self.output, "usage": None})()


SUMMARY = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "summary of u1..a2"}]}


async def test_manual_compaction_replaces_the_history(make: Make) -> None:
    session = make("compact")
    await session.add_items(VALID)
    responses = FakeResponses([SUMMARY])
    client = type("Client", (), {"responses": responses})()
    compacting = OpenAIResponsesCompactionSession("compact", session, client=client)  # type: ignore[arg-type]
    await compacting.run_compaction({"force": True, "compaction_mode": "input"})
    assert len(responses.calls) == 1 and responses.calls[0]["input"]
    assert await make("compact").get_items() == [SUMMARY]
    await compacting.add_items([msg("after")])
    assert await make("compact").get_items() == [SUMMARY, msg("after")]


@pytest.mark.compaction_snapshot
async def test_compaction_snapshot_replaces_the_tail_atomically(make: Make) -> None:
    """The hook `OpenAIResponsesCompactionSession` uses for automatic compaction (SDK-private protocol)."""
    session: Any = make("tail")
    await session.add_items(VALID)
    everything = await session._get_compaction_snapshot(10)
    assert everything.items == VALID and everything.complete
    tail = await session._get_compaction_snapshot(3)
    assert tail.items == VALID[1:] and not tail.complete
    assert await tail.replace_suffix(1, [SUMMARY]) is True  # replace u2, a2
    assert await make("tail").get_items() == [*VALID[:2], SUMMARY]
    await session.add_items([msg("later")])  # a later append sorts after the summary
    assert await make("tail").get_items() == [*VALID[:2], SUMMARY, msg("later")]

    stale = await session._get_compaction_snapshot(2)
    await make("tail").add_items([msg("racing write")])
    assert await stale.replace_suffix(0, [SUMMARY]) is False  # the tail changed: nothing replaced
    assert await make("tail").get_items() == [*VALID[:2], SUMMARY, msg("later"), msg("racing write")]
