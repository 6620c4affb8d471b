"""`RedisClusterSession`: the SDK's `Session` protocol on Redis Cluster (and on a standalone Redis too).

The SDK's `RedisSession` (0.24.0) refuses to append or clear through a `RedisCluster` client: it makes those
atomic with `WATCH`/`MULTI` over three keys that Redis Cluster may place on three different nodes. This store
keeps the same data model (a hash with ``session_id``/``created_at``/``updated_at`` and a list of JSON items,
oldest first, serialized exactly as `RedisSession` does) and makes it work on a cluster:

* **One hash slot per session.** Both keys carry the session id in a hash tag, ``{prefix}:{<id>}`` and
  ``{prefix}:{<id>}:messages``: Redis hashes only the part between the braces, so both keys of a session
  always live on the same node, and a script may touch both. (An id that itself contains a brace, is empty,
  or is spelled like such a tag, is tagged by its SHA-256 instead: see :func:`hash_tag`.)
* **Atomic writes.** `add_items` is one Lua script (type checks, then ``RPUSH`` and the hash fields and TTL);
  Redis runs a script alone, so concurrent writers never interleave items and readers never see half a batch.
  `pop_item` is one ``RPOP``; `clear_session` one script that checks types and ``DEL``s both keys.
* **Exactly once under retries.** redis-py re-sends a command after a timeout or a dropped connection, when
  the first attempt may well have run. Each `add_items` call carries a random token; the script records it
  (a sorted set ``{prefix}:{<id>}:appends``, same slot, entries kept :data:`RETRY_WINDOW_MS`) and stores
  nothing for a token it has seen.
* **Optional durability check.** ``min_replicas=1`` makes every write wait (``WAIT``) until a replica has it,
  and raise :class:`NotReplicatedError` when none confirms in time: see lesson 10's failover drill. ``WAIT``
  counts only the writes of the connection it is sent on, so the write and its ``WAIT`` go out back to back
  on one connection (:meth:`RedisClusterSession._on_one_connection`).

A write runs to its end once called, even when the caller is cancelled meanwhile, also while it still waits
for its turn (then the cancellation is raised). Items that are not valid JSON are skipped by
`get_items`/`pop_item`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit
from redis.asyncio import Redis
from redis.asyncio.cluster import PipelineCommand, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
# How long an append's token is remembered: far longer than redis-py's retries of one call (seconds), so a
# re-sent script finds it; short enough that the set stays small (one entry per append in the window).
RETRY_WINDOW_MS = 10 * 60 * 1000
# KEYS[1] session hash, KEYS[2] item list, KEYS[3] recent append tokens (sorted set, score = server time in ms);
# ARGV[1] session id, ARGV[2] TTL in ms (0 = none), ARGV[3] this append's token, ARGV[4] RETRY_WINDOW_MS,
# ARGV[5..] items.
APPEND_SCRIPT = CHECK_TYPES + """
local t3 = redis.call('TYPE', KEYS[3])['ok']
if t3 ~= 'none' and t3 ~= 'zset' then
  return redis.error_reply('WRONGTYPE session keys hold another data type')
