"""A throwaway PostgreSQL cluster with automatic failover: one etcd, three Patroni nodes (a primary, two replicas).

Lesson 12 and its tests start one when no ``FAILOVER_POSTGRES_URL`` is configured, so the lesson's first command
works with nothing but Debian's ``patroni`` and ``etcd-server`` packages (and PostgreSQL) installed. Everything
lives in a temporary directory that :meth:`PatroniCluster.close` removes; every port is on 127.0.0.1.

Patroni keeps the "who is the primary" key in etcd with a time to live (``ttl``); the primary renews it every
``loop_wait`` seconds. When the primary's machine dies the key expires, the healthiest replica takes it and is
promoted, and the other replica follows it. The settings here are short (ttl 10 s) so that a drill is quick;
production clusters keep Patroni's defaults (30 s) or close to them.
"""

from __future__ import annotations

import glob
import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from session_management.common.errors import CourseError
from session_management.servers.local import (
    Ports,
    Throwaway,
    children,
    command_line,
    give_to_server_user,
    reap,
    signal_all,
    spawn,
    wait_until,
)

USER, PASSWORD, DATABASE = "course", "course", "sessions"
INSTALL_HINT = ("install them: apt-get install patroni etcd-server postgresql (Debian/Ubuntu), "
                "or point FAILOVER_POSTGRES_URL at your own cluster (a multi-host URL)")
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4  # seconds; Patroni's defaults are 30, 10, 10


def postgres_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise CourseError("PostgreSQL's server is not installed, and no FAILOVER_POSTGRES_URL is set", INSTALL_HINT)
    return Path(found[-1]).parent


def binaries() -> tuple[str, str, Path]:
    """Paths of patroni, etcd and PostgreSQL's bin directory, or one CourseError naming what to install."""
    patroni, etcd = shutil.which("patroni"), shutil.which("etcd")
    missing = [name for name, path in (("patroni", patroni), ("etcd", etcd)) if path is None]
    if missing:
        raise CourseError(f"{' and '.join(missing)} not installed, and no FAILOVER_POSTGRES_URL is set", INSTALL_HINT)
    assert patroni and etcd
    return patroni, etcd, postgres_bin_dir()


def http_json(url: str, method: str = "GET", body: dict[str, Any] | None = None, timeout: float = 2) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own loopback server
        return json.loads(response.read() or b"null")


