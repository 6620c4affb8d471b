"""`RedisClusterSession`: the SDK's `Session` protocol on Redis Cluster (and on a standalone Redis too).

The SDK's `RedisSession` (0.24.0) refuses to append or clear through a `RedisCluster` client: it makes those
atomic with `WATCH`/`MULTI` over three keys that Redis Cluster may place on three different nodes. This store
keeps the same data model (a hash with ``session_id``/``created_at``/``updated_at`` and a list of JSON items,
oldest first, serialized exactly as `RedisSession` does) and makes it work on a cluster:

* **One hash slot per session.** Both keys carry the session id in a hash tag, ``{prefix}:{<id>}`` and
  ``{prefix}:{<id>}:messages``: Redis hashes only the part between the braces, so both keys of a session
  always live on the same node, and a script may touch both. (An id that itself contains a brace, or is
  empty, is tagged by its SHA-256 instead, so its braces cannot split the session across slots.)
* **Atomic writes.** `add_items` is one Lua script (type checks, then ``RPUSH`` and the hash fields and TTL);
  Redis runs a script alone, so concurrent writers never interleave items and readers never see half a batch.
  `pop_item` is one ``RPOP``; `clear_session` one script that checks types and ``DEL``s both keys.
* **Optional durability check.** ``min_replicas=1`` makes every write wait (``WAIT``) until a replica has it,
  and raise :class:`NotReplicatedError` when none confirms in time: see lesson 09's failover drill.

Like the SDK's store, a write that has been sent finishes even when the caller is cancelled (then the
cancellation is raised), and items that are not valid JSON are skipped by `get_items`/`pop_item`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

_T = TypeVar("_T")

# Both scripts check the keys' types before anything is written or deleted: Redis does not roll a script back,
# so a WRONGTYPE error halfway through would leave a partial write.
CHECK_TYPES = """
local t1 = redis.call('TYPE', KEYS[1])['ok']
local t2 = redis.call('TYPE', KEYS[2])['ok']
if (t1 ~= 'none' and t1 ~= 'hash') or (t2 ~= 'none' and t2 ~= 'list') then
  return redis.error_reply('WRONGTYPE session keys hold another data type')
end
"""
# KEYS[1] session hash, KEYS[2] item list; ARGV[1] session id, ARGV[2] TTL in ms (0 = none), ARGV[3..] items.
APPEND_SCRIPT = CHECK_TYPES + """
local now = redis.call('TIME')[1]
redis.call('HSET', KEYS[1], 'session_id', ARGV[1])
redis.call('HSETNX', KEYS[1], 'created_at', now)
local length = 0
for first = 3, #ARGV, 1000 do  -- unpack() is limited to a few thousand values: push in chunks, still atomic
  length = redis.call('RPUSH', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], 'updated_at', now)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return length