end
local clock = redis.call('TIME')
local now = clock[1]
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(ARGV[4])
local ttl = tonumber(ARGV[2])
if ttl > 0 and ttl < window then window = ttl end  -- the tokens never outlive the session's own keys
if redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  -- A retry of an append that already ran: store nothing. One write still happens (the token set's expiry),
  -- so a WAIT that follows on this connection waits for an offset past the first attempt's write.
  redis.call('PEXPIRE', KEYS[3], window)
  return redis.call('LLEN', KEYS[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms - window)
redis.call('ZADD', KEYS[3], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[3], window)
redis.call('HSET', KEYS[1], 'session_id', ARGV[1])
redis.call('HSETNX', KEYS[1], 'created_at', now)
local length = 0
for first = 5, #ARGV, 1000 do  -- unpack() is limited to a few thousand values: push in chunks, still atomic
  length = redis.call('RPUSH', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], 'updated_at', now)
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return length
"""
# KEYS as above. Checked and deleted in one script, so a key of another type is never half-deleted. The token
# set stays until it expires: an append re-sent after the clear still finds its token and stores nothing.
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


_HASHED = re.compile(r"sha256-[0-9a-f]{64}")


def hash_tag(session_id: str) -> str:
    """The part of the keys Redis hashes: the id itself when it is brace-free and non-empty.

    Any other id is tagged ``sha256-<its SHA-256>``. An id that already has that exact form is hashed too, so
    no plain id can equal another id's hashed tag (``sha256-<hash of "{alice}">`` and ``{alice}`` are two
    sessions). Every other id keeps the keys it had. Before this rule, an id of that form shared its keys
    with the braced id, so whatever is stored there belongs to the braced id, which still reads it.
    """
    if session_id and "{" not in session_id and "}" not in session_id and not _HASHED.fullmatch(session_id):
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
        self.tokens_key = f"{self.session_key}:appends"  # recent append tokens: a re-sent append stores nothing
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
    async def _serialized(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        async with self._lock, _gate(self._redis):
            return await operation()

    def _wait_command(self) -> list[tuple[Any, ...]]:
        return [("WAIT", self._min_replicas, self._replica_timeout_ms)] if self._min_replicas > 0 else []

    def _check_replicated(self, reply: Any) -> None:
        """*reply* is WAIT's answer (or the error it got): raise NotReplicatedError unless enough replicas have it."""
        if isinstance(reply, Exception):  # e.g. the primary was demoted meanwhile ("UNBLOCKED ..."): unknown
            raise NotReplicatedError(
                f"session {self.session_id!r}: the write is on the primary, but WAIT failed "
                f"({type(reply).__name__}: {reply}); no replica is known to have it") from reply
        if int(reply) < self._min_replicas:
            raise NotReplicatedError(
                f"session {self.session_id!r}: {reply} of {self._min_replicas} replicas confirmed the write "
                f"within {self._replica_timeout_ms} ms; it is on the primary only")

    async def _on_one_connection(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send *commands* back to back on ONE connection to the session's primary; their replies, errors included.

        ``WAIT`` counts the writes of the connection it arrives on. redis-py's cluster client takes a pooled
        connection per command (they rotate), so a separate ``WAIT`` usually lands on another connection and
        answers at once for writes it never made. Here the batch goes out on one connection; a redirect
        (``MOVED``/``ASK``/``TRYAGAIN``) of the first command re-sends the whole batch to the right node, and a
        dropped connection or timeout re-sends it under the client's retry policy (safe: writes are idempotent
        by token, and a re-sent one still writes, so its ``WAIT`` covers the first attempt).
        """
        client = self._redis
        if not isinstance(client, RedisCluster):
            async with client.pipeline(transaction=False) as pipe:  # one connection, re-sent whole on errors
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=False))

        async def attempt() -> list[Any]:
            asking = None
            for _ in range(client.RedisClusterRequestTTL):
                if client._initialize:  # a failed attempt asked for a fresh slot map, as redis-py itself does
                    try:
                        await client.initialize()
                    except RedisError as error:  # retried like a dropped connection
                        raise RedisConnectionError(f"re-reading the cluster's slot map failed: {error}") from error
                try:
                    node = asking or client.get_node_from_key(self.messages_key)
                except SlotNotCoveredError as error:
                    client._initialize = True
                    raise RedisConnectionError(str(error)) from error
                batch = [PipelineCommand(n, *c) for n, c in enumerate(([("ASKING",)] if asking else []) + [*commands])]
                assert node is not None  # get_node_from_key returns None only when asked for a replica
                await node.execute_pipeline(batch)
                replies = [command.result for command in batch[1 if asking else 0:]]
                first, asking = replies[0], None
                if isinstance(first, (RedisConnectionError, RedisTimeoutError)):
                    raise first
                if isinstance(first, MovedError):
                    await client.nodes_manager.move_slot(first)
                elif isinstance(first, AskError):
                    asking = client.get_node(host=first.host, port=first.port)
                    if asking is None:
                        await client.nodes_manager.initialize()  # a node added a moment ago
                        asking = client.get_node(host=first.host, port=first.port)
                elif isinstance(first, TryAgainError):
                    await asyncio.sleep(0.05)
                elif isinstance(first, (ClusterDownError, SlotNotCoveredError)):
                    await asyncio.sleep(0.25)
                    client._initialize = True
                else:
                    return replies
            raise ClusterError("TTL exhausted: redirected too many times")

        async def failed(_: Exception) -> None:
            client._initialize = True

        return await client.retry.call_with_retry(attempt, failed)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        data = [json.dumps(item, separators=(",", ":")) for item in items]  # TypeError before any write
        token = uuid.uuid4().hex  # the same for every re-send of this call

        async def write() -> None:
            append = ("EVAL", APPEND_SCRIPT, 3, self.session_key, self.messages_key, self.tokens_key,
                      self.session_id, self._ttl_ms, token, RETRY_WINDOW_MS, *data)
            replies = await self._on_one_connection([append, *self._wait_command()])
            if isinstance(replies[0], Exception):
                raise replies[0]
            if self._min_replicas > 0:
                self._check_replicated(replies[1])

        await finish_then_raise_cancel(self._serialized(write))

    async def pop_item(self) -> TResponseInputItem | None:
        async def pop() -> TResponseInputItem | None:
            while True:
                replies = await self._on_one_connection([("RPOP", self.messages_key), *self._wait_command()])
                if isinstance(replies[0], Exception):
                    raise replies[0]
                if replies[0] is None:
                    return None
                items = self._decode([replies[0]])
                if items:
                    if self._min_replicas > 0:
                        self._check_replicated(replies[1])
                    return items[0]

        return await finish_then_raise_cancel(self._serialized(pop))

    async def clear_session(self) -> None:
        async def clear() -> None:
            replies = await self._on_one_connection(
                [("EVAL", CLEAR_SCRIPT, 2, self.session_key, self.messages_key), *self._wait_command()])
            if isinstance(replies[0], Exception):
                raise replies[0]
            if self._min_replicas > 0:
                self._check_replicated(replies[1])

        await finish_then_raise_cancel(self._serialized(clear))