class PatroniNode:
    """One Patroni process and the PostgreSQL server it runs."""

    def __init__(self, name: str, root: Path, ports: Ports) -> None:
        self.name = name
        self.directory = root / name
        self.pg_port, self.rest_port = ports.take(), ports.take()
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen: list[int] = []

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def config(self, etcd_url: str, bin_dir: Path) -> dict[str, Any]:
        address = f"127.0.0.1:{self.pg_port}"
        return {
            "scope": "course", "name": self.name,
            "restapi": {"listen": f"127.0.0.1:{self.rest_port}", "connect_address": f"127.0.0.1:{self.rest_port}"},
            "etcd3": {"hosts": [etcd_url.removeprefix("http://")]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                   "parameters": {"wal_level": "replica", "hot_standby": "on",
                                                  "max_wal_senders": 10, "max_replication_slots": 10,
                                                  "wal_log_hints": "on", "wal_keep_size": "128MB",
                                                  "fsync": "on", "synchronous_commit": "on"}},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"auth-local": "trust"}],
            },
            "postgresql": {
                "listen": address, "connect_address": address,
                "data_dir": str(self.data_dir), "bin_dir": str(bin_dir),
                "pgpass": str(self.directory / "pgpass"),
                "basebackup": {"checkpoint": "fast"},  # the default waits for a spread-out checkpoint
                "authentication": {"superuser": {"username": USER, "password": PASSWORD},
                                   "replication": {"username": "replicator", "password": "course-replication"},
                                   "rewind": {"username": USER, "password": PASSWORD}},
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 scram-sha-256",
                           "host replication replicator 127.0.0.1/32 scram-sha-256"],
                "parameters": {"unix_socket_directories": str(self.directory), "max_connections": 100,
                               "shared_buffers": "32MB"},
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def start(self, etcd_url: str, patroni: str, bin_dir: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        give_to_server_user(self.directory)
        config_file = self.directory / "patroni.json"  # JSON is YAML: no YAML writer needed
        config_file.write_text(json.dumps(self.config(etcd_url, bin_dir), indent=1))
        self.process = spawn([patroni, str(config_file)], cwd=self.directory, log=self.directory / "patroni.log")

    def log_tail(self) -> str:
        """The last lines of this node's Patroni log, for an error message."""
        try:
            lines = (self.directory / "patroni.log").read_text(errors="replace").splitlines()
        except OSError:
            return f"see {self.directory}/patroni.log"
        return "Patroni said: " + " | ".join(lines[-3:])

    def state(self) -> dict[str, Any]:
        """Patroni's view of this node (role "master"/"replica", state "running", xlog positions ...)."""
        return dict(http_json(f"{self.rest}/patroni"))

    def is_primary(self) -> bool:
        try:
            return self.state().get("role") in ("master", "primary")
        except OSError:
            return False

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postgres_processes(self) -> list[int]:
        pid = self.postmaster_pid()
        if pid is None or "postgres" not in command_line(pid):
            return []
        return [pid, *children(pid)]

    def crash(self) -> None:
        """The machine dies: SIGKILL to Patroni and to every PostgreSQL process of this node, at once."""
        doomed = self.postgres_processes()
        if self.process is not None:
            signal_all([self.process.pid], signal.SIGKILL)
        signal_all(doomed, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        """The machine hangs (SIGSTOP to Patroni and PostgreSQL): its sockets stay open, nothing answers."""
        self.frozen = ([self.process.pid] if self.process else []) + self.postgres_processes()
        signal_all(self.frozen, signal.SIGSTOP)

    def thaw(self) -> None:
        signal_all(self.frozen, signal.SIGCONT)
        self.frozen = []

    def stall(self, process: str) -> list[int]:
        """SIGSTOP this node's "walsender" (on a primary) or "walreceiver" (on a replica) processes.

        Stopped senders: the primary's changes stop reaching the replicas (a broken link). Stopped receivers:
        what the primary sent waits in the replica's socket buffer, and reaches it once the receiver runs again
        (a replica slow to confirm). Returns the stopped processes."""
        pids = [pid for pid in self.postgres_processes() if process in command_line(pid)]
        signal_all(pids, signal.SIGSTOP)
        return pids

    def stop(self) -> None:
        reap(self.process)
        self.process = None
        signal_all(self.postgres_processes(), signal.SIGKILL)


class PatroniCluster(Throwaway):
    """etcd plus three Patroni nodes on loopback; ``with PatroniCluster() as cluster: cluster.url ...``."""

    def __init__(self, nodes: int = 3, root: Path | None = None) -> None:
        """*root*: the cluster's directory (made if missing), else a new temporary one; :meth:`close` removes it."""
        self.patroni, self.etcd_binary, self.bin_dir = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="course-patroni-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.ports = Ports()
        self.etcd_port, self.etcd_peer_port = self.ports.take(), self.ports.take()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.nodes = [PatroniNode(f"pg{number}", self.root, self.ports) for number in range(1, nodes + 1)]

    # -- lifecycle ----------------------------------------------------------------------------------------------
    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def start(self) -> None:
        etcd_dir = self.root / "etcd"
        etcd_dir.mkdir()
        give_to_server_user(etcd_dir)
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = spawn([self.etcd_binary, "--name", "etcd1", "--data-dir", str(etcd_dir / "data"),
                           "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                           "--initial-cluster", f"etcd1={peer}", "--heartbeat-interval", "100",
                           "--election-timeout", "1000"], cwd=etcd_dir, log=etcd_dir / "etcd.log")
        wait_until(lambda: http_json(f"{self.etcd_url}/health").get("health") == "true", 30, "etcd starting")
        first, *others = self.nodes
        first.start(self.etcd_url, self.patroni, self.bin_dir)  # bootstraps (initdb), takes the leader key
        wait_until(first.is_primary, 60, "Patroni bootstrapping the first node", first.log_tail)
        self.psql(first, "postgres", f"CREATE DATABASE {DATABASE}")
        for node in others:  # each clones the primary (pg_basebackup) and streams from it
            node.start(self.etcd_url, self.patroni, self.bin_dir)
        self.wait_replicas(len(others))

    def close(self) -> None:
        for node in self.nodes:
            node.thaw()
            node.stop()
        reap(self.etcd)
        self.etcd = None
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the application's view ---------------------------------------------------------------------------------
    def url(self, target: str = "read-write") -> str:
        """One SQLAlchemy URL naming every node; asyncpg connects to the first that matches *target*."""
        hosts = "&".join(f"host=127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgresql+asyncpg://{USER}:{PASSWORD}@/{DATABASE}?{hosts}&target_session_attrs={target}"

    def node_url(self, node: PatroniNode) -> str:
        return f"postgresql+asyncpg://{USER}:{PASSWORD}@127.0.0.1:{node.pg_port}/{DATABASE}"

    def psql(self, node: PatroniNode, database: str, sql: str) -> str:
        result = subprocess.run([str(self.bin_dir / "psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1",
                                 "-h", "127.0.0.1", "-p", str(node.pg_port), "-U", USER, "-d", database, "-c", sql],
                                env={"PGPASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}, capture_output=True,
                                text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise CourseError(f"psql on {node.name}: {result.stderr.strip()}", f"see {node.directory}/patroni.log")
        return result.stdout.strip()

    # -- inspection ---------------------------------------------------------------------------------------------
    def live_nodes(self) -> list[PatroniNode]:
        return [node for node in self.nodes if node.process is not None and not node.frozen]

    def members(self) -> list[dict[str, Any]]:
        for node in self.live_nodes():
            try:
                return list(http_json(f"{node.rest}/cluster")["members"])
            except OSError:
                continue
        return []

    def primary(self) -> PatroniNode:
        for node in self.live_nodes():
            if node.is_primary():
                return node
        raise LookupError("no primary")

    def replicas(self) -> list[PatroniNode]:
        return [node for node in self.live_nodes() if not node.is_primary()]

    def wait_replicas(self, count: int, timeout: float = 90) -> float:
        """Wait until *count* replicas stream from the primary; returns the seconds it took."""
        def streaming() -> bool:
            members = self.members()
            return sum(m.get("role") in ("replica", "sync_standby") and m.get("state") in ("running", "streaming")
                       for m in members) >= count
        return wait_until(streaming, timeout, f"{count} Patroni replicas streaming")

    def wait_new_primary(self, old: PatroniNode, timeout: float = 60) -> tuple[PatroniNode, float]:
        started = time.monotonic()
        wait_until(lambda: self.primary() is not old, timeout, "a replica taking over as primary")
        return self.primary(), time.monotonic() - started

    # -- settings -------------------------------------------------------------------------------------------------
    def set_synchronous(self, on: bool, timeout: float = 30) -> None:
        """Patroni's synchronous mode: one replica is a synchronous standby, and only it may be promoted."""
        http_json(f"{self.primary().rest}/config", "PATCH", {"synchronous_mode": on})

        def settled() -> bool:
            sync = [m for m in self.members() if m.get("role") == "sync_standby"]
            return bool(sync) if on else not sync
        wait_until(settled, timeout, f"Patroni {'naming' if on else 'dropping'} a synchronous standby")

    def rejoin(self, node: PatroniNode, timeout: float = 90) -> float:
        """Start a crashed node's Patroni again: it rewinds its data to the new primary's and becomes a replica."""
        node.start(self.etcd_url, self.patroni, self.bin_dir)
        return self.wait_replicas(len(self.nodes) - 1, timeout)
