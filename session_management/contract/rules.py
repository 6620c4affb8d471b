"""The rules a session store keeps, each an async function of a `Subject` that raises AssertionError if broken.

They use only the SDK's `Session` protocol (`get_items`, `add_items`, `pop_item`, `clear_session`,
`session_settings`), plus, for the corrupt-row rules, a way to store one raw row (`Subject.write_raw`). Every
rule gets a fresh, empty store. The behaviour is openai-agents 0.24.0's `SQLAlchemySession`'s; where that class
has a known bug, the course's tests say so, and a rule here still states what a correct store does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agents import Agent, Runner, TResponseInputItem
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message

Settings = SessionSettings | dict[str, Any] | None
Make = Callable[..., Session]  # make(session_id, settings=None) -> a new Session object on the same store


@dataclass
class Subject:
    """What a rule gets: a way to make sessions on one fresh store, and optional extras."""

    make: Make
    write_raw: Callable[[str, str], Awaitable[None]] | None = None  # store one row whose stored form is the text
    # Read a session after a cancellation (a test may retry a known, documented SDK lock here).
    read_after_cancel: Callable[[Session], Awaitable[list[Any]]] | None = None
    # Called after each cancellation, e.g. to check that no pooled connection was left checked out.
    after_cancel: Callable[[], None] = field(default=lambda: None)
    concurrent_writers: int = 30  # writers racing to create one new session


@dataclass(frozen=True)
class Rule:
    name: str
    says: str  # the rule, as a reader would state it
    check: Callable[[Subject], Awaitable[None]]
    needs_write_raw: bool = False


RULES: list[Rule] = []


def rule(says: str, *, needs_write_raw: bool = False) -> Callable[[Callable[[Subject], Awaitable[None]]],
                                                                  Callable[[Subject], Awaitable[None]]]:
    def register(check: Callable[[Subject], Awaitable[None]]) -> Callable[[Subject], Awaitable[None]]:
        RULES.append(Rule(check.__name__, says, check, needs_write_raw))
        return check

    return register


def msg(text: str, role: Literal["user", "assistant"] = "user") -> TResponseInputItem:
    return {"role": role, "content": text}


def contents(items: list[Any]) -> list[str]:
    return [item["content"] for item in items]


# -- order and limits ------------------------------------------------------------------------------------------
@rule("items come back in the order they were added, even added within one millisecond")
async def insertion_order(subject: Subject) -> None:
    session = subject.make("order")
    await session.add_items([msg(f"item {i}") for i in range(50)])  # one call: one timestamp on many stores
    for i in range(50, 60):
        await session.add_items([msg(f"item {i}")])
    assert contents(await session.get_items()) == [f"item {i}" for i in range(60)]


@rule("get_items(limit=n) returns the newest n items, oldest first; limit=0 returns none")
async def limit_is_the_newest_n(subject: Subject) -> None:
    session = subject.make("limit")
    await session.add_items([msg(f"m{i}") for i in range(10)])
    assert contents(await session.get_items(limit=3)) == ["m7", "m8", "m9"]
    assert len(await session.get_items(limit=100)) == 10
    assert await session.get_items(limit=0) == []
    assert await subject.make("nobody").get_items(limit=3) == []


@rule("session_settings may be a SessionSettings or a dict; its limit is the default, an explicit limit wins")
async def session_settings_limit(subject: Subject) -> None:
    for settings in (SessionSettings(limit=2), {"limit": 2}):
        session_id = f"settings-{type(settings).__name__}"
        session = subject.make(session_id, settings)
        assert isinstance(session.session_settings, SessionSettings), "a dict is not turned into SessionSettings"
        assert session.session_settings.limit == 2
        await session.add_items([msg(f"m{i}") for i in range(5)])
        assert contents(await session.get_items()) == ["m3", "m4"]
        assert contents(await session.get_items(limit=4)) == ["m1", "m2", "m3", "m4"]
        assert contents(await subject.make(session_id).get_items()) == [f"m{i}" for i in range(5)]


@rule("an unknown setting is refused with TypeError when the session is built")
async def unknown_setting_refused(subject: Subject) -> None:
    try:
        subject.make("typo", {"limt": 2})
    except TypeError as error:
        assert "limt" in str(error), error
    else:
        raise AssertionError("a session was built with the unknown setting 'limt'")


@rule("the Runner stores each turn and sends the stored history with the next one")
async def runner_round_trip(subject: Subject) -> None:
    model = ScriptedModel([[assistant_message("Hello, Ada.")], [assistant_message("You are Ada.")]])
    session = subject.make("runner", {"limit": 10})
    agent = Agent(name="Assistant", model=model)
    await Runner.run(agent, "My name is Ada.", session=session)
    await Runner.run(agent, "What is my name?", session=subject.make("runner", {"limit": 10}))
    assert "My name is Ada." in str(model.calls[1].input), "the second turn was not sent the first one"
    assert len(await subject.make("runner").get_items()) == 4


# -- corrupt rows ------------------------------------------------------------------------------------------------
VALID = [msg("u1"), msg("a1", "assistant"), msg("u2"), msg("a2", "assistant")]


async def corrupt_history(subject: Subject, session_id: str, position: int) -> Session:
    """VALID with one stored row that is not JSON at *position* (0 = oldest, len(VALID) = newest)."""
    assert subject.write_raw is not None
    session = subject.make(session_id)
    if position:
        await session.add_items(VALID[:position])
    await subject.write_raw(session_id, '{"role": "user", "content": "trunc')
    if VALID[position:]:
        await session.add_items(VALID[position:])
    return session


@rule("a stored row that is not JSON is skipped by reads, and limits count only valid items", needs_write_raw=True)
async def corrupt_row_skipped(subject: Subject) -> None:
    for position in range(len(VALID) + 1):
        session = await corrupt_history(subject, f"corrupt-{position}", position)
        assert await session.get_items() == VALID, f"bad row at position {position}"
        for n in range(1, len(VALID) + 2):
            assert await session.get_items(limit=n) == VALID[-n:], f"bad row at {position}, limit={n}"
        assert await subject.make(f"corrupt-{position}", {"limit": 2}).get_items() == VALID[-2:]


@rule("pop_item skips and removes rows that are not JSON, and never returns None while valid items remain",
      needs_write_raw=True)
async def pop_skips_corrupt_rows(subject: Subject) -> None:
    for position in range(len(VALID) + 1):
        session = await corrupt_history(subject, f"pop-corrupt-{position}", position)
        popped = [await session.pop_item() for _ in VALID]
        assert popped == VALID[::-1], f"bad row at position {position}: popped {popped}"
        assert await session.pop_item() is None
        assert await session.get_items() == []
        await session.add_items([msg("fresh")])  # the bad row is gone, not waiting to reappear
        assert await session.get_items() == [msg("fresh")]


@rule("many bad rows on top of the history do not hide it", needs_write_raw=True)
async def many_corrupt_rows_on_top(subject: Subject) -> None:
    assert subject.write_raw is not None
    session = subject.make("buried")
    await session.add_items(VALID)
    for n in range(5):
        await subject.write_raw("buried", f"not json {n}")
    assert await session.get_items(limit=1) == VALID[-1:]
    assert await session.get_items(limit=3) == VALID[-3:]
    assert await session.pop_item() == VALID[-1]
    assert await session.get_items() == VALID[:-1]


# -- pop and clear -----------------------------------------------------------------------------------------------
@rule("pop_item removes and returns the newest item; None when the session is empty")
async def pop_returns_the_newest(subject: Subject) -> None:
    assert await subject.make("never-written").pop_item() is None
    session = subject.make("pop")
    await session.add_items([msg("first"), msg("second", "assistant"), msg("third")])
    assert await session.pop_item() == msg("third")
    assert await session.pop_item() == msg("second", "assistant")
    assert await session.get_items() == [msg("first")]
    assert await session.pop_item() == msg("first")
    assert await session.pop_item() is None


@rule("clear_session empties that session only, and the session can be used again")
async def clear_only_that_session(subject: Subject) -> None:
    await subject.make("never-written").clear_session()  # not an error
    mine, yours = subject.make("mine"), subject.make("yours")
    await mine.add_items([msg("a"), msg("b")])
    await yours.add_items([msg("c")])
    await mine.clear_session()
    assert await mine.get_items() == []
    assert await mine.pop_item() is None
    assert await yours.get_items() == [msg("c")]
    await mine.add_items([msg("again")])
    assert await mine.get_items() == [msg("again")]


@rule("session ids are compared exactly: case, spaces, punctuation and scripts make different sessions")
async def ids_are_isolated(subject: Subject) -> None:
    ids = ["user-1", "user-2", "User-1", "user-1 ", "user-1%", "user_1", "ユーザー"]
    for session_id in ids:
        await subject.make(session_id).add_items([msg(f"I am {session_id!r}")])
    for session_id in ids:
        assert await subject.make(session_id).get_items() == [msg(f"I am {session_id!r}")], session_id


# -- concurrency ---------------------------------------------------------------------------------------------
@rule("concurrent pop_item calls never hand out one item twice, nor lose one")
async def concurrent_pops(subject: Subject) -> None:
    await subject.make("pops").add_items([msg(f"item {n}") for n in range(20)])
    outcomes = await asyncio.gather(*(subject.make("pops").pop_item() for _ in range(30)))
    popped = contents([item for item in outcomes if item is not None])
    assert sorted(popped) == sorted(f"item {n}" for n in range(20)), "an item was lost or handed out twice"
    assert outcomes.count(None) == 10
    assert await subject.make("pops").get_items() == []


async def concurrent_writers(subject: Subject, session_id: str, writers: int = 30, per_writer: int = 3) -> None:
    """*writers* tasks, each with its own session object, each adding *per_writer* two-item batches."""

    async def writer(number: int) -> None:
        session = subject.make(session_id)  # a separate object per writer, as separate requests would have
        for step in range(per_writer):
            await session.add_items([msg(f"w{number}-s{step}-a"), msg(f"w{number}-s{step}-b", "assistant")])

    await asyncio.gather(*(writer(n) for n in range(writers)))
    stored = [c for c in contents(await subject.make(session_id).get_items()) if c.startswith("w")]
    assert len(stored) == writers * per_writer * 2, f"{len(stored)} of {writers * per_writer * 2} items stored"
    assert len(set(stored)) == len(stored), "an item was stored twice"
    for number in range(writers):
        own = [c for c in stored if c.startswith(f"w{number}-")]
        assert own == [f"w{number}-s{s}-{part}" for s in range(per_writer) for part in ("a", "b")], number
    for index in range(0, len(stored), 2):
        assert stored[index][:-2] == stored[index + 1][:-2], "one add_items was split by another writer's"


@rule("concurrent writers to one session lose nothing, store nothing twice, and keep each writer's order")
async def concurrent_writers_keep_order(subject: Subject) -> None:
    await subject.make("shared").add_items([msg("the conversation starts")])
    await concurrent_writers(subject, "shared")


@rule("writers racing to create the same new session all succeed")
async def concurrent_first_writes(subject: Subject) -> None:
    await concurrent_writers(subject, "brand-new", writers=subject.concurrent_writers)


# -- content ---------------------------------------------------------------------------------------------------
@rule("a 1 MB item, Unicode, emoji, NUL and nested JSON come back exactly")
async def content_round_trips(subject: Subject) -> None:
    session = subject.make("big")
    large = msg("é" * (1024 * 1024))
    fancy = msg("naïve café 👩‍💻🚀 漢字 עברית \u0000 \\ \" '")
    nested: TResponseInputItem = {"type": "function_call_output", "call_id": "c1",
                                  "output": json.dumps({"ok": [1, 2.5, None]})}
    await session.add_items([large, fancy, nested])
    assert await session.get_items() == [large, fancy, nested]


@rule("one add_items of 1,001 items keeps their order")
async def a_thousand_and_one_items(subject: Subject) -> None:
    session = subject.make("many")
    items = [msg(f"item {n}") for n in range(1001)]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=3) == items[-3:]


@rule("an item that is not JSON is refused with TypeError, and nothing of that call is stored")
async def non_json_refused(subject: Subject) -> None:
    session = subject.make("strict")
    await session.add_items([msg("before")])
    try:
        await session.add_items([msg("fine"), {"role": "user", "content": object()}])  # type: ignore[list-item, misc]
    except TypeError as error:
        assert "not JSON serializable" in str(error), error
    else:
        raise AssertionError("an item that is not JSON was accepted")
    assert await session.get_items() == [msg("before")]


# -- cancellation --------------------------------------------------------------------------------------------
BASE = [msg("a"), msg("b", "assistant")]
OPERATIONS: dict[str, tuple[Callable[[Session], Awaitable[Any]], Any, list[TResponseInputItem]]] = {
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


async def cancellation_at_every_step(subject: Subject, operation: str) -> None:
    """Real cancellation (``Task.cancel``) after 0, 1, 2, ... event-loop steps, until the call finishes first;
    once, or (every other step) twice, the second while the first is being handled. A call that has started
    runs to its end before CancelledError is raised, so a cancelled caller knows it landed; nothing is
    half-written; the store still works for another session."""
    call, returns, landed = OPERATIONS[operation]
    session = subject.make("victim")
    await session.add_items(BASE)
    read = subject.read_after_cancel or (lambda _: subject.make("victim").get_items())
    for number, steps in enumerate(cancel_points()):
        task = asyncio.ensure_future(call(session))
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            assert await task == returns
            return
        task.cancel()
        if number % 2:
            await asyncio.sleep(0)
            task.cancel()
        try:
            await task
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        history = await read(session)
        if steps == 0:
            assert cancelled and history == BASE, "cancelled before it started, yet something happened"
        elif cancelled:
            assert history == landed, f"cancelled after {steps} steps: the started {operation} did not land"
        subject.after_cancel()
        assert await subject.make("bystander").pop_item() is None  # the store still works
        if history != BASE:
            await session.clear_session()
            await session.add_items(BASE)
    raise AssertionError(f"{operation} did not finish within {cancel_points()[-1]} event-loop steps")


def _cancellation_rule(operation: str) -> None:
    async def check(subject: Subject) -> None:
        await cancellation_at_every_step(subject, operation)

    check.__name__ = f"cancelled_{operation}"
    rule(f"a cancelled {operation} either did not start or ran to its end")(check)


for _operation in OPERATIONS:
    _cancellation_rule(_operation)
