"""Lesson 06: only yours (owners compared byte for byte) and exactly once (Idempotency-Key), on every backend.

Defects these tests were written for: on MariaDB, users ``alice``, ``Alice``, ``alicé`` and ``alice `` owned
each other's conversations (the owner column was case- and accent-insensitive and padded); a retried turn was
stored twice when its reply was lost after the commit; a NUL in the first message gave a 500 after the turn was
committed on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from session_management.common import OfflineModel
from tests.lessons.test_lesson_06 import running_server  # noqa: F401 - a fixture this module's last test uses
from tests.support.web_service import ALICE, app_module, auth, new_conversation, row_counts, service

# Names an identity provider keeps apart (subject ids are compared exactly), and that a case-insensitive,
# accent-insensitive or space-padding comparison would merge.
NEAR_NAMES = ["alice", "Alice", "ALICE", "alicé", unicodedata.normalize("NFD", "alicé"), "alice ", "alice\t"]


@pytest.fixture
async def near_twins(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The service with one token per near-identical name; yields the client and name -> token."""
    tokens = {name: f"token-{n:02d}-{uuid.uuid4().hex}" for n, name in enumerate(NEAR_NAMES)}
    app = app_module.create_app(database_url, {token: name for name, token in tokens.items()}, OfflineModel())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                     timeout=60) as client:
            yield client, tokens


async def test_users_differing_only_by_case_accent_space_or_normal_form_share_nothing(
        near_twins: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = near_twins
    chats = {}
    for name, token in tokens.items():
        chats[name] = await new_conversation(client, token, f"{name!r}'s")
        reply = await client.post(f"/api/conversations/{chats[name]}/messages",
                                  json={"message": f"My secret is {len(chats)}."}, headers=auth(token))
        assert reply.status_code == 200, reply.text
    broken = []
    for owner, chat in chats.items():
        for intruder, token in tokens.items():
            if intruder == owner:
                continue
            for method, path, body in (
                ("GET", f"/api/conversations/{chat}", None),
                ("GET", f"/api/conversations/{chat}/history", None),
                ("POST", f"/api/conversations/{chat}/messages", {"message": "What is my secret?"}),
                ("POST", f"/api/conversations/{chat}/messages/stream", {"message": "What is my secret?"}),
                ("POST", f"/api/conversations/{chat}/undo", None),
                ("DELETE", f"/api/conversations/{chat}", None),
            ):
                answer = await client.request(method, path, json=body, headers=auth(token))
                if answer.status_code != 404:
                    broken.append(f"{intruder!r} {method} {path.split('/', 4)[-1]} of {owner!r}: {answer.status_code}")
    assert broken == []
    for name, token in tokens.items():  # each lists exactly their own, and it is intact
        listing = (await client.get("/api/conversations", headers=auth(token))).json()
        assert [c["id"] for c in listing["items"]] == [chats[name]], name
        history = (await client.get(f"/api/conversations/{chats[name]}/history", headers=auth(token))).json()
        assert len(history["items"]) == 2, name


async def send(client: httpx.AsyncClient, chat: str, message: str, key: str | None, *,
               streamed: bool = False) -> httpx.Response:
    headers = auth(ALICE) | ({"Idempotency-Key": key} if key else {})
    path = f"/api/conversations/{chat}/messages" + ("/stream" if streamed else "")
    return await client.post(path, json={"message": message}, headers=headers)


def done_reply(response: httpx.Response) -> str:
    events = [block for block in response.text.split("\n\n") if block]
    last = events[-1].splitlines()
    assert last[0] == "event: done", response.text
    return str(json.loads(last[1].removeprefix("data: "))["reply"])


async def items(client: httpx.AsyncClient, chat: str) -> list[Any]:
    return list((await client.get(f"/api/conversations/{chat}/history", headers=auth(ALICE))).json()["items"])


@pytest.mark.parametrize("first_streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("retry_streamed", [False, True], ids=["retry json", "retry stream"])
async def test_a_retry_with_the_same_key_gets_the_stored_reply_and_stores_nothing(
        database_url: str, first_streamed: bool, retry_streamed: bool) -> None:
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        first = await send(client, chat, "My name is Ada.", "key-1", streamed=first_streamed)
        reply = done_reply(first) if first_streamed else first.json()["reply"]
        again = await send(client, chat, "My name is Ada.", "key-1", streamed=retry_streamed)
        assert again.status_code == 200
        assert (done_reply(again) if retry_streamed else again.json()["reply"]) == reply
        assert len(await items(client, chat)) == 2  # stored once
        other = await send(client, chat, "My name is Ada.", "key-2")  # a new key is a new turn
        assert other.status_code == 200 and len(await items(client, chat)) == 4


async def test_a_key_reused_for_another_message_is_409_and_stores_nothing(database_url: str) -> None:
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        assert (await send(client, chat, "My name is Ada.", "key-1")).status_code == 200
        for streamed in (False, True):
            reused = await send(client, chat, "My name is Bob.", "key-1", streamed=streamed)
            assert reused.status_code == 409 and "Idempotency-Key" in reused.json()["error"], reused.text
        assert len(await items(client, chat)) == 2
        elsewhere = await new_conversation(client, ALICE)  # keys are per conversation
        assert (await send(client, elsewhere, "My name is Bob.", "key-1")).status_code == 200


async def test_simultaneous_duplicates_store_one_turn(database_url: str) -> None:
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        answers = await asyncio.gather(*(send(client, chat, "My name is Ada.", "same", streamed=n % 2 == 1)
                                         for n in range(8)))
        replies = {done_reply(a) if n % 2 else a.json()["reply"] for n, a in enumerate(answers)}
        assert [a.status_code for a in answers] == [200] * 8 and len(replies) == 1
        assert len(await items(client, chat)) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 101, "ключ"])