"""
# KEYS as above. Checked and deleted in one script, so a key of another type is never half-deleted.
CLEAR_SCRIPT = CHECK_TYPES + """
return redis.call('DEL', KEYS[1], KEYS[2])
"""


_gates: weakref.WeakKeyDictionary[RedisCluster, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _gate(client: RedisCluster | Redis) -> contextlib.AbstractAsyncContextManager[object]:
    """A queue in front of a cluster client's connections.

    redis-py's async `RedisCluster` opens at most ``max_connections`` (default 100) per node and then *raises*
    MaxConnectionsError instead of waiting, so 1,000 conversations at once would fail. Operations here queue
    for one of ``max_connections`` places first (each uses one connection at a time), so no node is ever asked
    for more. A standalone `Redis` client's pool needs no gate (a BlockingConnectionPool waits by itself).
    """
    if not isinstance(client, RedisCluster):
        return contextlib.nullcontext()
    gate = _gates.get(client)
    if gate is None:
        limit = int(client.nodes_manager.connection_kwargs.get("max_connections") or 100)
        gate = _gates[client] = asyncio.Semaphore(limit)
    return gate


class NotReplicatedError(Exception):
    """The write is on the primary, but no replica confirmed it in time: a failover now would lose it."""


def hash_tag(session_id: str) -> str:
    """The part of the keys Redis hashes: the id itself when it is brace-free and non-empty."""
    if session_id and "{" not in session_id and "}" not in session_id:
        return session_id
    return "sha256-" + hashlib.sha256(session_id.encode()).hexdigest()


async def finish_then_raise_cancel(awaitable: Awaitable[_T]) -> _T:
    """Run a write to its end even if the caller is cancelled meanwhile; then raise the cancellation.

    A cancelled half-sent command would leave the outcome unknown and the connection mid-reply; waiting for
    the reply keeps "written or not" answerable (a read after the cancellation sees the write).
    """
    task = asyncio.ensure_future(awaitable)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as error:
            cancelled = cancelled or error
    if cancelled is not None:
        raise cancelled
    return task.result()


class RedisClusterSession(SessionABC):
    """A session on Redis Cluster or standalone Redis: same items and order as the SDK's `RedisSession`."""

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        *,
        redis_client: RedisCluster | Redis,
        key_prefix: str = "agents:session",
        ttl: int | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        min_replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> None:
        if "{" in key_prefix or "}" in key_prefix:
            raise ValueError("key_prefix must not contain braces: the session's hash tag comes after it")
        self.session_id = session_id
        self.session_settings = coerce_session_settings(session_settings) if session_settings is not None \
            else SessionSettings()
        self._redis = redis_client
        self._ttl_ms = 0 if ttl is None else int(ttl * 1000)
        self._min_replicas, self._replica_timeout_ms = min_replicas, replica_timeout_ms
        self.session_key = f"{key_prefix}:{{{hash_tag(session_id)}}}"
        self.messages_key = f"{self.session_key}:messages"
        self._lock = asyncio.Lock()  # one operation at a time per object, as the SDK's stores do

    @classmethod
    def from_url(cls, session_id: str, *, url: str, redis_kwargs: dict[str, Any] | None = None,
                 **kwargs: Any) -> RedisClusterSession:
        """A session with its own `RedisCluster` client (any node's URL); close it with :meth:`close`."""
        client = RedisCluster.from_url(url, **{"reinitialize_steps": 0, **(redis_kwargs or {})})  # see redis_connect
        session = cls(session_id, redis_client=client, **kwargs)
        session._owns_client = True
        return session

    _owns_client = False

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    # -- reading ------------------------------------------------------------------------------------------------
    @staticmethod
    def _decode(raw: list[Any]) -> list[TResponseInputItem]:
        items = []
        for value in raw:
            try:
                items.append(json.loads(value.decode("utf-8") if isinstance(value, bytes) else value))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # skipped, as the SDK's RedisSession does
        return items

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        session_limit = resolve_session_limit(limit, self.session_settings)
        async with self._lock, _gate(self._redis):
            if session_limit is None:
                return self._decode(await self._redis.lrange(self.messages_key, 0, -1))
            if session_limit <= 0:
                return []
            window = session_limit  # widened while corrupt entries sit among the newest, like the SDK
            while True:
                raw = await self._redis.lrange(self.messages_key, -window, -1)
                items = self._decode(raw)
                if len(items) >= session_limit or len(raw) < window:
                    return items[-session_limit:]
                window *= 2

    # -- writing ------------------------------------------------------------------------------------------------
    async def _confirm_replicated(self) -> None:
        if self._min_replicas <= 0:
            return
        # WAIT runs on the connection that made the write: the node that owns this session's slot.
        if isinstance(self._redis, RedisCluster):
            node = self._redis.get_node_from_key(self.messages_key)
            acked = await self._redis.execute_command("WAIT", self._min_replicas, self._replica_timeout_ms,
                                                      target_nodes=node)
        else:
            acked = await self._redis.execute_command("WAIT", self._min_replicas, self._replica_timeout_ms)
        if int(acked) < self._min_replicas:
            raise NotReplicatedError(
                f"session {self.session_id!r}: {acked} of {self._min_replicas} replicas confirmed the write "
                f"within {self._replica_timeout_ms} ms; it is on the primary only")

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        data = [json.dumps(item, separators=(",", ":")) for item in items]  # TypeError before any write

        async def write() -> None:
            await self._redis.eval(APPEND_SCRIPT, 2, self.session_key, self.messages_key,
                                   self.session_id, self._ttl_ms, *data)
            await self._confirm_replicated()

        async with self._lock, _gate(self._redis):
            await finish_then_raise_cancel(write())

    async def pop_item(self) -> TResponseInputItem | None:
        async def pop() -> TResponseInputItem | None:
            while True:
                raw = await self._redis.rpop(self.messages_key)
                if raw is None:
                    return None
                items = self._decode([raw])
                if items:
                    await self._confirm_replicated()
                    return items[0]

        async with self._lock, _gate(self._redis):
            return await finish_then_raise_cancel(pop())

    async def clear_session(self) -> None:
        async def clear() -> None:
            await self._redis.eval(CLEAR_SCRIPT, 2, self.session_key, self.messages_key)
            await self._confirm_replicated()

        async with self._lock, _gate(self._redis):
            await finish_then_raise_cancel(clear())
