"""Borrowing a driver connection from the application's `AsyncEngine` pool, for the classes of every database.

Three things the classes need and SQLAlchemy's public API does not quite give, kept here in one place:

* **Arrival order.** Under overload the pool lets a task that has just returned a connection take one again
  ahead of tasks already waiting; a few conversations race ahead while others starve, and the slowest turns
  take many times the median. An `asyncio.Semaphore` (strict FIFO) sized to the pool queues every caller fairly.
* **No second reset.** The pool rolls a returned connection back ("reset on return"). Where a class has ended
  its transaction itself (MySQL: the ``COMMIT`` travels with the statements), that ``ROLLBACK`` is a wasted
  round trip; SQLAlchemy's own `Connection.close()` skips it in that case, and so do we, the same way.
* **A clean pool after cancellation.** The connection always goes back, even when the caller is cancelled
  (repeatedly) while it is being returned; a connection whose statement was interrupted is discarded, not
  handed to the next caller in an unknown state.
* **No ping in a chat's pauses.** The engine's liveness check (``common/liveness.py``) pings a connection idle
  for more than a second; in a chat, where the model thinks between a turn's read and its write and the user
  between turns, that is every checkout, and the ping doubles a turn's round trips. The classes recover from a
  dead connection themselves instead: a connection the server closed is known closed without a round trip (the
  check still runs at every checkout), and a read that meets one the server dropped silently is retried on a
  fresh connection (`dropped`, ``base.CourseSession``). So their checkouts ping only after
  `PING_AFTER_IDLE_SECONDS`, for what drops connections silently after long idle (firewalls, NAT gateways).

* **No pool machinery per statement.** A checkout and a check-in through SQLAlchemy's pool cost about 30 µs
  of client CPU each way (its connection wrappers, events, and a greenlet hop to the event loop); a turn makes
  two, which was 1.9x the CPU of bare driver code. So a connection whose transaction has ended stays *kept* by
  the classes, and the next borrow on this engine takes it directly (newest first, still checked for a closed
  connection). It is kept only when one of our callers waits for it or the pool could still lend another, so
  it is kept from nobody; the sweeper gives back what was not reused within `KEEP_SECONDS`, and
  ``engine.dispose()`` closes the kept ones. What it costs: a user of the same engine who finds the pool
  exhausted while connections are kept (others took the spare ones meanwhile) waits up to `KEEP_SECONDS` longer.

The two private SQLAlchemy names this needs (``QueuePool._max_overflow``, ``_ConnectionFairy._close_special``)
are used only in this module; ``tests/stores/test_course_session.py`` fails when a SQLAlchemy upgrade changes them.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util import greenlet_spawn

from session_management.common.liveness import RETURNED_AT, idle_threshold, known_closed

T = TypeVar("T")

# Idle-dropping firewalls, load balancers and NAT gateways wait minutes (AWS NAT 350 s, Azure 4 min); servers
# that end idle connections close them, which the checkout sees without a round trip.
PING_AFTER_IDLE_SECONDS = 30.0

# How long a kept connection waits to be reused (see "No pool machinery per statement" above): long enough that
# a service at a chat's pace finds one, and the sweeper wakes the event loop at most once per KEEP_SECONDS (each
# wake-up of an idle process costs more CPU than the pool's machinery saves).
KEEP_SECONDS = 1.0


class _Place:
    """What the classes keep per engine and event loop (asyncio objects belong to one loop; an engine disposed on
    one loop may be used again on another): the FIFO gate, and the kept connections, oldest first, each with
    when it was kept. Only for pools that queue callers (not SQLite's)."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        self.pool = engine.pool
        self.capacity = max(1, capacity)
        self.gate = asyncio.Semaphore(self.capacity)
        self.waiting = 0  # callers waiting at the gate
        self.idle: list[tuple[PoolProxiedConnection, float]] = []
        self.sweeper: asyncio.Task[None] | None = None

    def take(self) -> PoolProxiedConnection | None:
        while self.idle:
            raw, _ = self.idle.pop()  # the newest: the warmest connection
            if not known_closed(raw.driver_connection):
                return raw
            _give_back(raw, transaction_ended=True, discard=True)  # the server closed it: nothing to send
        return None

    def worth_keeping(self) -> bool:
        """Keep a connection only when that keeps it from nobody: one of our callers waits and takes it next, or
        the pool can still lend another (a kept connection counts as lent)."""
        return self.waiting > 0 or self.pool.checkedout() < self.capacity  # type: ignore[attr-defined]

    def keep(self, raw: PoolProxiedConnection) -> None:
        self.idle.append((raw, time.monotonic()))
        if self.sweeper is None:
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Give back to the pool what was not reused within KEEP_SECONDS."""
        try:
            while self.idle:
                await asyncio.sleep(KEEP_SECONDS)
                cutoff = time.monotonic() - KEEP_SECONDS
                stale = 0
                while stale < len(self.idle) and self.idle[stale][1] <= cutoff:
                    stale += 1
                expired, self.idle = self.idle[:stale], self.idle[stale:]
                for raw, _ in expired:
                    await greenlet_spawn(_give_back, raw, transaction_ended=True, discard=False)
        finally:
            self.sweeper = None

    def close(self) -> None:
        """Close the kept connections (in a greenlet on their loop: closing may talk to the server)."""
        kept, self.idle = self.idle, []
        for raw, _ in kept:
            _give_back(raw, transaction_ended=True, discard=True)
        if self.sweeper is not None:
            self.sweeper.cancel()


_places: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, _Place | None]] = (
    weakref.WeakKeyDictionary()
)


def _place(engine: AsyncEngine) -> _Place | None:
    loop = asyncio.get_running_loop()
    entry = _places.get(engine.sync_engine)
    if entry is not None and entry[0] is loop:
        return entry[1]
    if not event.contains(engine.sync_engine, "engine_disposed", _close_kept):  # again after a dispose()
        event.listen(engine.sync_engine, "engine_disposed", _close_kept)
    if entry is not None and entry[1] is not None:
        entry[1].idle.clear()  # connections of a loop that is gone: nothing can close them properly now
    capacity = pool_capacity(engine)
    place = None if capacity is None else _Place(engine.sync_engine, capacity)
    _places[engine.sync_engine] = (loop, place)
    return place


def kept(engine: AsyncEngine) -> int:
    """How many of *engine*'s checked-out connections are kept here on the running loop (not lost: a check that
    nothing was left checked out subtracts them)."""
    entry = _places.get(engine.sync_engine)
    return len(entry[1].idle) if entry is not None and entry[1] is not None else 0


def _close_kept(sync_engine: Engine) -> None:
    """``engine.dispose()`` closes the pool's checked-in connections; the kept ones close with them (otherwise they
    would outlive the pool, open, until garbage collection). Runs in dispose()'s greenlet."""
    entry = _places.pop(sync_engine, None)
    if entry is None or entry[1] is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is entry[0]:
        entry[1].close()


