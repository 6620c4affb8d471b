"""The gate every request passes before FastAPI reads its body, and the last word on unexpected errors.

FastAPI reads and parses a request's JSON body *before* it runs the endpoint's dependencies, so an
authentication dependency alone would let anyone make the service read and parse a 100 MB body before the
401. This plain ASGI middleware runs first:

1. A request with a body to ``/api/...`` needs a valid bearer token: 401 before a byte of the body is read.
2. A body larger than ``CHAT_MAX_BODY_BYTES`` (default 64 KiB; a message is at most 4,000 characters) is
   refused with 413: at once when ``Content-Length`` says so, else as soon as the streamed body passes it.
3. An exception nothing else handled becomes a 503 (the database is unreachable) or a 500 with an id (see
   `errors.py`), in the documented shape, instead of Starlette's plain-text 500 and a traceback.
"""

from __future__ import annotations

import os

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session_management.common import CourseError

from .auth import Users, user_for
from .errors import error_body, failure_response

DEFAULT_MAX_BODY_BYTES = 64 * 1024


def max_body_bytes() -> int:
    raw = os.environ.get("CHAT_MAX_BODY_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    if not raw.isdigit() or int(raw) < 1024:
        raise CourseError(f"CHAT_MAX_BODY_BYTES={raw!r} is not a whole number of bytes of at least 1024.",
                          f"set it to e.g. {DEFAULT_MAX_BODY_BYTES}, or unset it")
    return int(raw)


class BodyTooLarge(HTTPException):
    """Raised from inside the body read; an HTTPException, so FastAPI passes it on as a 413 (not a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class Gate:
    def __init__(self, app: ASGIApp, users: Users, max_body: int) -> None:
        self.app, self.users, self.max_body = app, users, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")
        authorized = user_for(self.users, headers.get("authorization")) is not None
        if has_body and scope["path"].startswith("/api/") and not authorized:
            await _answer(scope, receive, send, 401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await _answer(scope, receive, send, 413, BodyTooLarge(self.max_body).detail)
            return

        started = False
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise BodyTooLarge(self.max_body)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as error:  # noqa: BLE001 - the one place unexpected errors become a shaped answer
            if started:
                raise  # the status line is sent; the server closes the connection
            await failure_response(error, f"{scope['method']} {scope['path']}")(scope, receive, send)


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                  headers: dict[str, str] | None = None) -> None:
    await JSONResponse(error_body(message), status_code=status, headers=headers)(scope, receive, send)
