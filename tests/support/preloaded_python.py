"""Server processes started the way a reader types the command, without paying the imports for each one.

A new Python spends ~2.5 s of CPU on ``import agents`` alone; the framework tests start 18 servers. So one Python,
started once, imports the SDK, the frameworks and the drivers, then forks a child per server. The child is a
new process that runs the command's module as ``python -m`` would (``uvicorn fastapi_app:app --port N``, ``flask
--app flask_app run``): it imports the reader's app file fresh, in the reader's folder, with the environment the
test gives it, its output in a log file. That is the pre-loading gunicorn's ``--preload`` does.

The preloaded Python:
* runs outside the repository, with no ``PYTHONPATH``, and checks ``session_management`` is not importable: the
  app files must work in an empty project;
* reports, in the server's log, connections a server left open at exit (an engine it did not dispose of);
* swaps the course's offline model in for the SDK's default model (as the README tests do), loading it from its
  file rather than from the package, and turns tracing off (no uploads from the tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
OFFLINE_MODEL = REPO_ROOT / "session_management" / "common" / "offline_model.py"

OPEN_AT_EXIT = "connections still open at exit"
_BOOT = f"OPEN_AT_EXIT = {OPEN_AT_EXIT!r}\n" + r"""
import atexit, gc, importlib.util, json, os, runpy, sys, threading, time

import agents, agents.extensions.memory, aiomysql, aiosqlite, asyncpg, fastapi, flask, flask.cli, uvicorn.main  # noqa
import django.core.asgi, django.http, django.urls, django.views.decorators.csrf, django.views.decorators.http  # noqa
import sqlalchemy.dialects.mysql.aiomysql, sqlalchemy.dialects.postgresql.asyncpg, sqlalchemy.ext.asyncio  # noqa
import sqlalchemy.dialects.sqlite.aiosqlite  # noqa
from agents import set_tracing_disabled
from agents.models.multi_provider import MultiProvider

spec = importlib.util.spec_from_file_location("offline_model", sys.argv[1])
offline = importlib.util.module_from_spec(spec)
sys.modules["offline_model"] = offline
spec.loader.exec_module(offline)
MultiProvider.get_model = lambda self, name: offline.OfflineModel()
set_tracing_disabled(True)
importable = importlib.util.find_spec("session_management") is not None
print(json.dumps({"session_management_importable": importable}), flush=True)


def wait(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


children = set()
while True:
    line = sys.stdin.readline()
    if not line:  # the tests are done (or died): no server may outlive them
        for pid in children:
            os.kill(pid, 9)
        sys.exit(0)
    request = json.loads(line)
    if request["op"] == "wait":
        status = wait(request["pid"], request["timeout"])
        if status is not None:
            children.discard(request["pid"])
        print(json.dumps({"exit": status}), flush=True)
        continue
    assert threading.active_count() == 1, threading.enumerate()  # fork copies no other thread
    gc.freeze()  # the child's collections and exit then skip the preloaded heap (no copy of its pages)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        break
    children.add(pid)
    print(json.dumps({"pid": pid}), flush=True)

# The child: the command a reader runs, in the reader's folder, output to the log. It dies with the preloaded Python.
import ctypes, signal  # noqa: E401
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
if os.getppid() != parent:
    os._exit(1)  # the preloaded Python died before the line above
os.environ.clear()
os.environ.update(request["env"])
os.chdir(request["cwd"])
log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.dup2(log, 1)
os.dup2(log, 2)
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
sys.stdin = open(0, closefd=False)
sys.argv = request["argv"]
sys.path[0] = request["cwd"]  # what python -m puts first: the working directory


@atexit.register  # registered first, so it runs last: after the app's own shutdown code (and a Flask atexit)
def report_open_connections():
    from sqlalchemy.pool import Pool

    pools = [found for found in gc.get_objects() if isinstance(found, Pool)]
    left = sum(pool.checkedin() + pool.checkedout() for pool in pools)
    if left:
        print(f"{OPEN_AT_EXIT}: {left} (an engine was not disposed)", flush=True)


runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
"""


class PreloadedPython:
    """The preloaded Python and the servers it forked; :meth:`close` stops what is left."""

    def __init__(self, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OPENAI_") and k not in ("PYTHONPATH", "DATABASE_URL")}
        self._process = subprocess.Popen(
            [sys.executable, "-u", "-c", _BOOT, str(OFFLINE_MODEL)], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        self.session_management_importable = bool(self._reply()["session_management_importable"])
        self._running: set[int] = set()

    def _reply(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the preloaded Python died (exit status {self._process.wait()})")
        return dict(json.loads(line))

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        return self._reply()

    def start(self, module: str, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> int:
        """``python -m module`` with ``sys.argv = argv``, in *cwd*; returns the process id."""
        pid = int(self._ask({"op": "start", "module": module, "argv": argv, "cwd": str(cwd), "env": env,
                             "log": str(log)})["pid"])
        self._running.add(pid)
        return pid

    def wait(self, pid: int, timeout: float) -> int | None:
        """The process's exit status (negative: killed by that signal), or None if it still runs after *timeout*."""
        status = self._ask({"op": "wait", "pid": pid, "timeout": timeout})["exit"]
        if status is not None:
            self._running.discard(pid)
        return None if status is None else int(status)

    def close(self) -> None:
        for pid in list(self._running):
            os.kill(pid, signal.SIGKILL)
            self.wait(pid, 10)
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)
        assert self._process.stdout is not None
        self._process.stdout.close()


def free_port(first: int = 22000, last: int = 22999) -> int:
    """A port in the range this repository's tests may use that nothing listens on now."""
    start = first + (os.getpid() * 7) % (last - first)
    for offset in range(last - first + 1):
        port = first + (start - first + offset) % (last - first + 1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


def wait_until_listening(python: PreloadedPython, pid: int, port: int, log: Path, timeout: float = 60) -> None:
    """Until *port* accepts connections; fails with the server's log if it exits or does not listen in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        status = python.wait(pid, 0.05)
        if status is not None:
            raise AssertionError(f"the server exited ({status}) before listening:\n{log.read_text()}")
    raise AssertionError(f"the server did not listen on {port} within {timeout} s:\n{log.read_text()}")
