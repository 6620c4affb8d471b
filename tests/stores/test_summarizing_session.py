"""SummarizingSession on every database and over the SDK's, the course's and the encrypted store.

A 1,000-turn conversation (written in add_items batches: the point is the budget, not 1,000 model calls) stays
within its budget with the newest turns intact and its tool pairs whole; an early fact still reaches the offline
model through the summary; and a fault at the worst moment of a summary loses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner
from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from agents.memory import Session, SessionSettings
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import CourseError, OfflineModel, create_session_tables
from session_management.stores.course_session import CourseSession
from session_management.stores.summarizing_session import (
    ModelSummarizer,
    SummarizingSession,
    is_summary,
    item_tokens,
    safe_cut,
    summary_covers,
    summary_item,
)
from tests.support.backends import sqlite_engine as sqlite_engine_at

KEY = "a test secret, not a real key"
BUDGET = 40


class ProtocolOnly:
    """A store with nothing but the Session protocol, as a third-party store (or RedisSession) has: no atomic
    replace, so SummarizingSession must take its journaled path."""

    def __init__(self, inner: Session) -> None:
        self.inner, self.session_id = inner, inner.session_id

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await self.inner.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        await self.inner.add_items(items)

    async def pop_item(self) -> Any:
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        await self.inner.clear_session()


def course_store(engine: AsyncEngine, session_id: str) -> Session:
    return CourseSession(session_id, engine=engine)


def sdk_store(engine: AsyncEngine, session_id: str) -> Session:
    return SQLAlchemySession(session_id, engine=engine)


def encrypted_store(engine: AsyncEngine, session_id: str) -> Session:
    return EncryptedSession(session_id, SQLAlchemySession(session_id, engine=engine), KEY)


def protocol_only_store(engine: AsyncEngine, session_id: str) -> Session:
    return ProtocolOnly(CourseSession(session_id, engine=engine))  # type: ignore[return-value]


STORES: dict[str, Callable[[AsyncEngine, str], Session]] = {
    "sdk_sqlalchemy": sdk_store,
    "course_session": course_store,
    "encrypted_sqlalchemy": encrypted_store,
    "protocol_only": protocol_only_store,
}


async def atomic(store: Session) -> bool:
    """Whether *store* offers the SDK's atomic replacement (then SummarizingSession uses it)."""
    reader = getattr(store, "_get_compaction_snapshot", None)
    return reader is not None and await reader(1) is not None


def summarizing(engine: AsyncEngine, store: str, session_id: str, **options: Any) -> SummarizingSession:
    make = STORES[store]
    settings: dict[str, Any] = {"max_items": BUDGET, **options}
    return SummarizingSession(make(engine, session_id), summarizer=ModelSummarizer(OfflineModel()),
                              archive=make(engine, f"{session_id}:archive"),
                              journal=make(engine, f"{session_id}:journal"), **settings)


def turn(number: int) -> list[Any]:
    """One turn; every third calls a tool, so cuts have call/result pairs to split."""
    user = {"role": "user", "content": f"question {number}"}
    answer = {"role": "assistant", "content": f"answer {number}"}
    if number % 3:
        return [user, answer]
    call_id = f"call_{number}"
    return [user, {"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": f'{{"n": {number}}}'},
            {"type": "function_call_output", "call_id": call_id, "output": f"result {number}"}, answer]


def orphans(items: list[Any]) -> set[str]:
    calls = {i["call_id"] for i in items if i.get("type") == "function_call"}
    return {i["call_id"] for i in items if i.get("type") == "function_call_output"} - calls


def raw(items: list[Any]) -> list[Any]:
    return [item for item in items if not is_summary(item)]


