"""Kill drills: SIGKILL at chosen points of a key rotation and of a summary, then look at what the database holds.

    python -m tests.support.crash_drill <database url> [<database url> ...]

One process imports everything once (the SDK's import alone takes seconds), then forks a child per step (no
thread or event loop exists in the parent when it forks), so dozens of kills cost one interpreter start. A child
kills itself with SIGKILL at its point: no ``finally``, no rollback sent; the database sees a dropped connection.
Points are chosen, not timed: before the k-th SQL statement of a rotation (k = 1, 2, ... until a rotation
finishes without reaching k), at its COMMIT and after it returned; and at every step of a summary (STORES x
ATOMIC_POINTS / JOURNAL_POINTS). The parent prints one JSON line per case; tests/lessons/test_crash_drills.py checks the
database after each.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from agents import set_tracing_disabled
from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from agents.memory import Session
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_engine, create_session_tables
from session_management.stores.course_session import CourseSession
from session_management.stores.summarizing_session import SummarizingSession

rotation = importlib.import_module("session_management.04_encrypted_session.rotation")

OLD_KEY = "8BOk3y0Y6kbd5l2BEYCqTSVHrLqSCsVY5_T3PV4qS5k="
NEW_KEY = "q3ZJjM3cUBCJfzmrhHt0pVN8N4Ci7fSgvU0ZkK6L0lY="
DAY = 24 * 3600
NOW = 1_700_000_000  # token times are chosen (in the past: Fernet refuses a token from the future)
# A rotation's history: three items 40 days old (past any 30-day TTL) and three recent ones.
ROTATION_TIMES = [NOW - 40 * DAY] * 3 + [NOW] * 3
ROTATION_ITEMS = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"item {n}"} for n in range(6)]
STORES = ("sdk_sqlalchemy", "course_session", "encrypted_sqlalchemy", "protocol_only")
ATOMIC_POINTS = ("archived", "replacing")
JOURNAL_POINTS = ("archived", "journaled", "half-cleared", "cleared", "rewritten")
BUDGET = 6
STORE_KEY = "a test secret, not a real key"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- the summary drill's stores and wrappers ------------------------------------------------------------------
def turn(number: int) -> list[Any]:
    """Odd turns are the same exchange every time (identity by text would confuse them); every third has a tool."""
    if number % 2:
        return [{"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You're welcome."}]
    if number % 3:
        return [{"role": "user", "content": f"question {number}"}, {"role": "assistant", "content": f"answer {number}"}]
    call = f"call_{number}"
    return [{"role": "user", "content": f"question {number}"},
            {"type": "function_call", "call_id": call, "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": call, "output": f"result {number}"},
            {"role": "assistant", "content": f"answer {number}"}]


class ItemByItem:
    """A store with only the Session protocol, whose clear removes one item at a time (as some stores do)."""

    def __init__(self, inner: Session, on_pop: Callable[[int, int], None] = lambda done, total: None) -> None:
        self.inner, self.session_id, self.on_pop = inner, inner.session_id, on_pop

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await self.inner.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        await self.inner.add_items(items)

    async def pop_item(self) -> Any:
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        total = len(await self.inner.get_items())
        for done in range(total):
            await self.inner.pop_item()
            self.on_pop(done + 1, total)


class KillAfter:
    """Forwards to *inner*; dies after the calls *when* (method name, calls so far) approves."""

    def __init__(self, inner: Any, when: Callable[[str], bool]) -> None:
        self.inner, self.session_id, self.when = inner, inner.session_id, when

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _call(self, name: str, call: Awaitable[Any]) -> Any:
        result = await call
        if self.when(name):
            die()
        return result

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await self.inner.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        await self._call("add_items", self.inner.add_items(items))

    async def pop_item(self) -> Any:
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        await self._call("clear_session", self.inner.clear_session())


def store(engine: AsyncEngine, kind: str, session_id: str, on_pop: Callable[[int, int], None] | None = None) -> Any:
    if kind == "sdk_sqlalchemy":
        return SQLAlchemySession(session_id, engine=engine)
    if kind == "course_session":
        return CourseSession(session_id, engine=engine)
    if kind == "encrypted_sqlalchemy":
        return EncryptedSession(session_id, SQLAlchemySession(session_id, engine=engine), STORE_KEY, ttl=30 * DAY)
    return ItemByItem(CourseSession(session_id, engine=engine), on_pop or (lambda done, total: None))


def summarizing(engine: AsyncEngine, kind: str, session_id: str, point: str | None = None) -> SummarizingSession:
    """The drill's SummarizingSession; with *point*, armed to die there during its first summary."""
    state = {"cleared": False}

    def half(done: int, total: int) -> None:
        if point == "half-cleared" and done == total // 2:
            die()

    underlying = store(engine, kind, session_id, half)
    archive = store(engine, "sdk_sqlalchemy" if kind != "encrypted_sqlalchemy" else kind, f"{session_id}:archive")
    journal = store(engine, kind, f"{session_id}:journal") if kind == "protocol_only" else None
    if point == "archived":
        archive = KillAfter(archive, lambda name: name == "add_items")
    elif point == "journaled":
        journal = KillAfter(journal, lambda name: name == "add_items")
    elif point in ("cleared", "rewritten"):
        def when(name: str) -> bool:
            if name == "clear_session":
                state["cleared"] = True
                return point == "cleared"
            return name == "add_items" and state["cleared"] and point == "rewritten"

        underlying = KillAfter(underlying, when)
    elif point == "replacing":
        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("DELETE FROM AGENT_MESSAGES"):
                die()  # inside the replace transaction: the summary is inserted, the old rows not yet deleted

        event.listen(engine.sync_engine, "before_cursor_execute", before)
    return SummarizingSession(underlying, max_items=BUDGET, summarizer=summarize, archive=archive, journal=journal)


