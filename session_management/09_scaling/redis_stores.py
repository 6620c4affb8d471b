"""Lesson 10's Redis stores in this lesson's benchmark (``--redis``), each on a throwaway server of its own.

* ``sdk_redis``         the SDK's `RedisSession` on one standalone `redis-server`
* ``course_redis_1p``   the course's `RedisClusterSession` on a Redis Cluster of one primary
* ``course_redis_3p``   the same on a cluster of three primaries (a key's slot picks its primary)

Every server runs with AOF on (``appendonly yes``, ``appendfsync everysec``), Redis's usual durable setting,
no replicas. All of them share this machine's cores with the benchmark process itself: see lesson 10's README
for what the numbers mean on one machine and on three.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from agents.extensions.memory import RedisSession
from agents.memory import Session
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.servers.redis import LocalCluster, LocalRedis
from session_management.servers.redis_connect import cluster_client
from session_management.stores.redis_cluster_session import RedisClusterSession

from .stores import Close, Opener, StoreFactory

DURABLE = {"appendonly": "yes", "appendfsync": "everysec"}


def _opener(server: Callable[[], AbstractContextManager[Any]], client: Callable[[str, int], Any],
            session: Callable[[str, Any], Session]) -> Opener:
    """An `Opener` for the benchmark: a throwaway server of its own, removed by the returned cleanup."""

    async def open_store(url: str, engine: AsyncEngine, pool_size: int) -> tuple[StoreFactory, Close]:
        servers = ExitStack()
        redis = client(servers.enter_context(server()).url, pool_size)

        async def close() -> None:
            await redis.aclose()
            servers.close()

        return (lambda sid: Turns(session(sid, redis))), close

    return open_store


def _blocking_client(url: str, pool_size: int) -> Redis:
    # The SQL stores' pool size; a blocking pool waits for a connection instead of failing.
    return Redis(connection_pool=BlockingConnectionPool.from_url(url, max_connections=pool_size))


def _cluster_client(url: str, pool_size: int) -> Any:
    return cluster_client(url)  # a cluster client cannot wait for a connection: it opens what it needs


def _sdk(session_id: str, redis: Any) -> Session:
    return RedisSession(session_id, redis_client=redis)


def _course(session_id: str, redis: Any) -> Session:
    return RedisClusterSession(session_id, redis_client=redis)


# The benchmark runs these once (with its first database), labelled "redis".
REDIS_STORES: dict[str, Opener] = {
    "sdk_redis": _opener(lambda: LocalRedis(config=DURABLE), _blocking_client, _sdk),
    "course_redis_1p": _opener(lambda: LocalCluster(primaries=1, replicas_per_primary=0, config=DURABLE),
                               _cluster_client, _course),
    "course_redis_3p": _opener(lambda: LocalCluster(primaries=3, replicas_per_primary=0, config=DURABLE),
                               _cluster_client, _course),
}


class Turns:
    """Only what a benchmark turn uses (the sessions' async close() is for clients they own; these own none)."""

    def __init__(self, session: Session) -> None:
        self.get_items, self.add_items, self.clear_session = (session.get_items, session.add_items,
                                                              session.clear_session)