@pytest.mark.parametrize("store", ["sdk_sqlalchemy", "course_session", "encrypted_sqlalchemy"])
async def test_a_thousand_turns_stay_within_budget_and_remember_the_first(engine: AsyncEngine, store: str) -> None:
    await create_session_tables(engine)
    session = summarizing(engine, store, "long")
    written = [{"role": "user", "content": "My name is Ada and my favourite colour is teal."},
               {"role": "assistant", "content": "Nice to meet you, Ada!"}]
    await session.add_items(written)
    for batch in range(10):  # 1,000 turns, 100 per add_items call
        items = [item for number in range(batch * 100, batch * 100 + 100) for item in turn(number)]
        await session.add_items(items)
        written += items
        stored = await session.get_items()
        assert len(stored) <= BUDGET
        assert orphans(stored) == set(), "a tool result lost its call"
        assert stored[-12:] == written[-12:], "the newest turns must be stored verbatim"
    assert is_summary(stored[0]) and not any(is_summary(item) for item in stored[1:])
    assert len(session.compactions) >= 10
    expected = await atomic(STORES[store](engine, "long"))
    assert all(c.atomic == expected for c in session.compactions)
    assert expected or store in ("course_session", "protocol_only")
    # Lossless: the archive plus what is still stored is every item ever written, in order, once.
    archived = await session.archive.get_items()  # type: ignore[union-attr]
    assert archived + raw(stored) == written
    agent = Agent(name="Assistant", model=OfflineModel())
    result = await Runner.run(agent, "What is my favourite colour?", session=session)
    assert result.final_output == "Your favourite colour is teal."
    assert len(await session.get_items()) <= BUDGET


async def test_without_the_summary_the_early_fact_is_gone(engine: AsyncEngine) -> None:
    """The control for the test above: a plain limit keeps the newest items and forgets the name."""
    await create_session_tables(engine)
    session = SQLAlchemySession("limited", engine=engine)
    await session.add_items([{"role": "user", "content": "My name is Ada."}])
    await session.add_items([item for number in range(100) for item in turn(number)])
    agent = Agent(name="Assistant", model=OfflineModel())
    result = await Runner.run(agent, "What is my name?", session=session,
                              run_config=RunConfig(session_settings=SessionSettings(limit=BUDGET)))
    assert result.final_output == "I don't know your name yet: you haven't told me."


def arm_fault_on_delete(engine: AsyncEngine, action: Callable[[], None]) -> Callable[[], None]:
    """Run *action* when the summary transaction deletes the old rows (after it inserted the summary)."""
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM AGENT_MESSAGES"):
            action()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return lambda: event.remove(engine.sync_engine, "before_cursor_execute", before)


class FaultyStore:
    """A store that fails at one point of the journaled rewrite: before clearing, or after it (before re-adding)."""

    def __init__(self, inner: Session, point: str, action: Callable[[], None]) -> None:
        self.inner, self.point, self.action = inner, point, action
        self.session_id, self.cleared = inner.session_id, False

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await self.inner.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        if self.point == "after_clear" and self.cleared:
            self.action()
            await asyncio.sleep(0)  # a cancellation lands here
        await self.inner.add_items(items)

    async def pop_item(self) -> Any:
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        if self.point == "before_clear":
            self.action()
            await asyncio.sleep(0)
        await self.inner.clear_session()
        self.cleared = True


@pytest.mark.parametrize("how", ["exception", "cancellation"])
@pytest.mark.parametrize("store", sorted(STORES))
async def test_a_fault_between_summary_and_deletion_loses_nothing(engine: AsyncEngine, store: str,
                                                                  how: str) -> None:
    await create_session_tables(engine)
    written = [item for number in range(30) for item in turn(number)]
    quiet = summarizing(engine, store, "crash", max_items=1000)  # no summary yet
    await quiet.add_items(written)
    task: asyncio.Task[Any] | None = None

    def fault() -> None:
        if how == "exception":
            raise RuntimeError("injected fault")
        assert task is not None
        task.cancel()

    session = summarizing(engine, store, "crash")
    points = ["delete"] if await atomic(session.underlying) else ["before_clear", "after_clear"]
    for point in points:
        if point == "delete":
            disarm = arm_fault_on_delete(engine, fault)
        else:
            session.underlying = FaultyStore(session.underlying, point, fault)  # type: ignore[assignment]
            disarm = lambda: None  # noqa: E731
        task = asyncio.ensure_future(session.compact(force=True))
        with pytest.raises((RuntimeError, asyncio.CancelledError)):
            await task
        disarm()
        # A restarted process: new objects on the same rows.
        after = summarizing(engine, store, "crash")
        stored = await after.get_items()
        archived = await after.archive.get_items()  # type: ignore[union-attr]
        # The SDK finishes a started transaction before a cancellation lands; an exception rolls it back. The
        # journaled rewrite rolls forward from the journal, before the clear as after it.
        carried_through = (how == "cancellation") if point == "delete" else True
        if carried_through:
            assert is_summary(stored[0]), stored[:2]
            assert archived + raw(stored) == written
        else:
            assert stored == written  # untouched (the archive may already hold a copy of the old part)
        assert orphans(stored) == set()
        assert len(archived) == len(set(map(str, archived))), "archived twice"
        session = summarizing(engine, store, "crash")
    # After the faults, summarising works and is still lossless.
    final = summarizing(engine, store, "crash")
    await final.compact(force=True)
    stored = await final.get_items()
    assert is_summary(stored[0]) and len(stored) <= BUDGET
    assert await final.archive.get_items() + raw(stored) == written  # type: ignore[union-attr]


