"""The Redis session stores under test, and throwaway Redis servers for them.

Tests start their own servers (`redis-server` on free loopback ports, one per test module) because they
restart and crash them. Without `redis-server` the Redis tests are skipped with the reason, or fail under
``REQUIRE_ALL_BACKENDS=1`` (CI installs Debian's ``redis-server``).

The three stores: the SDK's ``RedisSession`` on a standalone server (the control), and the course's
``RedisClusterSession`` on a standalone server and on a Redis Cluster. Each entry takes a connected client, a
session id and optional session settings, as the contract registry of ``tests/contract/registry.py`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from typing import Any

from agents.extensions.memory import RedisSession
from agents.memory import Session
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from session_management.common import CourseError
from session_management.servers.redis import LocalCluster, LocalRedis, redis_server_binary
from session_management.servers.redis_connect import cluster_client
from session_management.stores.redis_cluster_session import RedisClusterSession
from tests.support.backends import unavailable
from tests.support.opened import Opened

Settings = Any
PREFIX = "test"
REDIS_BACKENDS = ("redis", "redis-cluster")


def require_redis_server() -> None:
    """Skip (fail under REQUIRE_ALL_BACKENDS=1) when `redis-server` is not installed."""
    try:
        redis_server_binary()
    except CourseError as error:
        unavailable(f"redis unavailable: {error.problem}")


def connect(url: str, cluster: bool) -> Redis | RedisCluster:
    return cluster_client(url) if cluster else Redis.from_url(url)


def sdk_redis(client: Any, session_id: str, settings: Settings = None) -> Session:
    return RedisSession(session_id, redis_client=client, key_prefix=PREFIX, session_settings=settings)


def course_redis(client: Any, session_id: str, settings: Settings = None) -> Session:
    return RedisClusterSession(session_id, redis_client=client, key_prefix=PREFIX, session_settings=settings)


def messages_key(store: str, session_id: str, client: Any) -> str:
    if store == "sdk_redis":
        return f"{PREFIX}:{session_id}:messages"
    return RedisClusterSession(session_id, redis_client=client, key_prefix=PREFIX).messages_key


async def write_raw(store: str, client: Any, session_id: str, text: str) -> None:
    """Append one stored item whose stored form is exactly *text* (as another tool might corrupt it)."""
    await client.rpush(messages_key(store, session_id, client), text)


async def flush(client: Redis | RedisCluster) -> None:
    if isinstance(client, RedisCluster):
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.flushall()


# name -> (factory, runs on the cluster?)
STORES: dict[str, tuple[Callable[..., Session], bool]] = {
    "sdk_redis": (sdk_redis, False),
    "course_redis": (course_redis, False),
    "course_redis_cluster": (course_redis, True),
}


# -- Entries for the contract registry of tests/contract/registry.py (its ``Store`` interface) ----------
def open_client(url: str, cluster: bool) -> Opened[Redis | RedisCluster]:
    """url -> a client, closed on exit: the handle of the contract registry's Redis entries."""

    async def open_() -> Redis | RedisCluster:
        return connect(url, cluster)

    return Opened(open_, lambda client: client.aclose())


connect_standalone = partial(open_client, cluster=False)  # the ``sdk_redis`` / ``course_redis`` entries
connect_cluster = partial(open_client, cluster=True)  # the ``course_redis_cluster`` entry (url: any node)


def contract_url(backend: str, stack: ExitStack) -> str:
    """The server a contract case runs on: REDIS_URL / REDIS_CLUSTER_URL when set (CI starts both), else a
    throwaway server (or a three-primary cluster) of this test run, entered on *stack*."""
    require_redis_server()
    configured = os.environ.get("REDIS_CLUSTER_URL" if backend == "redis-cluster" else "REDIS_URL")
    if configured:
        return configured
    if backend == "redis-cluster":
        return stack.enter_context(LocalCluster(primaries=3, replicas_per_primary=0)).url
    return stack.enter_context(LocalRedis()).url


async def empty_redis(url: str, cluster: bool) -> None:
    """What the ``database_url`` fixture does for a Redis backend: an empty database before each case."""
    async with open_client(url, cluster) as client:
        await flush(client)


async def write_raw_sdk(client: Any, session_id: str, text: str) -> None:
    await write_raw("sdk_redis", client, session_id, text)


async def write_raw_course(client: Any, session_id: str, text: str) -> None:
    await write_raw("course_redis", client, session_id, text)