def _transaction_open(driver: Any) -> bool:
    """Whether the driver connection is inside a transaction, from what the client knows (no round trip)."""
    in_transaction = getattr(driver, "is_in_transaction", None)  # asyncpg
    if callable(in_transaction):
        return bool(in_transaction())
    status = getattr(driver, "get_transaction_status", None)  # aiomysql: the server's last status flags
    if callable(status):
        return bool(status())
    return True  # unknown: let the pool reset it



async def settle(awaitable: Awaitable[T]) -> T:
    """Await *awaitable* to its end even if the caller is cancelled, any number of times; then re-raise that.

    A cancelled caller therefore knows the operation has finished (succeeded or failed) when it sees
    `CancelledError`, the SDK's rule for session writes.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)  # shield: the caller's cancellation does not reach the task
        except asyncio.CancelledError:
            if task.cancelled():  # the task itself was cancelled (its loop is closing)
                raise
            cancelled = True
        except BaseException:  # noqa: BLE001 - the task's own outcome, reported below
            pass
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
        raise asyncio.CancelledError
    return task.result()


def pool_capacity(engine: AsyncEngine) -> int | None:
    """How many connections the engine's pool can lend at once, or None when it does not queue callers."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # SQLite's pools, NullPool, StaticPool: nothing to queue for
        return None
    # PRIVATE: QueuePool has no public accessor for max_overflow (size() is public). -1 means unlimited.
    max_overflow = pool._max_overflow
    return None if max_overflow < 0 else pool.size() + max_overflow