def test_cuts_start_at_a_user_message_and_keep_tool_pairs() -> None:
    items = [item for number in range(4) for item in turn(number)]  # 0 has a tool; 1, 2 do not; 3 has one
    # index 0 user, 1 call, 2 output, 3 answer, 4 user(1) ...; a cut at 2 would orphan the output.
    assert safe_cut(items, 2) == 4
    assert safe_cut(items, 7) == 8  # turn 3 (a tool turn) starts at 8
    assert safe_cut(items, 9) is None  # no user message after 9: no safe cut at all


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with sqlite_engine_at(tmp_path / "one.db") as engine:
        yield engine


async def test_a_token_budget(sqlite_engine: AsyncEngine) -> None:
    engine = sqlite_engine
    session = SummarizingSession(SQLAlchemySession("tokens", engine=engine), max_tokens=400,
                                 summarizer=ModelSummarizer(OfflineModel()))
    await session.add_items([{"role": "user", "content": "I live in Lisbon."}])
    for batch in range(20):
        await session.add_items([item for number in range(batch * 10, batch * 10 + 10) for item in turn(number)])
        assert sum(map(item_tokens, await session.get_items())) <= 400
    result = await Runner.run(Agent(name="A", model=OfflineModel()), "Where do I live?", session=session)
    assert result.final_output == "You live in Lisbon."


def test_session_settings_are_settable_and_the_underlying_stores(sqlite_engine: AsyncEngine) -> None:
    """The SDK's Session protocol declares session_settings a settable attribute (EncryptedSession's is too)."""
    underlying = SQLAlchemySession("settings", engine=sqlite_engine)
    session = SummarizingSession(underlying, max_items=10)
    session.session_settings = SessionSettings(limit=2)
    assert underlying.session_settings is not None and underlying.session_settings.limit == 2
    assert session.session_settings is underlying.session_settings


async def test_a_store_without_atomic_replace_needs_a_journal(sqlite_engine: AsyncEngine) -> None:
    engine = sqlite_engine
    session = SummarizingSession(protocol_only_store(engine, "no-journal"), max_items=4,
                                 summarizer=ModelSummarizer(OfflineModel()))
    with pytest.raises(CourseError, match="journal="):
        await session.add_items([item for number in range(3) for item in turn(number)])
    assert len(await session.get_items()) == 8  # the write itself landed; nothing was removed


@pytest.mark.parametrize("store", ["sdk_sqlalchemy", "encrypted_sqlalchemy"])
async def test_racing_summarizers_lose_nothing(engine: AsyncEngine, store: str) -> None:
    """Two wrappers (two workers) write and summarise one conversation at once: the atomic replace refuses a
    stale summary, so every item is either still stored or archived."""
    await create_session_tables(engine)
    first, second = summarizing(engine, store, "race"), summarizing(engine, store, "race")
    await first.add_items(turn(0))
    written: list[Any] = list(turn(0))
    for round_number in range(4):
        a = [item for n in range(100 * round_number + 1, 100 * round_number + 8) for item in turn(n)]
        b = [item for n in range(100 * round_number + 50, 100 * round_number + 57) for item in turn(n)]
        await asyncio.gather(first.add_items(a), second.add_items(b))
        written += a + b
    stored = await first.get_items()
    archived = await first.archive.get_items()  # type: ignore[union-attr]
    kept = {json_key(item) for item in archived + raw(stored)}
    assert {json_key(item) for item in written} <= kept, "an item is neither stored nor archived"
    assert orphans(stored) == set()
    await first.add_items(turn(999))  # the next write brings it back within budget
    assert len(await first.get_items()) <= BUDGET


def json_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


