"""Lesson 06's demonstration: the real service on a free loopback port, two users driving it over real HTTP.

`run_demo` is the story, one function per step of the README's tour.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from session_management.common import CourseError, choose_model, note, step
from session_management.common.ports import free_port

from .app import create_app
from .server import server_config

USERS = {"alice": "alice-demo-token", "bob": "bob-demo-token"}


class Demo:
    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    async def call(self, user: str, method: str, path: str, headers_extra: dict[str, str] | None = None,
                   **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user in self.tokens else {}
        headers.update(headers_extra or {})
        return await self.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    async def say(self, user: str, conversation: str, message: str) -> str:
        response = await self.call(user, "POST", f"/api/conversations/{conversation}/messages",
                                   json={"message": message})
        response.raise_for_status()
        reply = response.json()["reply"]
        print(f"  {user:>5}: {message}\n  agent: {reply}")
        return str(reply)


async def run_demo(database_url: str) -> None:
    app = create_app(database_url, {token: name for name, token in USERS.items()}, choose_model().model)
    async with serving(app) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            demo = Demo(client, USERS)
            note(f"service listening on http://127.0.0.1:{port}")
            alice_chat, bob_chat = await each_user_creates_a_conversation(demo)
            await they_talk(demo, alice_chat, bob_chat)
            await nobody_reads_another(demo, alice_chat)
            await my_conversations(demo)
            await a_streamed_reply(demo, alice_chat)
            await undo_history_delete(demo, alice_chat)
            await bad_input(demo, bob_chat)
            await a_retry(demo, bob_chat)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[int]:
    """The service under uvicorn on a free loopback port, for the block's duration; yields the port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # start-up failed: re-raise its error
            raise CourseError("The demo server stopped during start-up.")
        await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def each_user_creates_a_conversation(demo: Demo) -> tuple[str, str]:
    step("1. Each user creates a conversation (ids are random uuids)")
    alice_chat = (await demo.call("alice", "POST", "/api/conversations", json={})).json()["id"]
    bob_chat = (await demo.call("bob", "POST", "/api/conversations", json={})).json()["id"]
    note(f"alice: {alice_chat}\n    bob  : {bob_chat}")
    return alice_chat, bob_chat


async def they_talk(demo: Demo, alice_chat: str, bob_chat: str) -> None:
    step("2. They talk; each reply comes from that conversation's own history")
    await demo.say("alice", alice_chat, "Hi, my name is Alice and I live in Lisbon.")
    await demo.say("bob", bob_chat, "Hello, my name is Bob.")
    await demo.say("alice", alice_chat, "What is my name?")
    await demo.say("bob", bob_chat, "What is my name?")


async def nobody_reads_another(demo: Demo, alice_chat: str) -> None:
    step("3. Nobody reads another's conversation")
    for method, path in (("GET", f"/api/conversations/{alice_chat}/history"),
                         ("POST", f"/api/conversations/{alice_chat}/messages")):
        response = await demo.call("bob", method, path, json={"message": "What is my name?"})
        note(f"bob {method} alice's conversation -> {response.status_code} {response.json()}")
    response = await demo.call("nobody", "GET", "/api/conversations")
    note(f"no token -> {response.status_code} {response.json()}")


async def my_conversations(demo: Demo) -> None:
    step("4. The list of my conversations, newest first (titles from the first message)")
    await demo.call("alice", "POST", "/api/conversations", json={"title": "Trip planning"})
    listing = (await demo.call("alice", "GET", "/api/conversations?limit=10")).json()
    for conversation in listing["items"]:
        note(f"{conversation['title']!r}")
    note(f"total: {listing['total']}")


async def a_streamed_reply(demo: Demo, alice_chat: str) -> None:
    step("5. A streamed reply (server-sent events)")
    deltas: list[str] = []
    async with demo.client.stream("POST", f"/api/conversations/{alice_chat}/messages/stream",
                                  headers={"Authorization": f"Bearer {USERS['alice']}"},
                                  json={"message": "Where do I live?"}) as stream:
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "delta":
                    deltas.append(data["text"])
                elif event == "done":
                    note(f"{len(deltas)} chunks: {'|'.join(deltas)}")
                    note(f"final reply: {data['reply']}")


async def undo_history_delete(demo: Demo, alice_chat: str) -> None:
    step("6. Undo the last turn, read the history, delete the conversation")
    undone = (await demo.call("alice", "POST", f"/api/conversations/{alice_chat}/undo")).json()
    note(f"undo -> removed {undone['removed']} items: {undone['lines'][0]}")
    lines = (await demo.call("alice", "GET", f"/api/conversations/{alice_chat}/history")).json()["lines"]
    note(f"history now has {len(lines)} items, the last: {lines[-1]}")
    deleted = await demo.call("alice", "DELETE", f"/api/conversations/{alice_chat}")
    gone = await demo.call("alice", "GET", f"/api/conversations/{alice_chat}/history")
    note(f"delete -> {deleted.status_code}; then history -> {gone.status_code}")


async def bad_input(demo: Demo, bob_chat: str) -> None:
    step("7. Bad input gets a clear 4xx, never a 500")
    for label, path, body in (("empty message", f"/api/conversations/{bob_chat}/messages", {"message": " "}),
                              ("malformed id", "/api/conversations/42/messages", {"message": "hi"}),
                              ("oversized", f"/api/conversations/{bob_chat}/messages", {"message": "x" * 5000}),
                              ("NUL character", f"/api/conversations/{bob_chat}/messages",
                               {"message": "hi\u0000there"})):
        response = await demo.call("bob", "POST", path, json=body)
        note(f"{label:<14} -> {response.status_code} {response.json()}")


async def a_retry(demo: Demo, bob_chat: str) -> None:
    step("8. A retry with the same Idempotency-Key gets the stored reply and stores nothing")
    path = f"/api/conversations/{bob_chat}/messages"
    before = len((await demo.call("bob", "GET", f"/api/conversations/{bob_chat}/history")).json()["items"])
    for attempt in ("first try", "retry    "):
        response = await demo.call("bob", "POST", path, json={"message": "I like tea."},
                                   headers_extra={"Idempotency-Key": "msg-0001"})
        note(f"{attempt} -> {response.status_code} {response.json()}")
    after = len((await demo.call("bob", "GET", f"/api/conversations/{bob_chat}/history")).json()["items"])
    note(f"items stored: {before} -> {after} (one turn, not two)")
    response = await demo.call("bob", "POST", path, json={"message": "I like coffee."},
                               headers_extra={"Idempotency-Key": "msg-0001"})
    note(f"same key, another message -> {response.status_code} {response.json()}")
