"""Lesson 06: a multi-user chat service on SQLAlchemySession.

    uv run python -m session_management.06_web_service.main --minimal             # minimal_app.py on :8000
    uv run python -m session_management.06_web_service.main                       # the demo (offline, exits)
    uv run python -m session_management.06_web_service.main --serve               # the service on :8000
    uv run python -m session_management.06_web_service.main --serve --database postgres --port 8080

The demo starts the real service on a free loopback port and drives two users through real HTTP requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import sys

import httpx
import uvicorn

from session_management.common import (
    CourseError,
    choose_model,
    heading,
    lesson_parser,
    load_env,
    note,
    open_database,
    redact,
    resolve_database_url,
    run_main,
    step,
)

from . import minimal_app
from .app import create_app
from .server import server_config

DEMO_USERS = "alice:alice-demo-token,bob:bob-demo-token"


def configured_users() -> tuple[dict[str, str], bool]:
    """Token -> user from CHAT_USERS ("name:token,name:token"), and whether these are the demo defaults."""
    load_env()
    raw = os.environ.get("CHAT_USERS", "").strip()
    users: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in (raw or DEMO_USERS).split(","))):
        name, _, token = entry.partition(":")
        if not name or len(token) < 8:
            raise CourseError(f"CHAT_USERS entry for {name or '?'!r} is not name:token with a token of 8+ characters.",
                              "set CHAT_USERS=alice:<long random token>,bob:<another one>")
        if token in users:  # one token, two users: whoever logs in with it would be the later one
            raise CourseError(f"CHAT_USERS gives {users[token]!r} and {name!r} the same token.",
                              "give every user a token of their own")
        users[token] = name
    return users, not raw


def is_loopback(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host == "localhost"


def check_exposure(host: str, demo_tokens: bool) -> None:
    """The demo tokens are printed in the README: refuse them on any interface but loopback."""
    if demo_tokens and not is_loopback(host):
        raise CourseError(f"--host {host} would serve the published demo tokens beyond this machine.",
                          "set CHAT_USERS=alice:<long random token>,... (environment or .env), or keep the "
                          "default --host 127.0.0.1")


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1 to 65535)")
    return int(value)


async def preflight(url: str) -> None:
    """Prove the database answers and the SDK's tables can be made before uvicorn starts, so a mistake (server
    down, wrong password, no rights to create tables) is one line, not uvicorn's traceback."""
    async with open_database(url):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    users = {"alice": "alice-demo-token", "bob": "bob-demo-token"}
    app = create_app(database_url, {token: name for name, token in users.items()}, choose_model().model)
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # start-up failed: re-raise its error
            raise CourseError("The demo server stopped during start-up.")
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            demo = Demo(client, users)
            note(f"service listening on http://127.0.0.1:{port}")

            step("1. Each user creates a conversation (ids are random uuids)")
            alice_chat = (await demo.call("alice", "POST", "/api/conversations", json={})).json()["id"]
            bob_chat = (await demo.call("bob", "POST", "/api/conversations", json={})).json()["id"]
            note(f"alice: {alice_chat}\n    bob  : {bob_chat}")

            step("2. They talk; each reply comes from that conversation's own history")
            await demo.say("alice", alice_chat, "Hi, my name is Alice and I live in Lisbon.")
            await demo.say("bob", bob_chat, "Hello, my name is Bob.")
            await demo.say("alice", alice_chat, "What is my name?")
            await demo.say("bob", bob_chat, "What is my name?")

            step("3. Nobody reads another's conversation")
            for method, path in (("GET", f"/api/conversations/{alice_chat}/history"),
                                 ("POST", f"/api/conversations/{alice_chat}/messages")):
                response = await demo.call("bob", method, path, json={"message": "What is my name?"})
                note(f"bob {method} alice's conversation -> {response.status_code} {response.json()}")
            response = await demo.call("nobody", "GET", "/api/conversations")
            note(f"no token -> {response.status_code} {response.json()}")

            step("4. The list of my conversations, newest first (titles from the first message)")
            await demo.call("alice", "POST", "/api/conversations", json={"title": "Trip planning"})
            listing = (await demo.call("alice", "GET", "/api/conversations?limit=10")).json()
            for conversation in listing["items"]:
                note(f"{conversation['title']!r}")
            note(f"total: {listing['total']}")

            step("5. A streamed reply (server-sent events)")
            deltas: list[str] = []
            async with client.stream("POST", f"/api/conversations/{alice_chat}/messages/stream",
                                     headers={"Authorization": f"Bearer {users['alice']}"},
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

            step("6. Undo the last turn, read the history, delete the conversation")
            undone = (await demo.call("alice", "POST", f"/api/conversations/{alice_chat}/undo")).json()
            note(f"undo -> removed {undone['removed']} items: {undone['lines'][0]}")
            lines = (await demo.call("alice", "GET", f"/api/conversations/{alice_chat}/history")).json()["lines"]
            note(f"history now has {len(lines)} items, the last: {lines[-1]}")
            deleted = await demo.call("alice", "DELETE", f"/api/conversations/{alice_chat}")
            gone = await demo.call("alice", "GET", f"/api/conversations/{alice_chat}/history")
            note(f"delete -> {deleted.status_code}; then history -> {gone.status_code}")

            step("7. Bad input gets a clear 4xx, never a 500")
            for label, path, body in (("empty message", f"/api/conversations/{bob_chat}/messages", {"message": " "}),
                                      ("malformed id", "/api/conversations/42/messages", {"message": "hi"}),
                                      ("oversized", f"/api/conversations/{bob_chat}/messages",
                                       {"message": "x" * 5000}),
                                      ("NUL character", f"/api/conversations/{bob_chat}/messages",
                                       {"message": "hi\u0000there"})):
                response = await demo.call("bob", "POST", path, json=body)
                note(f"{label:<14} -> {response.status_code} {response.json()}")

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
    finally:
        server.should_exit = True
        await serving


async def main(args: argparse.Namespace) -> None:
    choice = choose_model()
    url = resolve_database_url(args.database)
    heading("Lesson 06: a multi-user chat service")
    print(f"model   : {choice.description}\ndatabase: {redact(url)}")
    await preflight(url)
    await run_demo(url)


def serve(args: argparse.Namespace) -> None:
    users, demo_tokens = configured_users()
    check_exposure(args.host, demo_tokens)
    url = resolve_database_url(args.database)
    choice = choose_model()
    app = create_app(url, users, choice.model, demo_token="alice-demo-token" if demo_tokens else None)
    config = server_config(app, args.host, args.port, log_level="info")  # a bad CHAT_READ_TIMEOUT: one line, now
    asyncio.run(preflight(url))
    print(f"model   : {choice.description}\ndatabase: {redact(url)}\nusers   : {', '.join(sorted(users.values()))}")
    if demo_tokens:
        print(f"WARNING: CHAT_USERS is not set; using the demo tokens ({DEMO_USERS}). Never in production.",
              file=sys.stderr)
    print(f"open http://{args.host}:{args.port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.Server(config).run()


def serve_minimal(args: argparse.Namespace) -> None:
    """Serve minimal_app.py as `uvicorn minimal_app:app` would, with the lesson's model (offline without a key)."""
    if not is_loopback(args.host):
        raise CourseError(f"--host {args.host} would let anyone who reaches it read every conversation: the "
                          "minimal app has no users.", "keep the default --host 127.0.0.1, or use --serve")
    url = resolve_database_url(args.database)
    asyncio.run(preflight(url))  # also creates the SDK's tables on MySQL, which the minimal app cannot
    os.environ["DATABASE_URL"] = url  # what minimal_app reads
    choice = choose_model()
    if choice.model is not None:  # None: the SDK's default model, as in the pasted file
        minimal_app.agent.model = choice.model
    print(f"model   : {choice.description}\ndatabase: {redact(url)}")
    print(f"serving minimal_app.py on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    uvicorn.run(minimal_app.app, host=args.host, port=args.port, log_level="warning")


def build_parser() -> argparse.ArgumentParser:
    parser = lesson_parser("Lesson 06: a multi-user chat service")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--minimal", action="store_true", help="serve minimal_app.py, the lesson's first step")
    mode.add_argument("--serve", action="store_true", help="run the service instead of the demo")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000, help="port to serve on (default 8000)")
    return parser


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    modes = {"minimal": serve_minimal, "serve": serve}
    mode = next((modes[name] for name in modes if getattr(arguments, name)), None)
    run_main(lambda: mode(arguments) if mode else main(arguments))