async def summarize(items: list[Any]) -> str:
    """The drill is about storage, not prose: a summary that costs nothing."""
    return f"{len(items)} items"


async def summary_crash(url: str, kind: str, session_id: str, point: str, progress: int) -> None:
    """Write turns 0, 1, ... until the first summary dies at *point*; each turn's number goes to *progress* first."""
    engine = create_engine(url)
    session = summarizing(engine, kind, session_id, point)
    for number in range(40):
        os.write(progress, f"{number}\n".encode())
        await session.add_items(turn(number))
    await engine.dispose()


RESTART_TURNS = range(100, 104)


async def summary_restart(url: str, sessions: list[tuple[str, str]]) -> None:
    """A restarted process: new objects on the same rows, writing RESTART_TURNS to each (kind, session id)."""
    engine = create_engine(url)
    for kind, session_id in sessions:
        session = summarizing(engine, kind, session_id)
        for number in RESTART_TURNS:
            await session.add_items(turn(number))
    await engine.dispose()


# -- the rotation drill -----------------------------------------------------------------------------------------
ROTATION_POINTS = [*(f"statement:{k}" for k in range(1, 11)), "commit", "returned"]


def rotation_session(point: str) -> str:
    return f"rot-{point.replace(':', '-')}"


async def prepare(url: str) -> None:
    """The tables, and one session per rotation point: ROTATION_ITEMS under the old key, at ROTATION_TIMES."""
    engine = create_engine(url)
    await create_session_tables(engine)
    for point in ROTATION_POINTS:
        session_id = rotation_session(point)
        cipher = rotation.session_cipher(session_id, OLD_KEY)
        envelopes = [{"__enc__": 1, "v": 1, "kid": "hkdf-v1",
                      "payload": cipher.encrypt_at_time(json.dumps(item).encode(), at).decode()}
                     for item, at in zip(ROTATION_ITEMS, ROTATION_TIMES, strict=True)]
        await SQLAlchemySession(session_id, engine=engine).add_items(envelopes)  # type: ignore[arg-type]
    await engine.dispose()


async def rotation_crash(url: str, session_id: str, point: str) -> None:
    """Rotate, dying before the k-th SQL statement ("statement:k"), at COMMIT, or once rotate_key returned."""
    engine = create_engine(url)
    seen = 0

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal seen
        seen += 1
        if point == f"statement:{seen}":
            die()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    if point == "commit":
        event.listen(engine.sync_engine, "commit", lambda conn: die())
    await rotation.rotate_key(session_id, engine, OLD_KEY, NEW_KEY)
    if point == "returned":
        die()
    await engine.dispose()


# -- the parent -------------------------------------------------------------------------------------------------
def in_child(work: Callable[[], Awaitable[None]], progress: int | None = None) -> str:
    """Run *work* in a forked child: "killed" (SIGKILL), "done", or "failed: <exit status>"."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            asyncio.run(work())
        except BaseException as error:  # noqa: BLE001 - reported to the parent as the exit status
            print(f"child failed: {type(error).__name__}: {error}", file=sys.stderr)
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "done" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else f"failed: {status}"


def report(**case: Any) -> None:
    print(json.dumps(case), flush=True)


def drill(url: str) -> None:
    report(url=url, step="prepare", outcome=in_child(partial(prepare, url)))
    # The rotation: before statement 1, 2, ... until a rotation finishes without reaching k; then at its COMMIT
    # and once it has returned.
    last = "killed"
    for point in ROTATION_POINTS:
        if point.startswith("statement:") and last == "done":
            continue
        last = in_child(partial(rotation_crash, url, rotation_session(point), point))
        report(url=url, step="rotation", point=point, session=rotation_session(point), outcome=last)
    # The summary: every store, every step; then one restarted process writes on to each session.
    restarts = []
    for kind in STORES:
        for point in JOURNAL_POINTS if kind == "protocol_only" else ATOMIC_POINTS:
            session_id = f"sum-{kind}-{point}"
            reader, writer = os.pipe()
            outcome = in_child(partial(summary_crash, url, kind, session_id, point, writer))
            os.close(writer)
            with os.fdopen(reader) as progress:
                numbers = [int(line) for line in progress.read().split()]
            report(url=url, step="summary", store=kind, point=point, session=session_id, outcome=outcome,
                   in_flight=numbers[-1] if numbers else -1)
            restarts.append((kind, session_id))
    report(url=url, step="restart", outcome=in_child(partial(summary_restart, url, restarts)))


if __name__ == "__main__":
    set_tracing_disabled(True)
    for database_url in sys.argv[1:]:
        drill(database_url)
