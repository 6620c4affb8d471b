"""What the throwaway clusters of lesson 12 share: free loopback ports, unprivileged processes, waiting, signals.

PostgreSQL and MariaDB refuse to run as root, so when the course runs as root (a CI machine, a container) the
servers run as ``nobody``; otherwise as you. Everything here is for lessons and tests, on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

from session_management.common.errors import CourseError

RUN_AS = "nobody"  # an unprivileged user every Debian system has


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Throwaway:
    """A throwaway server or cluster: ``with X() as x:`` starts it and removes it at the end, and a start that
    fails half-way removes what it had started before the error goes on."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Ports:
    """Hands out free loopback ports: upward from FAILOVER_BASE_PORT when it is set, else ones the OS picks."""

    def __init__(self) -> None:
        base = os.environ.get("FAILOVER_BASE_PORT", "")
        self.next = int(base) if base.isdigit() else 0
        self.given: set[int] = set()

    def take(self) -> int:
        for _ in range(1000):
            if self.next:
                port, self.next = self.next, self.next + 1
            else:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", 0))
                    port = probe.getsockname()[1]
            if port not in self.given and port_is_free(port):
                self.given.add(port)
                return port
        raise CourseError("found no free loopback port", "free some ports, or set FAILOVER_BASE_PORT elsewhere")


def give_to_server_user(path: Path) -> None:
    """Let the server user own *path* (root only: otherwise the servers run as you and own it already)."""
    if os.geteuid() == 0:
        import shutil

        shutil.chown(path, RUN_AS, "nogroup")


def spawn(args: Sequence[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start *args* in its own process group (so a drill can freeze or kill it whole), as the server user."""
    as_root = os.geteuid() == 0
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(args), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8", **(env or {})},
            user=RUN_AS if as_root else None, group="nogroup" if as_root else None,
            extra_groups=[] if as_root else None, start_new_session=True)


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               hint: str | Callable[[], str] = "see the server logs") -> float:
    """Poll *condition* (exceptions count as "not yet") until it is true; returns the seconds it took.

    *hint* (or what it returns, called only on a timeout: a log's last lines, say) is the error's fix."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - a server that is still starting answers with all sorts of errors
            pass
        if time.monotonic() - started > timeout:
            raise CourseError(f"{what} did not happen within {timeout:.0f} s",
                              hint if isinstance(hint, str) else hint())
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    """The direct child processes of *pid* (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def signal_all(pids: Sequence[int], signum: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def reap(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM *process*'s group, then SIGKILL what is left; never raises for a process already gone."""
    if process is None:
        return
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
