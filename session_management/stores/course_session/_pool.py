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

The two private SQLAlchemy names this needs (``QueuePool._max_overflow``, ``_ConnectionFairy._close_special``)
are used only in this module; ``tests/stores/test_course_session.py`` fails when a SQLAlchemy upgrade changes them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util import greenlet_spawn

from session_management.common.liveness import RETURNED_AT, idle_threshold, known_closed

T = TypeVar("T")

# Idle-dropping firewalls, load balancers and NAT gateways wait minutes (AWS NAT 350 s, Azure 4 min); servers
# that end idle connections close them, which the checkout sees without a round trip.
PING_AFTER_IDLE_SECONDS = 30.0

# One FIFO gate per engine and event loop (a semaphore belongs to one loop; an engine disposed on one loop
# may be used again on another). Weak keys: a collected engine takes its gates with it.
_gates: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


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


def _gate(engine: AsyncEngine) -> asyncio.Semaphore | None:
    capacity = pool_capacity(engine)
    if capacity is None:
        return None
    return loop_local(_gates, engine, lambda: asyncio.Semaphore(max(1, capacity)))


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


@asynccontextmanager
async def borrow(engine: AsyncEngine) -> AsyncIterator[Borrowed]:
    """A pooled connection's driver object, taken in arrival order and always given back."""
    gate = _gate(engine)
    if gate is not None:
        await gate.acquire()
    try:
        # The pool's own checkout (its liveness check included), without the Connection objects the SQL layer
        # builds.
        with idle_threshold(PING_AFTER_IDLE_SECONDS):
            raw = await engine.raw_connection()
        borrowed = Borrowed(raw.driver_connection, used_before=RETURNED_AT in raw.info)
        discard = False
        try:
            yield borrowed
        except asyncio.CancelledError:
            discard = True  # interrupted mid-statement: its state is unknown
            raise
        except Exception as error:
            discard = dropped(error, borrowed)  # a dead connection goes, not back to the pool
            raise
        finally:
            # Not wrapped in settle() (a task per call costs ~5% of a turn): returning never waits on the server
            # here (no reset to send), so a cancellation cannot land in the middle of it.
            await greenlet_spawn(_give_back, raw, transaction_ended=borrowed.transaction_ended, discard=discard)
    finally:
        if gate is not None:
            gate.release()


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

