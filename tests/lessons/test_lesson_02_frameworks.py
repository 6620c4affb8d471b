"""Lesson 02's framework apps, each pasted into an empty folder and run as a real server, as a reader would.

FastAPI and Django under uvicorn, Flask under Werkzeug's threaded server (``flask run``), on SQLite, PostgreSQL
and MariaDB: two users' conversations, driven from several client threads at once, keep exactly their own
history, across requests and across a restart; every request succeeds; Ctrl-C stops each server cleanly, its
engine disposed of. And the wrong ways the apps avoid (``Runner.run_sync`` or an ``async def`` view in Flask,
Django's async views under WSGI) fail on PostgreSQL.
The servers are forked from one preloaded Python (tests/support/preloaded_python.py) that cannot import the course.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.backends import unavailable
from tests.support.preloaded_python import OPEN_AT_EXIT, REPO_ROOT, PreloadedPython, free_port, wait_until_listening

APPS_DIR = REPO_ROOT / "session_management" / "02_sqlalchemy_session" / "frameworks"
# What a log must never show: the failures of an engine used across event loops, and of an unclean shutdown.
LOG_ERRORS = ("Traceback", "Event loop is closed", "different loop", "another operation is in progress",
              "Task was destroyed", "Unclosed", "Exception", OPEN_AT_EXIT)


@dataclass(frozen=True)
class App:
    file: str
    module: str  # what the reader runs: python -m <module> <args>
    args: tuple[str, ...]  # "{port}" stands for the port

    def argv(self, port: int) -> list[str]:
        return [self.module, *(arg.format(port=port) for arg in self.args)]


APPS = {
    "fastapi": App("fastapi_app.py", "uvicorn", ("fastapi_app:app", "--port", "{port}")),
    "flask": App("flask_app.py", "flask", ("--app", "flask_app", "run", "--port", "{port}")),
    "django": App("django_app.py", "uvicorn", ("django_app:application", "--port", "{port}")),
}


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreloadedPython]:
    """The preloaded Python; without Flask and Django, a skip with the command that installs them (in CI, where
    they must be there, a failure)."""
    missing = [name for name in ("flask", "django") if importlib.util.find_spec(name) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed: uv sync --group frameworks")
    preloaded = PreloadedPython(tmp_path_factory.mktemp("preloaded"))
    try:
        yield preloaded
    finally:
        preloaded.close()


def pasted(app: App, folder: Path) -> Path:
    """The app file alone in a new folder outside the repository: a reader's empty project."""
    folder.mkdir()
    assert not folder.resolve().is_relative_to(REPO_ROOT)
    shutil.copy(APPS_DIR / app.file, folder / app.file)
    return folder