async def test_a_malformed_key_is_422(database_url: str, key: str) -> None:
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        headers: dict[str, str | bytes] = {**auth(ALICE), "Idempotency-Key": key.encode()}  # UTF-8 bytes, raw
        answer = await client.post(f"/api/conversations/{chat}/messages", json={"message": "hi"}, headers=headers)
        assert answer.status_code == 422 and any("Idempotency-Key" in p for p in answer.json()["problems"])
        assert await items(client, chat) == []


@pytest.mark.parametrize("raw", ['{"message": "hi\\u0000there"}', '{"message": "hi \\ud800 there"}'],
                         ids=["NUL", "lone surrogate"])
async def test_text_no_database_can_store_is_422_before_anything_is_stored(database_url: str, raw: str) -> None:
    async with service(database_url) as client:
        chat = await new_conversation(client, ALICE)
        headers = auth(ALICE) | {"Content-Type": "application/json"}
        for path in ("messages", "messages/stream"):
            answer = await client.post(f"/api/conversations/{chat}/{path}", content=raw, headers=headers)
            assert answer.status_code == 422, answer.text
            assert answer.json()["problems"][0].startswith("message: ")
        title = raw.replace('"message"', '"title"')
        answer = await client.post("/api/conversations", content=title, headers=headers)
        assert answer.status_code == 422, answer.text
        counts = await row_counts(database_url)
        assert counts["agent_messages"] == 0 and counts["conversations"] == 1


def test_a_client_that_drops_after_the_last_word_retries_and_the_turn_is_stored_once(
        running_server: str) -> None:  # noqa: F811 - the fixture imported above
    """A real server and a client that hangs up after the last delta, before `done`: its retry with the same
    key gets the reply and stores nothing (without a key the turn was stored twice in 31 of 40 trials)."""
    headers = auth("alice-demo-token")
    with httpx.Client(base_url=running_server, timeout=30) as http:
        chat = http.post("/api/conversations", json={}, headers=headers).json()["id"]
        expected = "Nice to meet you, Ada! I'll remember that."
        for trial in range(5):
            key = f"trial-{trial}"
            text = drop_after_text(running_server, chat, "My name is Ada.", key, expected)
            assert text == expected
            retry = http.post(f"/api/conversations/{chat}/messages", json={"message": "My name is Ada."},
                              headers=headers | {"Idempotency-Key": key})
            assert retry.status_code == 200 and retry.json()["reply"] == expected
            stored = http.get(f"/api/conversations/{chat}/history", headers=headers).json()["items"]
            assert len(stored) == 2 * (trial + 1), f"trial {trial}: {len(stored)} items"


def drop_after_text(base: str, chat: str, message: str, key: str, expected: str) -> str:
    """POST the streamed message over a raw socket, read deltas until their text is *expected*, then close."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"message": message}).encode()
    request = (f"POST /api/conversations/{chat}/messages/stream HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Bearer alice-demo-token\r\nIdempotency-Key: {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    text, received = "", b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        while text != expected:
            chunk = connection.recv(65536)
            assert chunk, f"the server closed the stream after {text!r}"
            received += chunk
            text = "".join(json.loads(line[6:])["text"] for line in received.decode(errors="replace").splitlines()
                           if line.startswith("data: ") and '"text"' in line)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return text


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_first_burst_on_a_fresh_sqlite_file_gets_no_errors(database_url: str) -> None:
    """Defect: in the first burst after start, the SDK's SQLite connect hook (registered by the first session
    built, mid-burst) raised 'deque mutated during iteration', later 'database is locked' from its PRAGMA on
    a newly pooled connection: up to 6 of 60 concurrent streams failed."""
    failures: list[str] = []
    async with service(database_url) as client:
        chats = await asyncio.gather(*(new_conversation(client, ALICE) for _ in range(20)))
    for round_ in range(2):  # each round a fresh start (a new app, engine and pool) and at once a burst
        async with service(database_url) as client:

            async def turn(chat: str, n: int, round_: int = round_) -> None:
                answer = await send(client, chat, f"My name is User{n}.", None, streamed=n % 2 == 0)
                if answer.status_code != 200 or "event: error" in answer.text:
                    failures.append(f"round {round_} turn {n}: {answer.status_code} {answer.text[-200:]}")

            async def read(chat: str, round_: int = round_) -> None:
                answer = await client.get(f"/api/conversations/{chat}/history", headers=auth(ALICE))
                if answer.status_code != 200:
                    failures.append(f"round {round_} read: {answer.status_code} {answer.text[-200:]}")

            await asyncio.gather(*(turn(chat, n) for n, chat in enumerate(chats * 3)),
                                 *(read(chat) for chat in chats))
    assert failures == []
    assert (await row_counts(database_url))["agent_messages"] == 2 * 60 * 2


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_on_sqlite_every_connection_has_the_sdks_settings_and_the_pool_one_connection(
        database_url: str) -> None:
    """The cause of the defect above: the SDK registers its SQLite connect hook when the first session is built
    on an engine, so the service's first connections (start-up, the first burst) were opened without it, and
    the registration raced the burst's connects. Now the hook is on the engine before its first connection, and
    the service uses the one pooled connection lesson 02 teaches."""
    async with service(database_url) as client:
        engine = client.app.state.db.engine  # type: ignore[attr-defined]
        async with engine.connect() as connection:
            journal = await connection.exec_driver_sql("PRAGMA journal_mode")
            assert journal.scalar() == "wal"  # set by the SDK's hook, on the connection start-up opened
        assert engine.pool.size() == 1 and engine.pool.checkedout() == 0
