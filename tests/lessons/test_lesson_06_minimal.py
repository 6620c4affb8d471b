"""Lesson 06's first step, minimal_app.py, as its README shows it, and what the README claims about itself.

* The README's first block is the file, whole, importing only published packages (a reader copies it).
* The app, in process on every backend, answers the README's curl commands exactly as the README prints, and
  remembers across a restart.
* The README's --minimal command, run on a fresh clone as a reader would, with the README's curl commands run by
  curl against it; the --serve curls in process. (The lesson's plain command, the demo, is run on a fresh clone
  by tests/course/test_first_command.py; --serve as a process by tests/lessons/test_lesson_06.py.)
* What the pages claim points at something: no "see below" without a link, links and anchors that exist, test
  files that exist, the demo tokens the code uses printed where the README says they are.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from agents import Runner
from agents.extensions.memory import SQLAlchemySession

from session_management.common import OfflineModel, create_engine, create_session_tables
from tests.support import lessons
from tests.support.snippets import REPO_ROOT, extract

LESSON = REPO_ROOT / "session_management" / "06_web_service"
README = LESSON / "README.md"
PAGES = (README, LESSON / "HARDENING.md")
minimal_app = importlib.import_module("session_management.06_web_service.minimal_app")
lesson_main = importlib.import_module("session_management.06_web_service.main")
app_module = importlib.import_module("session_management.06_web_service.app")
turn_module = importlib.import_module("session_management.06_web_service.turn")
database_module = importlib.import_module("session_management.06_web_service.database")
store_module = importlib.import_module("session_management.06_web_service.store")


def prose_words(markdown: str) -> int:
    """Issue 22's measure: fenced code blocks and HTML comments removed, whitespace-separated words counted."""
    without_code = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return len(re.sub(r"<!--.*?-->", "", without_code, flags=re.S).split())


def test_the_readme_starts_with_the_whole_minimal_app() -> None:
    text = README.read_text(encoding="utf-8")
    first = extract(README)[0]
    assert text.index("```") == text.index("```python"), "the lesson's first block is not the minimal app"
    assert first.mode == "run" and first.code == (LESSON / "minimal_app.py").read_text(encoding="utf-8")
    assert "session_management" not in first.code  # paste-able: published packages only
    assert len(first.code.splitlines()) <= 45
    assert prose_words(text) <= 1500


# --- the README's commands ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Curl:
    command: str
    prints: str


@dataclass(frozen=True)
class Server:
    command: str  # "uv run python -m ... --minimal"
    curls: tuple[Curl, ...]


def readme_commands() -> tuple[list[str], list[Server]]:
    """The README's ``uv run python -m`` lines in order, and each server command with the curl lines after it
    (each followed by a ``# <what it prints>`` line)."""
    commands: list[str] = []
    servers: list[tuple[str, list[Curl]]] = []
    lines = "\n".join(re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)).splitlines()
    for number, line in enumerate(lines):
        if line.startswith("uv run python -m "):
            command = line.split("  #")[0].strip()
            commands.append(command)
            if "--minimal" in command or "--serve" in command:
                servers.append((command, []))
        elif line.startswith("curl "):
            assert servers, f"{line!r} comes before any server command"
            assert lines[number + 1].startswith("# "), f"{line!r} does not say what it prints"
            servers[-1][1].append(Curl(line, lines[number + 1][2:]))
    return commands, [Server(command, tuple(curls)) for command, curls in servers]


def request_of(curl: Curl) -> tuple[str, str, dict[str, str], str | None]:
    """A curl command line as (method, path, headers, body): only the options the README uses."""
    words = shlex.split(curl.command)[1:]
    headers: dict[str, str] = {}
    body, url = None, ""
    while words:
        word = words.pop(0)
        if word == "-H":
            name, _, value = words.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = words.pop(0)
        elif word != "-s":
            assert not word.startswith("-"), f"{curl.command}: {word} is not handled here"
            url = word
    return ("POST" if body is not None else "GET"), "/" + url.split("/", 1)[1], headers, body


def test_the_readme_commands_are_the_ones_these_tests_run() -> None:
    commands, servers = readme_commands()
    module = "uv run python -m session_management.06_web_service.main"
    assert commands == [f"{module} --minimal", module, f"{module} --serve"]
    assert [len(server.curls) for server in servers] == [3, 2]


@pytest.fixture
def offline_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minimal_app.agent, "model", OfflineModel())


