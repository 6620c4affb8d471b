"""Lesson 10, part 1: the SDK's RedisSession on one Redis server."""

from __future__ import annotations

import asyncio

from agents import Agent, Runner
from agents.extensions.memory import RedisSession
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from session_management.common import agent_says, note, show_items, step, user_says
from session_management.servers.redis import RedisServer
from session_management.servers.redis_connect import RedisTarget

PREFIX = "lesson10"


async def ask(agent: Agent, text: str, session: RedisSession) -> None:
    user_says(text)
    agent_says((await Runner.run(agent, text, session=session)).final_output)


def text(reply: bytes | str) -> str:
    """A reply as text: redis-py returns bytes unless the client was made with decode_responses=True."""
    return reply.decode() if isinstance(reply, bytes) else reply


async def show_keys(client: Redis | RedisCluster, pattern: str) -> None:
    """What `redis-cli --scan --pattern ...` and `TYPE` would show."""
    for key in sorted([text(k) async for k in client.scan_iter(match=pattern)]):
        kind = text(await client.type(key))
        size = await client.llen(key) if kind == "list" else await client.hlen(key)
        note(f"{key:<34} {kind:<5} {size} {'items' if kind == 'list' else 'fields'}")


async def conversation(agent: Agent, target: RedisTarget) -> None:
    step("1. RedisSession.from_url: a conversation stored in Redis")
    session = RedisSession.from_url("ada", url=target.url, key_prefix=PREFIX)
    try:
        await session.clear_session()
        await ask(agent, "Hi! My name is Ada and I live in London.", session)
        await ask(agent, "What is my name?", session)
    finally:
        await session.close()  # from_url made the client, so the session closes it
    note("A new session object with the same id (as after a restart of the app) reads the same list:")
    again = RedisSession("ada", redis_client=target.client, key_prefix=PREFIX)
    show_items(await again.get_items())


async def stored_keys(target: RedisTarget) -> None:
    step("2. What is stored (redis-cli --scan --pattern 'lesson10:ada*')")
    client = target.client
    await show_keys(client, f"{PREFIX}:ada*")
    first = text((await client.lrange(f"{PREFIX}:ada:messages", 0, 0))[0])
    note(f"LRANGE {PREFIX}:ada:messages 0 0 -> {first}")
    fields = {text(k): text(v) for k, v in (await client.hgetall(f"{PREFIX}:ada")).items()}
    note(f"HGETALL {PREFIX}:ada -> fields {sorted(fields)} (timestamps in Unix seconds)")


async def key_prefixes(target: RedisTarget) -> None:
    step("3. key_prefix: two applications, one server, the same session id")
    shop = RedisSession("user-1", redis_client=target.client, key_prefix=f"{PREFIX}-shop")
    support = RedisSession("user-1", redis_client=target.client, key_prefix=f"{PREFIX}-support")
    for session, text in ((shop, "I want to buy a kettle."), (support, "My kettle is broken.")):
        await session.clear_session()
        await session.add_items([{"role": "user", "content": text}])
    note(f"shop sees    {[i.get('content') for i in await shop.get_items()]}")
    note(f"support sees {[i.get('content') for i in await support.get_items()]}")


async def ttl(target: RedisTarget) -> None:
    step("4. ttl: the whole conversation expires a fixed time after its LAST WRITE")
    session = RedisSession("ttl-demo", redis_client=target.client, key_prefix=PREFIX, ttl=1)
    await session.clear_session()
    await session.add_items([{"role": "user", "content": "Remember me for one second."}])
    key = f"{PREFIX}:ttl-demo:messages"
    note(f"after add_items: PTTL {key} -> about {round(await target.client.pttl(key), -2)} ms")
    await asyncio.sleep(0.6)
    await session.get_items()
    note(f"a read 0.6 s later does not extend it: about {round(await target.client.pttl(key), -2)} ms left")
    await session.add_items([{"role": "user", "content": "Still here?"}])
    note(f"a write does (both keys): about {round(await target.client.pttl(key), -2)} ms")
    await asyncio.sleep(1.2)
    note(f"1.2 s later: {len(await session.get_items())} items, EXISTS -> {await target.client.exists(key)}")


async def memory(target: RedisTarget, conversations: int = 100, turns: int = 10) -> None:
    step(f"5. Memory: {conversations} conversations of {turns} turns each")
    client = target.client
    before = (await client.info("memory"))["used_memory"]
    answer = "We agreed on the second Tuesday of next month."
    for number in range(conversations):
        session = RedisSession(f"mem-{number}", redis_client=client, key_prefix=PREFIX)
        await session.clear_session()
        for turn in range(turns):
            await session.add_items([{"role": "user", "content": f"Question {turn} about the launch date?"},
                                     {"role": "assistant", "content": answer}])
    grown = (await client.info("memory"))["used_memory"] - before
    one = sum([await client.memory_usage(k) or 0 for k in (f"{PREFIX}:mem-0", f"{PREFIX}:mem-0:messages")])
    raw = sum(len(v) for v in await client.lrange(f"{PREFIX}:mem-0:messages", 0, -1))
    note(f"MEMORY USAGE of one conversation's two keys: {one / 1024:.1f} KiB for {raw / 1024:.1f} KiB of JSON")
    note(f"used_memory grew {grown / 1024 / 1024:.2f} MiB: {grown / conversations / 1024:.1f} KiB per conversation")
    per_million = grown / conversations * 1e6 / 2**30
    note(f"Everything lives in RAM: 1 million such conversations need ~{per_million:.1f} GiB.")
    await client.delete(*[k async for k in client.scan_iter(match=f"{PREFIX}:mem-*")])


async def persistence(target: RedisTarget) -> None:
    step("6. Persistence: what a restart keeps")
    server = target.lab
    if not isinstance(server, RedisServer):
        config = await target.client.config_get("appendonly")
        config.update(await target.client.config_get("save"))
        note(f"Your server: {config}. The lesson restarts only servers it started itself.")
        return
    session = RedisSession("durable", redis_client=target.client, key_prefix=PREFIX)

    async def write_then(how: str, crash: bool) -> None:
        await session.clear_session()
        await session.add_items([{"role": "user", "content": "Please remember this."}])
        server.restart(crash=crash)
        await target.client.connection_pool.disconnect()  # type: ignore[union-attr]  # standalone: drop old connections
        kept = len(await session.get_items())
        note(f"{how:<58} -> {kept} item{'s' if kept != 1 else ''} after the restart")

    await write_then("RDB snapshots only (save 3600 1), then a crash (SIGKILL)", crash=True)
    await write_then("RDB snapshots only, then a clean shutdown (SIGTERM saves)", crash=False)
    server.config["appendonly"] = "yes"  # AOF: every write is appended to a log, fsynced once a second
    server.restart()
    await target.client.connection_pool.disconnect()  # type: ignore[union-attr]  # standalone, as above
    await write_then("AOF (appendonly yes, appendfsync everysec), then a crash", crash=True)
    note("A crash of the process keeps AOF writes (they are in the OS's page cache); a crash of the machine")
    note("can lose the last second. RDB alone loses everything since the last snapshot.")