async def test_a_failing_summarizer_does_not_fail_the_write(sqlite_engine: AsyncEngine) -> None:
    """A model outage while summarising: the turn's items are stored, nothing is removed, a later write retries."""
    calls = 0

    async def flaky(items: list[Any]) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("model unreachable")
        return "my name is Ada"

    session = SummarizingSession(SQLAlchemySession("flaky", engine=sqlite_engine), max_items=6, summarizer=flaky)
    written = [item for number in range(1, 5) for item in turn(number)]
    await session.add_items(written)
    assert isinstance(session.last_error, ConnectionError)
    assert await session.get_items() == written
    await session.add_items(turn(5))
    stored = await session.get_items()
    assert is_summary(stored[0]) and len(stored) <= 6 and calls == 2


def test_the_offline_model_writes_a_summary_it_can_read_back() -> None:
    """Rule 5 of the offline model: summaries carry facts (likes included) forward, and questions state none."""
    from session_management.common.offline_model import answer, read_conversation

    said = read_conversation([{"role": "user", "content": "My name is Ada and I like chess. I live in Lisbon."},
                              {"role": "user", "content": "Is it late? My cat is Tom."},
                              {"role": "user", "content": "Summarize the conversation."}])
    summary = answer(said)
    assert summary == "The user told me: my name is Ada; I live in Lisbon; I like chess."
    later = read_conversation([summary_item(summary), {"role": "user", "content": "What do you know about me?"}])
    assert answer(later).startswith("Here is what I know: your name is Ada; you live in Lisbon; you like chess.")
    nothing = read_conversation([{"role": "user", "content": "Summarise this, please."}])
    assert answer(nothing) == "The user has not told me any facts yet."


async def test_a_repeated_exchange_is_archived_every_time(sqlite_engine: AsyncEngine) -> None:
    """The archive knows what it holds by position, not by text: the same "Thanks!" / "You're welcome." said
    twenty times is archived twenty times (identity by content archived it once and dropped the rest)."""
    thanks = [{"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You're welcome."}]
    archive = SQLAlchemySession("thanks:archive", engine=sqlite_engine)
    session = SummarizingSession(SQLAlchemySession("thanks", engine=sqlite_engine), max_items=4,
                                 summarizer=ModelSummarizer(OfflineModel()), archive=archive)
    for _ in range(20):
        await session.add_items(list(thanks))  # type: ignore[arg-type]
    stored = await session.get_items()
    archived = await archive.get_items()
    assert len(session.compactions) >= 5
    assert archived + raw(stored) == thanks * 20
    assert summary_covers(stored[0]) == len(archived)


async def test_an_encrypted_journal_must_not_forget_sooner_than_the_store(sqlite_engine: AsyncEngine) -> None:
    """With EncryptedSession's default ttl=600, a journal read after a 10-minute outage is empty and the rewrite
    it held is lost: SummarizingSession refuses such a journal (or archive) up front."""
    def encrypted(session_id: str, ttl: int) -> EncryptedSession:
        return EncryptedSession(session_id, SQLAlchemySession(session_id, engine=sqlite_engine), KEY, ttl=ttl)

    month = 30 * 24 * 3600
    with pytest.raises(CourseError, match="journal's ttl \\(600 s\\) is shorter than the store's"):
        SummarizingSession(encrypted("s", month), max_items=10, journal=encrypted("s:journal", 600))
    with pytest.raises(CourseError, match="archive's ttl"):
        SummarizingSession(SQLAlchemySession("p", engine=sqlite_engine), max_items=10, archive=encrypted("a", month))
    SummarizingSession(encrypted("s", month), max_items=10, journal=encrypted("s:journal", month))  # accepted


async def test_a_journal_a_crash_left_half_written_is_dropped(sqlite_engine: AsyncEngine) -> None:
    """The journal's header counts its items: a journal with fewer (its write, or its final clear, was cut
    short) says nothing about the store, which is left as it is (the journal is only trusted whole)."""
    from session_management.stores.summarizing_session import _journal_header

    history = [item for number in range(4) for item in turn(number)]
    store, journal = protocol_only_store(sqlite_engine, "half"), protocol_only_store(sqlite_engine, "half:journal")
    await store.add_items(history)
    await journal.add_items([_journal_header(5), summary_item("facts", 8), *history[-2:]])  # 3 of the 5 items
    session = SummarizingSession(store, max_items=100, journal=journal, summarizer=ModelSummarizer(OfflineModel()))
    assert await session.get_items() == history
    assert await journal.get_items() == []
