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
import os
import sys

import uvicorn

from session_management.common import (
    CourseError,
    choose_model,
    heading,
    lesson_parser,
    load_env,
    open_database,
    redact,
    resolve_database_url,
    run_lesson,
)

from . import minimal_app
from .app import create_app
from .demo import run_demo
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
    mode = next((modes[name] for name in modes if getattr(arguments, name)), main)
    run_lesson(mode, arguments)
