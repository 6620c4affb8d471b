"""Which Redis a lesson uses: ``--database redis|redis-cluster|URL``, and a throwaway one when none is configured.

* ``redis``          -> ``REDIS_URL``; unset: a throwaway `redis-server` on a free loopback port
* ``redis-cluster``  -> ``REDIS_CLUSTER_URL`` (any node); unset: a throwaway cluster, 3 primaries + 3 replicas
* a ``redis://`` / ``rediss://`` URL -> that server; whether it is a cluster node is asked of the server

A throwaway server or cluster is stopped and its directory removed when the ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AuthenticationError, RedisError

from session_management.common.errors import CourseError
from session_management.common.settings import load_env

from .redis import LocalCluster, LocalRedis, RedisServer

CONNECT_TIMEOUT = 5.0


@dataclass
class RedisTarget:
    url: str
    cluster: bool
    client: Redis | RedisCluster
    lab: RedisServer | LocalCluster | None  # the throwaway server/cluster the course started, else None

    @property
    def description(self) -> str:
        kind = "Redis Cluster" if self.cluster else "Redis"
        where = "throwaway, started for this run" if self.lab else "configured"
        return f"{kind} at {redact_redis(self.url)} ({where})"


def redact_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def configured_url(database: str | None) -> tuple[str | None, bool | None]:
    """(URL or None for a throwaway, cluster? or None to ask the server)."""
    load_env()
    value = (database or "redis").strip()
    if value == "redis":
        return os.environ.get("REDIS_URL") or None, False
    if value == "redis-cluster":
        return os.environ.get("REDIS_CLUSTER_URL") or None, True
    if urlsplit(value).scheme in ("redis", "rediss"):
        return value, None
    raise CourseError(f"{value!r} is not a Redis database.",
                      "use --database redis, redis-cluster, or a URL such as redis://127.0.0.1:6379/0")


async def _connect(url: str, cluster: bool | None) -> tuple[Redis | RedisCluster, bool]:
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": CONNECT_TIMEOUT}
    probe = Redis.from_url(url, **options)
    try:
        info = await asyncio.wait_for(probe.info("cluster"), CONNECT_TIMEOUT * 2)
    except AuthenticationError as error:
        raise CourseError(f"Redis at {redact_redis(url)} refused the login: {error}",
                          "check the user and password in the URL (redis://user:password@host:port/0)") from None
    except (TimeoutError, RedisError, OSError) as error:
        raise CourseError(f"Redis at {redact_redis(url)} does not answer ({type(error).__name__}: {error}).",
                          "start it (bash scripts/db-servers.sh start redis, or docker compose up -d redis), "
                          "or unset REDIS_URL/REDIS_CLUSTER_URL to let the lesson start a throwaway one") from None
    finally:
        await probe.aclose()
    is_cluster = bool(info.get("cluster_enabled"))
    if cluster is not None and cluster != is_cluster:
        wanted = "a cluster node" if cluster else "a standalone server"
        raise CourseError(f"Redis at {redact_redis(url)} is not {wanted}.",
                          "point REDIS_URL at a standalone server and REDIS_CLUSTER_URL at a cluster node")
    client = cluster_client(url, **options) if is_cluster else Redis.from_url(url, **options)
    return client, is_cluster


def cluster_client(url: str, **options: object) -> RedisCluster:
    """A `RedisCluster` client that survives resharding under concurrent use.

    redis-py 8.1 by default rebuilds its slot map on every 5th MOVED reply by closing *all* its connections,
    including ones other tasks are sending on; those commands then fail with ``AttributeError: 'NoneType'
    object has no attribute 'writelines'`` (lesson 10's resharding drill hits it). ``reinitialize_steps=0``
    updates the map from each MOVED reply instead.
    """
    return RedisCluster.from_url(url, reinitialize_steps=0, **options)


@asynccontextmanager
async def open_redis(database: str | None) -> AsyncIterator[RedisTarget]:
    """The Redis for ``--database``, connected and checked; a throwaway one when none is configured."""
    url, cluster = configured_url(database)
    async with AsyncExitStack() as stack:
        lab: RedisServer | LocalCluster | None = None
        if url is None and cluster:
            lab = stack.enter_context(LocalCluster())
            url = lab.url
        elif url is None:
            lab = stack.enter_context(LocalRedis(config={"save": "3600 1", "appendonly": "no"}))
            url = lab.url
        client, is_cluster = await _connect(url, cluster)
        stack.push_async_callback(client.aclose)
        yield RedisTarget(url, is_cluster, client, lab)