def reader_env(database_url: str | None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENAI_") and k not in ("PYTHONPATH", "DATABASE_URL")}
    env.update(more)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


class Server:
    """One run of an app: started, asked, stopped with Ctrl-C (SIGINT), its log checked."""

    def __init__(self, python: PreloadedPython, app: App, folder: Path, database_url: str, run: int) -> None:
        self.python, self.port = python, free_port()
        self.log = folder / f"server-{run}.log"
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        # A dummy key: the app checks one is set; the preloaded Python answers with the offline model.
        env = reader_env(database_url, OPENAI_API_KEY="offline-model-in-the-tests")
        self.pid = python.start(app.module, app.argv(self.port), cwd=folder, env=env, log=self.log)
        wait_until_listening(python, self.pid, self.port, self.log)

    def say(self, conversation: str, text: str) -> str:
        response = self.client.post(f"/chat/{conversation}", json={"text": text})
        assert response.status_code == 200, f"{response.status_code}: {response.text}\n{self.log.read_text()}"
        return str(response.json()["reply"])

    def say_all(self, messages: list[tuple[str, str]], threads: int) -> list[str]:
        with ThreadPoolExecutor(threads) as clients:
            return list(clients.map(lambda message: self.say(*message), messages))

    def stop(self) -> str:
        self.client.close()
        os.kill(self.pid, signal.SIGINT)
        status = self.python.wait(self.pid, 30)
        log = self.log.read_text()
        assert status == 0, f"Ctrl-C: exit status {status}\n{log}"
        found = [error for error in LOG_ERRORS if error in log]
        assert not found, f"{found} in the server's log:\n{log}"
        return log


async def history(database_url: str, conversation: str) -> list[dict]:
    engine = create_async_engine(database_url)
    try:
        return list(await SQLAlchemySession(conversation, engine=engine).get_items())
    finally:
        await engine.dispose()


def texts(items: list[dict], role: str) -> list[str]:
    """The texts of a conversation's *role* items (user messages are strings, replies lists of parts)."""
    found = []
    for item in items:
        if item.get("role") != role:
            continue
        content = item["content"]
        found.append(content if isinstance(content, str) else "".join(part["text"] for part in content))
    return found


@pytest.mark.parametrize("framework", APPS)
def test_the_app_remembers_each_conversation_under_concurrent_requests_and_a_restart(
    framework: str, database_url: str, python: PreloadedPython, tmp_path: Path
) -> None:
    assert not python.session_management_importable, "the apps must run where the course cannot be imported"
    app = APPS[framework]
    folder = pasted(app, tmp_path / "project")
    suffix = uuid.uuid4().hex[:8]
    names = {f"user-{suffix}": "Ada", f"USER-{suffix}": "Alan"}  # two ids that differ only in case
    asks = 4

    server = Server(python, app, folder, database_url, run=1)
    replies = server.say_all([(conversation, f"My name is {name}.") for conversation, name in names.items()], 2)
    assert all(name in reply for reply, name in zip(replies, names.values(), strict=True)), replies
    questions = [(conversation, "What is my name?") for _ in range(asks) for conversation in names]
    replies = server.say_all(questions, threads=4)
    assert replies == [f"Your name is {names[conversation]}." for conversation, _ in questions]
    server.stop()

    server = Server(python, app, folder, database_url, run=2)  # a restart: the memory is in the database
    questions = [(conversation, "What is my name?") for conversation in names]
    assert server.say_all(questions, threads=2) == [f"Your name is {name}." for name in names.values()]
    server.stop()

    for conversation, name in names.items():  # each conversation holds exactly its own turns
        items = asyncio.run(history(database_url, conversation))
        assert texts(items, "user") == [f"My name is {name}."] + ["What is my name?"] * (asks + 1)
        replies = texts(items, "assistant")
        assert len(replies) == asks + 2 and all(name in reply for reply in replies), replies


@dataclass(frozen=True)
class WrongWay:
    """An app with one change a reader might make, and what runs it."""

    app: str  # the app file it starts from
    edits: tuple[tuple[str, str], ...]  # (text in the app, text instead)
    run: App
    launcher: str = ""  # a file of its own that serves the app, for the run


FLASK_CALL = 'on_loop(Runner.run(agent, request.get_json()["text"], session=session))'
# Django's async view served over WSGI, by Werkzeug's threaded server (as gunicorn or runserver would serve it).
DJANGO_WSGI = """import asyncio, sys
from django.core.wsgi import get_wsgi_application
from werkzeug.serving import run_simple
import django_app
async def tables():  # on an engine of their own: only the views use the app's engine
    engine = django_app.create_engine()
    await django_app.create_tables(engine)
    await engine.dispose()
asyncio.run(tables())
run_simple("127.0.0.1", int(sys.argv[1]), get_wsgi_application(), threaded=True)
"""
# The wrong ways each framework invites: the engine's connections used on other event loops than their own.
WRONG_WAYS = {
    "flask-run_sync-in-a-view": WrongWay("flask_app.py", (
        (FLASK_CALL, 'Runner.run_sync(agent, request.get_json()["text"], session=session)'),), APPS["flask"]),
    "flask-async-view": WrongWay("flask_app.py", (
        ("    def chat(", "    async def chat("),
        (FLASK_CALL, 'await Runner.run(agent, request.get_json()["text"], session=session)')), APPS["flask"]),
    "django-async-view-under-wsgi": WrongWay("django_app.py", (), App("django_wsgi.py", "django_wsgi", ("{port}",)),
                                             launcher=DJANGO_WSGI),
}
LOOP_ERRORS = ("attached to a different loop", "another operation is in progress", "Event loop is closed")


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("wrong_way", WRONG_WAYS)
def test_the_wrong_way_each_framework_invites_fails(
    wrong_way: str, database_url: str, python: PreloadedPython, tmp_path: Path
) -> None:
    """What the apps avoid, shown failing: one engine whose connections are used from several event loops."""
    way = WRONG_WAYS[wrong_way]
    folder = tmp_path / "project"
    folder.mkdir()
    source = (APPS_DIR / way.app).read_text(encoding="utf-8")
    for old, new in way.edits:
        assert old in source, f"{way.app} no longer has {old!r}: update this test"
        source = source.replace(old, new, 1)
    (folder / way.app).write_text(source, encoding="utf-8")
    if way.launcher:
        (folder / way.run.file).write_text(way.launcher, encoding="utf-8")
    log, port = folder / "server.log", free_port()
    env = reader_env(database_url, OPENAI_API_KEY="offline-model-in-the-tests")
    pid = python.start(way.run.module, way.run.argv(port), cwd=folder, env=env, log=log)
    try:
        wait_until_listening(python, pid, port, log)
        statuses: list[int | str] = []
        for text in ("My name is Ada.", "What is my name?", "What is my name?"):  # one after another
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/chat/ada", json={"text": text}, timeout=20)
                statuses.append(response.status_code)
            except httpx.HTTPError as error:  # a server that hangs or crashes
                statuses.append(type(error).__name__)
    finally:
        os.kill(pid, signal.SIGKILL)
        python.wait(pid, 30)
    assert statuses != [200, 200, 200], f"{wrong_way} worked:\n{log.read_text()}"
    assert any(error in log.read_text() for error in LOOP_ERRORS), log.read_text()


@pytest.mark.parametrize("framework", APPS)
def test_without_an_openai_key_the_app_stops_at_once_and_says_why(
    framework: str, python: PreloadedPython, tmp_path: Path
) -> None:
    app = APPS[framework]
    folder = pasted(app, tmp_path / "project")
    log = folder / "server.log"
    pid = python.start(app.module, app.argv(free_port()), cwd=folder, env=reader_env(None), log=log)
    status = python.wait(pid, 30)
    assert status == 1, f"exit status {status}:\n{log.read_text()}"
    assert "Set OPENAI_API_KEY first" in log.read_text()
    assert "Traceback" not in log.read_text()


def shared_definitions(file: Path) -> dict[str, str]:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    shared = ("MYSQL_TABLES", "create_tables", "create_engine", "DATABASE_URL")
    found = {}
    for node in tree.body:
        name = getattr(node, "name", None) or getattr(getattr(node, "targets", [None])[0], "id", None)
        if name in shared:
            found[name] = ast.unparse(node)
    return found


def test_the_apps_share_their_database_code_word_for_word_and_import_no_course_code() -> None:
    """A fix to the tables or the engine in one app must reach the other two; none may lean on the course."""
    definitions = {name: shared_definitions(APPS_DIR / app.file) for name, app in APPS.items()}
    assert len(definitions["fastapi"]) == 4
    assert definitions["flask"] == definitions["fastapi"] == definitions["django"]
    for app in APPS.values():
        assert "session_management" not in (APPS_DIR / app.file).read_text(encoding="utf-8")
