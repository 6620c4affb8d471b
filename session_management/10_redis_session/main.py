"""Lesson 10: sessions in Redis, the SDK's RedisSession on one server and the course's store on a Redis Cluster.

    uv run python -m session_management.10_redis_session.main                            # throwaway redis-server
    uv run python -m session_management.10_redis_session.main --database redis-cluster   # throwaway cluster
    uv run python -m session_management.10_redis_session.main --database redis://127.0.0.1:6379/0

With no REDIS_URL / REDIS_CLUSTER_URL configured, the lesson starts its own server (or 3 primaries + 3
replicas) on free loopback ports and removes it at the end; that needs `redis-server` installed.
"""

from __future__ import annotations

import argparse

from agents import Agent
from redis.asyncio.cluster import RedisCluster

from session_management.common import choose_model, heading, lesson_parser, run_lesson
from session_management.servers.redis_connect import open_redis

from . import cluster, standalone


async def main(args: argparse.Namespace) -> None:
    choice = choose_model()
    heading("Lesson 10: sessions in Redis")
    async with open_redis(args.database) as target:
        print(f"model   : {choice.description}\ndatabase: {target.description}")
        agent = Agent(name="Assistant", instructions="Reply very concisely.", model=choice.model)
        if isinstance(target.client, RedisCluster):
            await cluster.layout(target.client)
            await cluster.sdk_fails(target.client)
            await cluster.course_store(agent, target.client)
            await cluster.drills(target)
        else:
            await standalone.conversation(agent, target)
            await standalone.stored_keys(target)
            await standalone.key_prefixes(target)
            await standalone.ttl(target)
            await standalone.memory(target)
            await standalone.persistence(target)
            print("\nNext: --database redis-cluster (sessions on a Redis Cluster, a failover, a resharding).")


def parser() -> argparse.ArgumentParser:
    result = lesson_parser("Lesson 10: RedisSession, and sessions on a Redis Cluster", database=False)
    result.add_argument("--database", default=None,
                        help="redis (REDIS_URL, else a throwaway server) | redis-cluster (REDIS_CLUSTER_URL, "
                             "else a throwaway cluster) | a redis:// URL")
    return result


if __name__ == "__main__":
    run_lesson(main, parser().parse_args())