async def test_the_minimal_app_answers_the_readmes_curls_on_every_backend(
        database_url: str, offline_agent: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    if database_url.startswith("mysql"):  # the SDK cannot create its tables on MySQL: as the README says
        engine = create_engine(database_url)
        await create_session_tables(engine)
        await engine.dispose()
    app = minimal_app.app
    curls = readme_commands()[1][0].curls
    assert curls
    for restart in range(2):  # the second time, a new process as far as the app knows: its memory is the database
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
                for curl in curls if restart == 0 else [c for c in curls if "What is my name?" in c.command]:
                    method, path, headers, body = request_of(curl)
                    answer = await client.request(method, path, headers=headers, content=body)
                    assert answer.status_code == 200 and answer.text == curl.prints, (curl.command, answer.text)


def test_the_minimal_server_command_on_a_fresh_clone(tmp_path: Path) -> None:
    """The README's --minimal command as given (on another port), in a fresh copy of the repository with no
    settings; each of its curl lines, run by curl, prints what the README says; Ctrl+C stops it cleanly."""
    if shutil.which("curl") is None:
        message = "curl is not installed (apt-get install curl)"
        if os.environ.get("REQUIRE_ALL_BACKENDS") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = readme_commands()[1][0]
    tree = lessons.clean_copy(tmp_path / "clone")
    port = free_port()
    argv = [lessons.PYTHON, *shlex.split(server.command)[3:], "--port", str(port)]  # uv run python: this venv's
    process = subprocess.Popen(argv, cwd=tree, env={**lessons.stranger_env(), "PYTHONPATH": str(tree)},
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_listening(port, process)
        assert server.curls
        for curl in server.curls:
            command = curl.command.replace("localhost:8000", f"localhost:{port}")
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
            assert (done.returncode, done.stdout) == (0, curl.prints), (curl.command, done)
    finally:
        process.send_signal(signal.SIGINT)  # the reader's Ctrl+C
        out, err = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in err, (out, err)
    assert "offline" in out and list((tree / ".data").iterdir())  # the course's model, the course's SQLite file


async def test_the_full_service_answers_the_readmes_curls_with_the_demo_tokens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--serve's curls, in process (tests/lessons/test_lesson_06.py starts --serve as a process): without CHAT_USERS the
    service runs on the demo tokens, and the README's lines print what it says."""
    monkeypatch.setenv("CHAT_USERS", "")
    users, demo = lesson_main.configured_users()
    assert demo
    app = app_module.create_app(f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}", users, OfflineModel())
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
            curls = readme_commands()[1][1].curls
            assert curls
            for curl in curls:
                method, path, headers, body = request_of(curl)
                answer = await client.request(method, path, headers=headers, content=body)
                assert answer.text == curl.prints, (curl.command, answer.text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"the server exited: {out}{err}")
            time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within 90 s")


# --- the trap the README warns of -------------------------------------------------------------------------------

async def test_a_turn_session_without_save_stores_nothing(tmp_path: Path) -> None:
    """As the README says: the reply comes back, yet nothing is stored until save()."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'trap.db'}"
    db = database_module.Database(url, database_module.Timeouts())
    try:
        await store_module.prepare(db)  # the SDK's tables and the service's
        agent = minimal_app.agent.clone(model=OfflineModel())
        session = turn_module.TurnSession("trap", db)
        result = await Runner.run(agent, "My name is Ada.", session=session)
        assert result.final_output == "Nice to meet you, Ada! I'll remember that."
        assert await SQLAlchemySession("trap", engine=db.engine).get_items() == []
        await session.save("My name is Ada.", str(result.final_output))
        assert len(await SQLAlchemySession("trap", engine=db.engine).get_items()) == 2
    finally:
        await db.engine.dispose()


# --- claims that point at something -----------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(line.lstrip("#")) for line in prose.splitlines() if line.startswith("#")}


@pytest.fixture(params=PAGES, ids=lambda page: page.name)
def page(request: pytest.FixtureRequest) -> Iterator[Path]:
    yield request.param


def test_every_reference_points_at_something(page: Path) -> None:
    """No "measured below" or "see above" that a reader cannot follow: a reference is a link, the link's file and
    heading exist, and every test file a page names exists."""
    prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    prose = re.sub(r"<!--.*?-->", "", prose, flags=re.S)
    assert not re.findall(r"[^.]*\b(?:below|above)\b[^.]*", prose, flags=re.I)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if target.startswith("http"):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.is_file(), f"{page.name}: {target} links to a file that does not exist"
        assert not anchor or anchor in anchors(linked), f"{page.name}: {target} links to a heading that does not exist"
    for named in re.findall(r"tests/[\w/]+\.py", prose):
        assert (REPO_ROOT / named).is_file(), f"{page.name} names {named}, which does not exist"


def test_the_demo_tokens_are_printed_where_the_code_says() -> None:
    """main.py refuses the demo tokens off loopback because they are published: the README prints them."""
    assert "printed in the README" in (lesson_main.check_exposure.__doc__ or "")
    tokens = [entry.partition(":")[2] for entry in lesson_main.DEMO_USERS.split(",")]
    text = README.read_text(encoding="utf-8")
    assert tokens and all(f"`{token}`" in text for token in tokens)
