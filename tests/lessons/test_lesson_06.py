"""Lesson 06: the chat service, in process on every backend, as a real server, and in a real browser."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from session_management.common.ports import free_port
from tests.support import lessons
from tests.support.backends import unavailable
from tests.support.lessons import RunHere
from tests.support.web_service import ALICE, BOB, USERS, auth, new_conversation, say, service


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with service(database_url) as http:
        yield http


async def stream(client: httpx.AsyncClient, token: str, conversation: str, message: str) -> tuple[list[str], str]:
    response = await client.post(f"/api/conversations/{conversation}/messages/stream", json={"message": message},
                                 headers=auth(token))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    # Parsed here, independently of the lesson's demo client, so a wrong event format is caught.
    deltas, final, event = [], "", ""
    for line in response.text.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            if event == "delta":
                deltas.append(data["text"])
            elif event == "done":
                final = data["reply"]
    return deltas, final


async def test_full_flow(client: httpx.AsyncClient) -> None:
    chat = await new_conversation(client, ALICE)
    assert await say(client, ALICE, chat, "My name is Alice and I live in Lisbon.") == \
        "Nice to meet you, Alice! I'll remember that."
    assert await say(client, ALICE, chat, "What is my name?") == "Your name is Alice."
    listing = (await client.get("/api/conversations", headers=auth(ALICE))).json()
    assert listing["total"] == 1 and listing["items"][0]["title"] == "My name is Alice and I live in Lisbon."
    history = (await client.get(f"/api/conversations/{chat}/history", headers=auth(ALICE))).json()
    assert len(history["items"]) == 4 and history["lines"][-1] == "assistant: Your name is Alice."
    undone = (await client.post(f"/api/conversations/{chat}/undo", headers=auth(ALICE))).json()
    assert undone["removed"] == 2 and undone["lines"][0] == "user: What is my name?"
    assert (await client.get(f"/api/conversations/{chat}", headers=auth(ALICE))).status_code == 200


async def test_pagination_newest_first(client: httpx.AsyncClient) -> None:
    ids = [await new_conversation(client, ALICE, f"chat {n}") for n in range(5)]
    await say(client, ALICE, ids[1], "bump")  # activity moves a conversation to the top
    first = (await client.get("/api/conversations?limit=2", headers=auth(ALICE))).json()
    second = (await client.get("/api/conversations?limit=2&offset=2", headers=auth(ALICE))).json()
    last = (await client.get("/api/conversations?limit=2&offset=4", headers=auth(ALICE))).json()
    titles = [c["title"] for page in (first, second, last) for c in page["items"]]
    assert titles == ["chat 1", "chat 4", "chat 3", "chat 2", "chat 0"]
    assert first["next_offset"] == 2 and last["next_offset"] is None and first["total"] == 5


async def test_isolation_on_every_endpoint(client: httpx.AsyncClient) -> None:
    alice_chat = await new_conversation(client, ALICE)
    await say(client, ALICE, alice_chat, "My name is Alice.")
    attempts = [
        ("GET", f"/api/conversations/{alice_chat}", None),
        ("GET", f"/api/conversations/{alice_chat}/history", None),
        ("POST", f"/api/conversations/{alice_chat}/messages", {"message": "What is my name?"}),
        ("POST", f"/api/conversations/{alice_chat}/messages/stream", {"message": "What is my name?"}),
        ("POST", f"/api/conversations/{alice_chat}/undo", None),
        ("DELETE", f"/api/conversations/{alice_chat}", None),
    ]
    for method, path, body in attempts:
        as_bob = await client.request(method, path, json=body, headers=auth(BOB))
        assert as_bob.status_code == 404, (method, path, as_bob.text)  # 404, not 403: the id is not confirmed
        unknown = await client.request(method, path.replace(alice_chat, str(uuid.uuid4())), json=body,
                                       headers=auth(ALICE))
        assert unknown.status_code == 404 and unknown.json() == as_bob.json()
    assert (await client.get("/api/conversations", headers=auth(BOB))).json()["total"] == 0
    history = (await client.get(f"/api/conversations/{alice_chat}/history", headers=auth(ALICE))).json()
    assert history["lines"] == ["user: My name is Alice.", "assistant: Nice to meet you, Alice! I'll remember that."]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
async def test_401_without_a_valid_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/me"), ("GET", "/api/conversations"), ("POST", "/api/conversations"),
                         ("GET", f"/api/conversations/{uuid.uuid4()}/history")):
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json() == {"error": "missing or invalid bearer token"}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_422_for_bad_input_never_500(client: httpx.AsyncClient) -> None:
    chat = await new_conversation(client, ALICE)
    cases = [
        (f"/api/conversations/{chat}/messages", {"message": ""}),
        (f"/api/conversations/{chat}/messages", {"message": "   \n "}),
        (f"/api/conversations/{chat}/messages", {"message": "x" * 4001}),
        (f"/api/conversations/{chat}/messages", {"text": "wrong field"}),
        (f"/api/conversations/{chat}/messages", {"message": 42}),
        ("/api/conversations/not-a-uuid/messages", {"message": "hi"}),
        ("/api/conversations/1/undo", None),
        ("/api/conversations", {"title": "t" * 201}),
    ]
    for path, body in cases:
        response = await client.post(path, json=body, headers=auth(ALICE))
        assert response.status_code == 422, (path, body, response.text)
        assert response.json()["error"] == "invalid request" and response.json()["problems"]
    broken = await client.post(f"/api/conversations/{chat}/messages", content=b"{not json",
                               headers={**auth(ALICE), "Content-Type": "application/json"})
    assert broken.status_code == 422
    assert (await client.get("/api/conversations?limit=0", headers=auth(ALICE))).status_code == 422
    assert (await client.get("/api/conversations?limit=abc", headers=auth(ALICE))).status_code == 422
    history = (await client.get(f"/api/conversations/{chat}/history", headers=auth(ALICE))).json()
    assert history["items"] == []  # nothing invalid was stored


async def test_fifty_concurrent_users_each_recall_their_own_facts(client: httpx.AsyncClient) -> None:
    tokens = list(USERS)[:50]

    async def user_flow(token: str) -> tuple[str, str, str]:
        chat = await new_conversation(client, token)
        name = USERS[token].capitalize()
        await say(client, token, chat, f"My name is {name} and my favorite number is {len(name) * 7}.")
        reply = await say(client, token, chat, "What is my name?")
        number = await say(client, token, chat, "What is my favorite number?")
        return name, reply, number

    results = await asyncio.gather(*(user_flow(token) for token in tokens))
    for name, reply, number in results:
        assert reply == f"Your name is {name}."
        assert number == f"Your favorite number is {len(name) * 7}."


async def test_streaming_gives_the_same_reply_as_non_streaming(client: httpx.AsyncClient) -> None:
    plain, streamed = await new_conversation(client, ALICE), await new_conversation(client, ALICE)
    for chat in (plain, streamed):
        await say(client, ALICE, chat, "My name is Ada Lovelace and I live in London.")
    expected = await say(client, ALICE, plain, "What do you know about me?")
    deltas, final = await stream(client, ALICE, streamed, "What do you know about me?")
    assert len(deltas) > 3 and "".join(deltas) == final == expected
    history = (await client.get(f"/api/conversations/{streamed}/history", headers=auth(ALICE))).json()
    assert history["lines"][-1] == f"assistant: {expected}"  # the streamed turn was stored too


async def test_delete_removes_the_sdk_rows(client: httpx.AsyncClient, database_url: str) -> None:
    doomed, kept = await new_conversation(client, ALICE), await new_conversation(client, ALICE)
    for chat in (doomed, kept):
        await say(client, ALICE, chat, "My name is Alice.")
    response = await client.delete(f"/api/conversations/{doomed}", headers=auth(ALICE))
    assert response.status_code == 204
    engine = client.app.state.db.engine  # type: ignore[attr-defined]
    async with engine.connect() as connection:
        async def count(table: str, chat: str) -> int:
            column = "id" if table == "conversations" else "session_id"
            return int(await connection.scalar(text(f"SELECT COUNT(*) FROM {table} WHERE {column} = :c"), {"c": chat}))

        for table in ("agent_messages", "agent_sessions", "conversations"):
            assert await count(table, doomed) == 0, table
        assert await count("agent_messages", kept) == 2
    assert (await client.delete(f"/api/conversations/{doomed}", headers=auth(ALICE))).status_code == 404


# --- the lesson as the README runs it, and the real server process -----------------------------------------



@pytest.fixture
def running_server(lesson_env: dict[str, str], tmp_path: Path) -> Any:
    port = free_port()
    env = {**lesson_env, "CHAT_USERS": "alice:alice-demo-token,bob:bob-demo-token"}
    process = lessons.start("06_web_service", "--serve", "--port", str(port),
                            "--database", f"sqlite+aiosqlite:///{tmp_path / 'server.db'}", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None:
                    out, err = process.communicate()
                    pytest.fail(f"the server exited: {out}{err}")
                time.sleep(0.2)
        else:
            pytest.fail("the server did not answer within 60 s")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_real_server_over_http(running_server: str) -> None:
    headers = auth("alice-demo-token")
    with httpx.Client(base_url=running_server, timeout=30) as http:
        chat = http.post("/api/conversations", json={}, headers=headers).json()["id"]
        http.post(f"/api/conversations/{chat}/messages", json={"message": "My name is Alice."}, headers=headers)
        reply = http.post(f"/api/conversations/{chat}/messages", json={"message": "What is my name?"},
                          headers=headers)
        assert reply.json() == {"reply": "Your name is Alice."}
        assert http.get(f"/api/conversations/{chat}/history", headers=auth("bob-demo-token")).status_code == 404
        page = http.get("/")
        assert page.status_code == 200 and "<title>Lesson 06" in page.text


def test_browser_sends_a_message_and_sees_the_reply(running_server: str, tmp_path: Path) -> None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        unavailable("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        browser.get(running_server + "/")
        wait = WebDriverWait(browser, 30)
        browser.execute_script("window.rejections = 0;"
                               "addEventListener('unhandledrejection', () => { window.rejections += 1; });")
        # CHAT_USERS is set: the page must not offer the demo token.
        assert browser.find_element(By.ID, "token").get_attribute("value") == ""
        # Buttons before signing in: a message on the page, not a silent failure.
        browser.find_element(By.ID, "new").click()
        browser.find_element(By.ID, "message").send_keys("Hello?")
        browser.find_element(By.ID, "message").submit()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "p.error")) == 2)
        assert all("Sign in first" in p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.error"))
        browser.find_element(By.ID, "message").clear()
        browser.find_element(By.ID, "token").send_keys("alice-demo-token")
        browser.find_element(By.ID, "login").click()
        wait.until(lambda b: "Signed in as alice" in b.find_element(By.ID, "who").text)
        for message in ("My name is Ada.", "What is my name?"):
            box = browser.find_element(By.ID, "message")
            box.send_keys(message)
            box.submit()
            wait.until(lambda b, m=message: b.find_elements(By.CSS_SELECTOR, "p.assistant[data-done='1']")
                       and len(b.find_elements(By.CSS_SELECTOR, "p.assistant[data-done='1']"))
                       == (1 if m.startswith("My") else 2))
        replies = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.assistant")]
        assert replies[-1] == "assistant: Your name is Ada."
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#conversations li"))
        assert browser.find_element(By.CSS_SELECTOR, "#conversations li").text == "My name is Ada."
        assert browser.execute_script("return window.rejections;") == 0
    finally:
        browser.quit()
    with sqlite3.connect(tmp_path / "server.db") as stored:  # the page sent an Idempotency-Key with each message
        assert stored.execute("SELECT COUNT(DISTINCT idempotency_key) FROM conversation_turn_keys").fetchone() == (2,)


# --- expected mistakes on the command line: one line on stderr, exit status 2 ----------------------------------

REFUSED = "postgresql+asyncpg://course:course@127.0.0.1:1/sessions"


def test_a_mistake_ends_in_one_clear_line(lesson_env: dict[str, str], run_here: RunHere) -> None:
    """In this process. ``--serve`` takes the same exit path before uvicorn starts: course/test_error_matrix.py runs
    it with every mistake in-process and once as a process, where a regression would start a server."""
    done = run_here("06_web_service", "--database", REFUSED, env={**lesson_env, "CHAT_USERS": ""})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Cannot reach the database server" in done.stderr and "Traceback" not in done.stderr
    assert "uvicorn" not in done.stderr.lower() and "Started server" not in done.stderr
    # (--port and --host mistakes take the same exit path; lessons/test_lesson_06_hostile.py checks them in process)
