"""Lesson 09's Redis stores in this lesson's benchmark (``--redis``), each on a throwaway server of its own.

* ``sdk_redis``         the SDK's `RedisSession` on one standalone `redis-server`
* ``course_redis_1p``   the course's `RedisClusterSession` on a Redis Cluster of one primary
* ``course_redis_3p``   the same on a cluster of three primaries (a key's slot picks its primary)

Every server runs with AOF on (``appendonly yes``, ``appendfsync everysec``), Redis's usual durable setting,
no replicas. All of them share this machine's cores with the benchmark process itself: see lesson 09's README
for what the numbers mean on one machine and on three.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

from agents.extensions.memory import RedisSession
from agents.memory import Session
from redis.asyncio import BlockingConnectionPool, Redis

from session_management.common.redis_cluster_session import RedisClusterSession
from session_management.common.redis_connect import cluster_client
from session_management.common.redis_servers import LocalCluster, LocalRedis

DURABLE = {"appendonly": "yes", "appendfsync": "everysec"}
REDIS_STORES = ("sdk_redis", "course_redis_1p", "course_redis_3p")


async def make_redis_stores(pool_size: int) -> tuple[dict[str, Callable[[str], Any]], Callable[[], Awaitable[None]]]:
    """name -> factory(session_id) for the three Redis stores, and a cleanup coroutine that removes the servers."""
    servers = ExitStack()
    standalone = servers.enter_context(LocalRedis(config=DURABLE))
    one = servers.enter_context(LocalCluster(primaries=1, replicas_per_primary=0, config=DURABLE))
    three = servers.enter_context(LocalCluster(primaries=3, replicas_per_primary=0, config=DURABLE))
    # The standalone client gets the SQL stores' pool size (a blocking pool waits instead of failing). The cluster
    # clients cannot wait for a connection (redis-py raises MaxConnectionsError), so they open what they need.
    plain = Redis(connection_pool=BlockingConnectionPool.from_url(standalone.url, max_connections=pool_size))
    clients = [plain, cluster_client(one.url), cluster_client(three.url)]

    async def close() -> None:
        for client in clients:
            await client.aclose()
        servers.close()

    return {
        "sdk_redis": lambda sid: Turns(RedisSession(sid, redis_client=plain)),
        "course_redis_1p": lambda sid: Turns(RedisClusterSession(sid, redis_client=clients[1])),
        "course_redis_3p": lambda sid: Turns(RedisClusterSession(sid, redis_client=clients[2])),
    }, close


class Turns:
    """Only what a benchmark turn uses (the sessions' async close() is for clients they own; these own none)."""

    def __init__(self, session: Session) -> None:
        self.get_items, self.add_items = session.get_items, session.add_items
