"""Lesson 06 under database faults: refused, frozen and cut mid-query, through a real TCP proxy.

Each test counts the rows before and after (on a connection of its own, not through the proxy) to prove a
failed request stored nothing, and a retried one stored its turn exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.fault_proxy import FaultProxy
from tests.support.web_service import ALICE, auth, database_module, new_conversation, row_counts, say, service

pytestmark = pytest.mark.parametrize("backend", ["postgres", "mysql"])
FAST = database_module.Timeouts(database=1.0, health=0.5)  # small limits keep the frozen case quick
UNAVAILABLE = {"error": "the database is unavailable; please retry shortly"}
HANG_GUARD_S = 30  # a hang fails the test instead of stalling the suite; not a timing assertion


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[FaultProxy]:
    url = make_url(database_url)
    default_port = 5432 if url.get_backend_name() == "postgresql" else 3306
    fault_proxy = FaultProxy(url.host or "127.0.0.1", url.port or default_port)
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.close()


def through(proxy: FaultProxy, database_url: str) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    if url.get_backend_name() == "postgresql":
        url = url.update_query_dict({"ssl": "disable"})  # plain bytes, so cut_when() can see the marker
    return url.render_as_string(hide_password=False)


async def expect_unavailable(client: httpx.AsyncClient, chat: str) -> None:
    """Every kind of request answers 503 in the documented shape, with Retry-After."""
    async with asyncio.timeout(HANG_GUARD_S):
        for method, path, body in (("POST", f"/api/conversations/{chat}/messages", {"message": "What is my name?"}),
                                   ("GET", "/api/conversations", None),
                                   ("POST", "/api/conversations", {}),
                                   ("GET", f"/api/conversations/{chat}/history", None),
                                   ("GET", "/api/health", None)):
            response = await client.request(method, path, json=body, headers=auth(ALICE))
            assert response.status_code == 503, (method, path, response.text)
            assert response.json() == UNAVAILABLE and response.headers["retry-after"] == "5"


@pytest.mark.parametrize("fault", ["refuse", "stall"])
async def test_refused_or_frozen_database_gives_503_and_nothing_is_lost(
        database_url: str, proxy: FaultProxy, fault: str) -> None:
    async with service(through(proxy, database_url), timeouts=FAST) as client:
        chat = await new_conversation(client, ALICE)
        await say(client, ALICE, chat, "My name is Alice.")
        before = await row_counts(database_url)
        assert before == {"conversations": 1, "agent_sessions": 1, "agent_messages": 2}
        getattr(proxy, fault)()
        await expect_unavailable(client, chat)
        await proxy.heal()
        assert await row_counts(database_url) == before  # nothing half-written while it failed
        assert (await client.get("/api/health")).status_code == 200  # the pool recovered by itself
        assert await say(client, ALICE, chat, "What is my name?") == "Your name is Alice."
        after = await row_counts(database_url)
        assert after == {**before, "agent_messages": 4}  # the retried turn, exactly once


async def test_connection_cut_mid_query_stores_the_turn_once(database_url: str, proxy: FaultProxy) -> None:
    async with service(through(proxy, database_url), timeouts=FAST) as client:
        chat = await new_conversation(client, ALICE)
        await say(client, ALICE, chat, "My name is Alice.")
        before = await row_counts(database_url)
        # Cut when the *reply* goes up: the SDK alone would have stored the user's message by then, so a 503
        # here plus the client's retry would store it twice. The marker is in the reply only.
        message = "My name is Cuthere."
        proxy.cut_when(b"Nice to meet you, Cuthere")
        async with asyncio.timeout(HANG_GUARD_S):
            response = await client.post(f"/api/conversations/{chat}/messages", json={"message": message},
                                         headers=auth(ALICE))
        assert proxy.cuts == 1 and response.status_code == 503, response.text
        assert await row_counts(database_url) == before  # the server rolled the cut transaction back
        await say(client, ALICE, chat, message)  # the client retries, as the 503 says
        assert await row_counts(database_url) == {**before, "agent_messages": before["agent_messages"] + 2}
        lines = (await client.get(f"/api/conversations/{chat}/history", headers=auth(ALICE))).json()["lines"]
        assert lines.count(f"user: {message}") == 1


async def test_a_cut_while_streaming_is_reported_in_band_and_stores_nothing(
        database_url: str, proxy: FaultProxy) -> None:
    async with service(through(proxy, database_url), timeouts=FAST) as client:
        chat = await new_conversation(client, ALICE)
        before = await row_counts(database_url)
        proxy.cut_when(b"Nice to meet you, Streamer")  # in the reply, saved after the last delta
        async with asyncio.timeout(HANG_GUARD_S):
            response = await client.post(f"/api/conversations/{chat}/messages/stream",
                                         json={"message": "My name is Streamer."}, headers=auth(ALICE))
        assert proxy.cuts == 1 and response.status_code == 200  # the status line went out with the first delta
        events = response.text.strip().split("\n\n")
        kind, data = events[-1].split("\n")
        assert kind == "event: error" and json.loads(data.removeprefix("data: ")) == UNAVAILABLE
        assert not any(event.startswith("event: done") for event in events)
        assert await row_counts(database_url) == before
