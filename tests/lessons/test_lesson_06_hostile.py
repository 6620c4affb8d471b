"""Lesson 06 against hostile and malformed requests: every error in the one documented shape, bounded input,
authentication and the size limit before the body is read, and logs without users' text."""

from __future__ import annotations

import importlib
import json
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from session_management.common import CourseError
from tests.support.web_service import ALICE, USERS, app_module, auth, new_conversation, say, service

lesson_main = importlib.import_module("session_management.06_web_service.main")
gate = importlib.import_module("session_management.06_web_service.gate")


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with service(database_url) as http:
        yield http


def one_shape(response: httpx.Response, status: int) -> dict[str, object]:
    """The documented error shape: {"error": str}, plus "problems" on a 422 and "id" on a 500, nothing else."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert set(body) <= {"error", "problems", "id"}, body
    return body


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_error_has_the_documented_shape(client: httpx.AsyncClient) -> None:
    chat = await new_conversation(client, ALICE)
    messages = f"/api/conversations/{chat}/messages"
    json_headers = {**auth(ALICE), "Content-Type": "application/json"}
    one_shape(await client.post(messages, content=b'{"message": "\xff\xfe"}', headers=json_headers), 400)
    nested = b'{"message": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # 40 KB, too deep for the JSON parser
    one_shape(await client.post(messages, content=nested, headers=json_headers), 400)
    one_shape(await client.post(messages, content=b"{not json", headers=json_headers), 422)
    one_shape(await client.get("/api/nowhere", headers=auth(ALICE)), 404)
    one_shape(await client.get("/nowhere"), 404)
    one_shape(await client.put(f"/api/conversations/{chat}", headers=auth(ALICE)), 405)
    one_shape(await client.get("/api/me"), 401)
    body = one_shape(await client.post(messages, json={"message": ""}, headers=auth(ALICE)), 422)
    assert body["problems"] == ["message: String should have at least 1 character"]
    # /docs would load Swagger UI from a CDN: not served; the machine-readable schema is.
    one_shape(await client.get("/docs"), 404)
    assert (await client.get("/openapi.json")).json()["info"]["title"].startswith("Lesson 06")


@pytest.mark.parametrize("query", ["offset=99999999999999999999", "offset=1000001", "offset=-1", "limit=101",
                                   "limit=99999999999999999999", "limit=1e3", "offset=%00",
                                   "offset=%2B0.0", "limit=5.0", "limit=%205"])
async def test_out_of_range_parameters_are_422_on_every_backend(client: httpx.AsyncClient, query: str) -> None:
    body = one_shape(await client.get(f"/api/conversations?{query}", headers=auth(ALICE)), 422)
    assert body["error"] == "invalid request"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_size_limit_and_auth_come_before_the_body_is_read(database_url: str) -> None:
    app = app_module.create_app(database_url, USERS)
    reads = 0

    async def call(headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict[str, object]]:
        """Drive the ASGI app directly, counting how much of the body it asks for."""
        nonlocal reads
        reads = 0
        pending = list(chunks)
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            nonlocal reads
            reads += 1
            body = pending.pop(0) if pending else b""
            return {"type": "http.request", "body": body, "more_body": bool(pending)}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/conversations", "raw_path": b"/api/conversations",
                 "query_string": b"", "headers": raw_headers, "server": ("test", 80), "client": ("1.2.3.4", 1),
                 "root_path": "", "state": {}}
        await app(scope, receive, send)
        status = int(sent[0]["status"])
        return status, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))  # type: ignore[misc]

    async with app.router.lifespan_context(app):
        huge = {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}
        assert await call(huge, [b"x" * 65536]) == (401, {"error": "missing or invalid bearer token"})
        assert reads == 0  # refused before a byte of the body was read
        status, body = await call({**huge, **auth(ALICE)}, [b"x" * 65536])
        assert (status, reads) == (413, 0) and "larger than 65536 bytes" in str(body["error"])
        chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **auth(ALICE)}
        status, body = await call(chunked, [b"{" + b" " * 40_000] * 50)  # no length declared: counted
        assert status == 413 and reads <= 3
        anonymous = await call({"Transfer-Encoding": "chunked"}, [b"{}"])
        assert anonymous == (401, {"error": "missing or invalid bearer token"}) and reads == 0
        status, body = await call({**chunked, "Content-Length": "2"}, [b"{}"])
        assert status == 201 and uuid.UUID(str(body["id"]))  # a normal request still works


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_database_error_that_is_no_outage_is_a_500_with_an_id_and_no_user_text_in_the_log(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    chat = await new_conversation(client, ALICE)
    engine = client.app.state.db.engine  # type: ignore[attr-defined]
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE agent_messages"))  # a broken schema, not a broken network
    secret = "my card number is 4111 1111 1111 1111"
    with caplog.at_level(logging.WARNING, logger="lesson06"):
        response = await client.post(f"/api/conversations/{chat}/messages", json={"message": secret},
                                     headers=auth(ALICE))
    body = one_shape(response, 500)
    assert isinstance(body["id"], str) and body["id"] in caplog.text
    assert "4111" not in caplog.text and "agent_messages" in caplog.text  # the error, without the parameters


def test_chat_users_mistakes_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_USERS", "alice:same-token-123,bob:same-token-123")
    with pytest.raises(CourseError, match="gives 'alice' and 'bob' the same token") as raised:
        lesson_main.configured_users()
    assert "same-token-123" not in str(raised.value)  # the token is never echoed
    monkeypatch.setenv("CHAT_USERS", "alice:short")
    with pytest.raises(CourseError, match="8\\+ characters"):
        lesson_main.configured_users()
    monkeypatch.setenv("CHAT_USERS", "alice:a-long-token-1,bob:a-long-token-2")
    assert lesson_main.configured_users() == ({"a-long-token-1": "alice", "a-long-token-2": "bob"}, False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "chat.example.com"])
def test_demo_tokens_are_refused_off_loopback(host: str) -> None:
    with pytest.raises(CourseError, match="published demo tokens"):
        lesson_main.check_exposure(host, demo_tokens=True)
    lesson_main.check_exposure(host, demo_tokens=False)  # real tokens: any interface


@pytest.mark.parametrize(("name", "value"), [("CHAT_DB_TIMEOUT", "soon"), ("CHAT_DB_TIMEOUT", "0"),
                                             ("CHAT_HEALTH_TIMEOUT", "-2"), ("CHAT_MAX_BODY_BYTES", "12"),
                                             ("CHAT_MAX_BODY_BYTES", "1e6")])
def test_bad_limits_are_one_line_errors_when_the_app_is_built(name: str, value: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(CourseError, match=name):
        app_module.create_app("sqlite+aiosqlite:///:memory:", USERS)


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_an_argument_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        lesson_main.build_parser().parse_args(["--serve", "--port", port])
    assert exited.value.code == 2 and f"{port!r} is not a TCP port (1 to 65535)" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_demo_tokens_are_fine_on_loopback(host: str) -> None:
    lesson_main.check_exposure(host, demo_tokens=True)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_page_prefills_the_demo_token_only_in_demo_mode(database_url: str) -> None:
    for demo_token, expected in ((None, 'value=""'), ("alice-demo-token", 'value="alice-demo-token"')):
        async with service(database_url, demo_token=demo_token) as client:
            page = (await client.get("/")).text
            assert f'<input id="token" {expected}' in page and "__DEMO_TOKEN__" not in page


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_service_still_answers_after_hostile_requests(client: httpx.AsyncClient) -> None:
    chat = await new_conversation(client, ALICE)
    for path in ("/api/conversations/../../etc/passwd", f"/api/conversations/{chat}%00/history",
                 "/api/conversations/' OR 1=1 --/history"):
        assert (await client.get(path, headers=auth(ALICE))).status_code in (404, 422)
    assert await say(client, ALICE, chat, "My name is Alice.") == "Nice to meet you, Alice! I'll remember that."