def loop_local(registry: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, T]],
               engine: AsyncEngine, make: Callable[[], T]) -> T:
    """*registry*'s object for *engine* on the running loop, made by *make* on first use there (an asyncio
    primitive belongs to one loop; an engine disposed on one loop may be used again on another)."""
    loop = asyncio.get_running_loop()
    entry = registry.get(engine.sync_engine)
    if entry is None or entry[0] is not loop:
        entry = registry[engine.sync_engine] = (loop, make())
    return entry[1]


def dropped(error: BaseException, borrowed: Borrowed | None) -> bool:
    """Whether *error* was the connection dying under the statement (the driver now reports it closed), as
    opposed to the statement failing on a live connection."""
    return borrowed is not None and not isinstance(error, asyncio.CancelledError) and known_closed(borrowed.driver)


def _give_back(raw: PoolProxiedConnection, *, transaction_ended: bool, discard: bool) -> None:
    if discard:
        raw.invalidate()  # the next checkout opens a fresh connection
        raw.close()
    elif transaction_ended:
        # PRIVATE: what Connection.close() calls after ending its own transaction: return without the reset.
        raw._close_special(transaction_reset=True)
    else:
        raw.close()


@dataclass
class Borrowed:
    """A driver connection (asyncpg.Connection, aiomysql.Connection) on loan from the pool."""

    driver: Any
    transaction_ended: bool = False  # set by the borrower when it committed or rolled back itself
    used_before: bool = True  # False: opened by this checkout (a failure on it is not a stale connection)


class borrow:  # noqa: N801 - used like a function: ``async with borrow(engine) as connection``
    """A pooled connection's driver object, taken in arrival order and always given back.

    A class rather than an ``@asynccontextmanager`` generator: it runs twice per turn, and the generator's
    machinery was a measurable part of the turn's CPU.
    """

    __slots__ = ("engine", "place", "raw", "borrowed")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def __aenter__(self) -> Borrowed:
        place = self.place = _place(self.engine)
        if place is not None:
            if place.gate.locked():
                place.waiting += 1
                try:
                    await place.gate.acquire()
                finally:
                    place.waiting -= 1
            else:
                await place.gate.acquire()
        try:
            raw = place.take() if place is not None else None
            if raw is None:
                # The pool's own checkout (its liveness check included), without the Connection objects the SQL
                # layer builds.
                with idle_threshold(PING_AFTER_IDLE_SECONDS):
                    raw = await self.engine.raw_connection()
                self.borrowed = Borrowed(raw.driver_connection, used_before=RETURNED_AT in raw.info)
            else:
                self.borrowed = Borrowed(raw.driver_connection)
        except BaseException:
            if place is not None:
                place.gate.release()
            raise
        self.raw = raw
        return self.borrowed

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> None:
        place, borrowed = self.place, self.borrowed
        try:
            if kind is not None and issubclass(kind, asyncio.CancelledError):
                discard = True  # interrupted mid-statement: its state is unknown
            else:  # a dead connection goes, not back to the pool
                discard = isinstance(error, Exception) and dropped(error, borrowed)
            if place is not None and not discard and (borrowed.transaction_ended
                                                      or not _transaction_open(borrowed.driver)) \
                    and place.worth_keeping():
                place.keep(self.raw)
            else:
                # Not wrapped in settle() (a task per call costs ~5% of a turn): returning never waits on the
                # server here (no reset to send), so a cancellation cannot land in the middle of it.
                await greenlet_spawn(_give_back, self.raw, transaction_ended=borrowed.transaction_ended,
                                     discard=discard)
        finally:
            if place is not None:
                place.gate.release()



READ_ATTEMPTS = 3


async def read(engine: AsyncEngine, operation: Callable[[Borrowed], Awaitable[T]]) -> T:
    """Run a read on a borrowed connection; when that connection turns out to be dead (used before, and the
    driver reports it closed after the failure), run it again on another. A read changes nothing, so running it
    twice is safe; a write is never retried this way (whether it landed before the connection died is unknown).
    """
    for attempt in range(READ_ATTEMPTS):
        borrowed: Borrowed | None = None
        try:
            async with borrow(engine) as borrowed:
                return await operation(borrowed)
        except Exception as error:
            if attempt == READ_ATTEMPTS - 1 or borrowed is None or not borrowed.used_before \
                    or not dropped(error, borrowed):
                raise
    raise AssertionError("unreachable")

