"""``Opened``: the async context manager the contract registry's ``connect`` entries return."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Opened(Generic[T]):
    """``async with Opened(open, close) as handle``: *open* makes the handle, *close* releases it on exit.

    A class rather than an ``@asynccontextmanager`` generator on purpose: ``Runner.run_sync`` calls
    ``loop.shutdown_asyncgens()`` after every run, which closes each async generator suspended on the thread's
    loop, and so would dispose of a handle entered on that loop between two ``run_sync`` calls (the contract
    suite's run_sync case met exactly that: its engine was disposed after the first turn and its connections
    were left for the garbage collector).
    """

    def __init__(self, open: Callable[[], Awaitable[T]], close: Callable[[T], Awaitable[Any]]) -> None:
        self._open = open
        self._close = close
        self._handle: T | None = None

    async def __aenter__(self) -> T:
        self._handle = await self._open()
        return self._handle

    async def __aexit__(self, *exc_info: object) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            await self._close(handle)
