"""Lesson 12's clusters kept running between commands (``scripts/db-servers.sh start|stop|status patroni|galera``).

    python -m session_management.servers.clusters start|stop|status patroni|galera --dir DIR [--base-port N]

``start`` starts lesson 12's own :class:`PatroniCluster` or :class:`GaleraCluster` in *DIR* and leaves it running
(its processes have sessions of their own, and log there), records their pids in ``DIR/cluster.json`` and prints
``export FAILOVER_POSTGRES_URL=...`` (``GALERA_URL``: node 1); progress goes to stderr. ``stop`` signals only the
recorded processes and the servers whose pid files lie in *DIR*, each after checking that its command line names
*DIR*, then removes *DIR*. Ports: upward from ``--base-port``, else free ones the OS picks.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from session_management.common.errors import CourseError
from session_management.servers.galera import GaleraCluster
from session_management.servers.local import children, command_line, signal_all
from session_management.servers.patroni import PatroniCluster

STATE = "cluster.json"
VARIABLES = {"patroni": "FAILOVER_POSTGRES_URL", "galera": "GALERA_URL"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def alive(pid: int) -> bool:
    """*pid* exists and is no zombie (a zombie's parent may never reap it in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ours(pid: int, root: Path) -> bool:
    """*pid* is alive and its command line names *root*: not another program that reuses a recorded pid."""
    return alive(pid) and f"{root}/" in command_line(pid)


def read_state(root: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((root / STATE).read_text()))
    except (OSError, ValueError):
        return None


def write_state(root: Path, state: dict[str, Any]) -> None:
    (root / f"{STATE}.new").write_text(json.dumps(state, indent=1))
    (root / f"{STATE}.new").replace(root / STATE)


def pid_files(root: Path) -> list[int]:
    """The servers' own pid files in *root*: PostgreSQL's postmaster.pid (Patroni may have restarted it since),
    MariaDB's mysqld.pid."""
    found = []
    for path in [*root.glob("*/data/postmaster.pid"), *root.glob("*/mysqld.pid")]:
        try:
            found.append(int(path.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return found


def processes(root: Path, state: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(the recorded processes that still run, the servers of the pid files with their children)."""
    recorded = [pid for pid in state.get("pids", []) if ours(pid, root)]
    servers = [pid for pid in pid_files(root) if pid not in recorded and ours(pid, root)]
    return recorded, [*servers, *(child for pid in servers for child in children(pid))]


def signal_groups(leaders: list[int], signum: signal.Signals) -> None:
    for pid in leaders:
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def stop(kind: str, root: Path) -> int:
    state = read_state(root)
    if state is None:
        if root.exists() and any(root.iterdir()):
            raise CourseError(f"{root} holds no {STATE}: not a cluster this command started",
                              "delete it yourself if it is yours")
        say(f"{kind}: not running")
        shutil.rmtree(root, ignore_errors=True)
        return 0
    if state.get("kind") != kind:
        raise CourseError(f"{root} holds a {state.get('kind')} cluster, not {kind}", f"stop {state.get('kind')}")
    recorded, servers = processes(root, state)
    etcd = [pid for pid in recorded if Path(command_line(pid).split(" ")[0]).name == "etcd"]
    first = [pid for pid in recorded if pid not in etcd]
    # Patroni (or mariadbd) first: SIGTERM, and Patroni stops its PostgreSQL; etcd last, so Patroni can still
    # give up its leader key. What has not exited within the timeouts gets SIGKILL. Each recorded process leads a
    # process group of its own (servers.local.spawn): its group is signalled, a pg_basebackup of Patroni's too.
    signal_groups(first, signal.SIGTERM)
    left = wait_gone(first, 20)
    servers = sorted({*servers, *processes(root, {"pids": []})[1]})  # PostgreSQL may have been restarted
    signal_groups([*left, *etcd], signal.SIGTERM)
    signal_all(servers, signal.SIGTERM)
    left = wait_gone([*left, *servers, *etcd], 5)
    signal_groups(recorded, signal.SIGKILL)
    signal_all(left, signal.SIGKILL)
    left = wait_gone(left, 5)
    if left:
        raise CourseError(f"{kind}: processes {left} outlived SIGKILL", f"{root} is kept; see ps -p {left[0]}")
    shutil.rmtree(root, ignore_errors=True)
    say(f"{kind}: stopped, {root} removed" if recorded or servers else f"{kind}: not running, {root} removed")
    return 0


def running(root: Path, state: dict[str, Any] | None) -> bool:
    """Started to the end, and every process it started still runs."""
    return state is not None and bool(state.get("ready")) and all(ours(pid, root) for pid in state["pids"])


def started(cluster: PatroniCluster | GaleraCluster) -> list[int]:
    """The processes *cluster* has started so far (Patroni starts PostgreSQL itself: see pid_files)."""
    if isinstance(cluster, PatroniCluster):
        return [process.pid for process in (cluster.etcd, *(node.process for node in cluster.nodes)) if process]
    return [node.process.pid for node in cluster.nodes if node.process]


def record_while_starting(cluster: PatroniCluster | GaleraCluster, root: Path, state: dict[str, Any],
                          done: threading.Event) -> None:
    """Write each process to the state file as soon as it is started: a start killed half-way (SIGKILL, which no
    handler sees) leaves nothing that `stop` cannot find."""
    while not done.wait(0.1):
        pids = started(cluster)
        if pids != state["pids"]:
            state["pids"] = pids
            write_state(root, state)


def export(kind: str, state: dict[str, Any]) -> None:
    print(f"export {VARIABLES[kind]}={shlex.quote(state['url'])}", flush=True)


def start(kind: str, root: Path, base_port: int | None) -> int:
    found = read_state(root)
    if found is not None and found.get("kind") != kind:
        raise CourseError(f"{root} holds a {found.get('kind')} cluster, not {kind}", "use another directory")
    if found is not None and running(root, found):
        say(f"{kind}: already running ({found['where']}; data: {root})")
        export(kind, found)
        return 0
    if found is not None:
        say(f"{kind}: {root} holds a cluster that no longer runs (whole): removing it, starting a new one")
        stop(kind, root)
    elif root.exists() and any(root.iterdir()):
        raise CourseError(f"{root} is not empty and holds no {STATE}", "delete it, or pick another directory")
    if base_port is None:
        os.environ.pop("FAILOVER_BASE_PORT", None)
    else:
        os.environ["FAILOVER_BASE_PORT"] = str(base_port)
    cluster: PatroniCluster | GaleraCluster
    cluster = PatroniCluster(root=root) if kind == "patroni" else GaleraCluster(root=root)
    state: dict[str, Any] = {"kind": kind, "pids": [], "ready": False}
    if isinstance(cluster, PatroniCluster):
        state["url"] = cluster.url()
        state["where"] = (f"PostgreSQL on 127.0.0.1:{','.join(str(node.pg_port) for node in cluster.nodes)}, "
                          f"Patroni REST on {','.join(str(node.rest_port) for node in cluster.nodes)}, "
                          f"etcd on {cluster.etcd_port}")
        what = f"etcd and {len(cluster.nodes)} Patroni nodes"
    else:
        state["url"] = cluster.nodes[0].url
        state["where"] = f"MariaDB Galera nodes on 127.0.0.1:{','.join(str(node.port) for node in cluster.nodes)}"
        what = f"{len(cluster.nodes)} MariaDB Galera nodes"
    write_state(root, state)  # from now on `stop` may remove the directory
    say(f"{kind}: starting {what} in {root}")
    began, done = time.monotonic(), threading.Event()
    recorder = threading.Thread(target=record_while_starting, args=(cluster, root, state, done), daemon=True)
    recorder.start()
    try:
        cluster.start()
    except BaseException:
        done.set()
        recorder.join()
        cluster.close()  # what had started, and the directory
        raise
    done.set()
    recorder.join()
    state.update(pids=started(cluster), ready=True)
    write_state(root, state)
    say(f"{kind}: ready in {time.monotonic() - began:.0f} s ({state['where']})")
    export(kind, state)
    return 0


def status(kind: str, root: Path) -> int:
    state = read_state(root)
    if running(root, state):
        assert state is not None
        print(f"{kind}: running ({state['where']}; data: {root})")
    elif state is not None and any(ours(pid, root) for pid in state.get("pids", [])):
        what = "partly running (a process died" if state.get("ready") else "starting (or a start was killed"
        print(f"{kind}: {what}; stop cleans up: data: {root})")
    else:
        print(f"{kind}: stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m session_management.servers.clusters",
                                     description="Lesson 12's throwaway clusters, kept running in a directory")
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("kind", choices=("patroni", "galera"))
    parser.add_argument("--dir", required=True, type=Path, help="the cluster's directory (stop removes it)")
    parser.add_argument("--base-port", type=int, default=None,
                        help="take ports upward from this one (default: free ports the OS picks)")
    args = parser.parse_args(argv)
    root = args.dir.absolute()
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))  # a start cut short cleans up
    try:
        if args.command == "start":
            return start(args.kind, root, args.base_port)
        if args.command == "stop":
            return stop(args.kind, root)
        return status(args.kind, root)
    except CourseError as error:
        say(f"error: {args.kind}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
