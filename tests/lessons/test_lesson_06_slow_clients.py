"""Lesson 06 under uvicorn as ``--serve`` runs it: a client that trickles its request is cut off, others are not.

The server runs in this test's event loop on a loopback port (real sockets, no subprocess), with
``CHAT_READ_TIMEOUT=1``. A trickling client sends one byte per 0.1 s; the test counts the bytes it got to send
before the server closed the connection (no timed assertion): at most what fits in a few read timeouts, far fewer
than the whole request.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from session_management.common import CourseError, OfflineModel
from session_management.common.ports import free_port
from tests.support.web_service import ALICE, USERS, app_module, auth

server_module = importlib.import_module("session_management.06_web_service.server")
BYTE_EVERY_S = 0.1
READ_TIMEOUT_S = 1


@pytest.fixture
async def port(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setenv("CHAT_READ_TIMEOUT", str(READ_TIMEOUT_S))
    free = free_port()
    app = app_module.create_app(database_url, USERS, OfflineModel())
    server = uvicorn.Server(server_module.server_config(app, "127.0.0.1", free, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the server stopped during start-up"
        await asyncio.sleep(0.02)
    try:
        yield free
    finally:
        server.should_exit = True
        await serving


async def bytes_sent_before_close(port: int, trickled: bytes, at_once: bytes = b"") -> int:
    """Send *at_once*, then *trickled* a byte at a time: how many of those went out before the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(at_once)
    sent = 0
    try:
        for byte in trickled:
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            try:
                if await asyncio.wait_for(reader.read(1024), BYTE_EVERY_S) == b"":
                    return sent  # closed by the server
            except TimeoutError:
                continue
        return sent
    except ConnectionError:
        return sent
    finally:
        writer.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_trickling_client_is_cut_off_and_others_are_served(port: int) -> None:
    headers = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow/1.0\r\n" + b"X: y\r\n" * 20
    limit = int(3 * READ_TIMEOUT_S / BYTE_EVERY_S)  # generous: the loop's own delays add to each byte's 0.1 s
    assert len(headers) > 3 * limit
    assert (sent := await bytes_sent_before_close(port, headers + b"\r\n")) <= limit, sent  # the headers trickle

    body = b'{"title": "' + b"x" * 150 + b'"}'
    post = (b"POST /api/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {ALICE}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    assert (sent := await bytes_sent_before_close(port, body, at_once=post)) <= limit, sent  # the body trickles

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:  # one kept-alive connection
        for _ in range(3):
            assert (await client.get("/api/health")).status_code == 200
            await asyncio.sleep(READ_TIMEOUT_S / 2)  # idle between requests, each wait shorter than the limit
        created = await client.post("/api/conversations", json={"title": "fast"}, headers=auth(ALICE))
        assert created.status_code == 201


@pytest.mark.parametrize("value", ["abc", "0", "-1", "601"])
def test_a_bad_read_timeout_is_a_one_line_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_READ_TIMEOUT", value)
    with pytest.raises(CourseError, match="CHAT_READ_TIMEOUT=.* is not a number of seconds between 0 and 600"):
        server_module.server_config(object(), "127.0.0.1", 8000)
