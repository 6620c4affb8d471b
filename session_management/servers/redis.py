"""Throwaway `redis-server` processes on free loopback ports: one server, or a Redis Cluster.

Lesson 10 and the tests use these when no Redis is configured, so the first command works with nothing but
Debian's `redis-server` package installed. Everything lives in a temporary directory that :meth:`stop`
removes. The cluster is built the way `redis-cli --cluster create` builds one (config epochs, slot ranges,
``CLUSTER MEET``, ``CLUSTER REPLICATE``), in Python, so `redis-cli` is not needed.

These servers are for lessons and tests: no password, loopback only.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from session_management.common import ports
from session_management.common.errors import CourseError
from session_management.servers.local import Throwaway

SLOTS = 16384
REPLICATION_USER, REPLICATION_PASSWORD = "replication", "course-replication"
INSTALL = "install it: apt-get install redis-server (Debian/Ubuntu), brew install redis (macOS), "
INSTALL_HINT = INSTALL + "or run one with docker run -d -p 6379:6379 redis:7 and set REDIS_URL=redis://127.0.0.1:6379/0"
CLUSTER_INSTALL_HINT = INSTALL + ("or run one with docker compose up -d redis-cluster and set "
                                  "REDIS_CLUSTER_URL=redis://127.0.0.1:7001/0")


def redis_server_binary(*, cluster: bool = False) -> str:
    """The path of `redis-server`, or a CourseError that says how to get one (a cluster: REDIS_CLUSTER_URL)."""
    path = shutil.which("redis-server")
    if path is None:
        variable, hint = ("REDIS_CLUSTER_URL", CLUSTER_INSTALL_HINT) if cluster else ("REDIS_URL", INSTALL_HINT)
        raise CourseError(f"redis-server is not installed, and no Redis is configured ({variable}).", hint)
    return path


def free_port() -> int:
    """A free loopback port whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(100):
        port = ports.free_port()
        if port > 55000:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise CourseError("found no free loopback port pair for redis-server", "free some ports and try again")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise CourseError(f"Redis: {what} did not happen within {timeout:.0f} s", "see the server logs")
        time.sleep(0.05)


class RedisServer:
    """One `redis-server` process in its own directory. Persistence is off unless asked for."""

    def __init__(self, directory: Path, *, port: int | None = None, cluster: bool = False,
                 config: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.cluster = cluster
        self.config = {"save": "", "appendonly": "no", **(config or {})}
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> RedisServer:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--daemonize", "no", "--logfile", "server.log", "--protected-mode", "no"]
        for name, value in self.config.items():
            args += [f"--{name}", value]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"]
        self.process = subprocess.Popen(args, cwd=self.directory, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with self.client() as client:
            wait_until(client.ping, 15, f"redis-server on port {self.port} answering PING")
        return self

    def stop(self, *, crash: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown, which saves an RDB snapshot when `save` is set) or SIGKILL."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        self.process.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a long pause, a stalled VM)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the process resumes and reads what waited in its sockets."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, *, crash: bool = False) -> None:
        self.stop(crash=crash)
        self.start()


class LocalRedis:
    """A throwaway standalone server in a temporary directory; ``close()`` stops it and removes the directory."""

    def __init__(self, config: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="course-redis-"))
        self.server = RedisServer(self.root / "server", config=config)

    def __enter__(self) -> RedisServer:
        try:
            return self.server.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.stop(crash=True)
        shutil.rmtree(self.root, ignore_errors=True)


class LocalCluster(Throwaway):
    """A throwaway Redis Cluster: *primaries* primaries, each with *replicas_per_primary* replicas, on loopback.

    Replicas authenticate to their primary as a replication user, so a drill can cut one replication link
    (:meth:`cut_replication`) while clients keep writing to the primary.
    """

    def __init__(self, primaries: int = 3, replicas_per_primary: int = 1, config: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="course-redis-cluster-"))
        self.nodes: list[RedisServer] = []
        self.primaries, self.replicas_per_primary = primaries, replicas_per_primary
        self.config = config or {}

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        for node in self.nodes:
            node.stop(crash=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def new_node(self) -> RedisServer:
        node = RedisServer(self.root / f"node{len(self.nodes)}", cluster=True,
                           config={**self.config, "masteruser": REPLICATION_USER, "masterauth": REPLICATION_PASSWORD,
                                   # a replica's first sync starts at once (the default waits 5 s for others)
                                   "repl-diskless-sync-delay": "0"}).start()
        with node.client() as client:
            client.execute_command("ACL", "SETUSER", REPLICATION_USER, "on", f">{REPLICATION_PASSWORD}",
                                   "~*", "&*", "+@all")
        self.nodes.append(node)
        return node

    def start(self) -> None:
        redis_server_binary(cluster=True)
        total = self.primaries * (1 + self.replicas_per_primary)
        for _ in range(total):
            self.new_node()
        primaries = self.nodes[: self.primaries]
        per = SLOTS // self.primaries
        for number, node in enumerate(primaries):
            first, last = number * per, (SLOTS - 1 if number == self.primaries - 1 else (number + 1) * per - 1)
            with node.client() as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", number + 1)
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        self.meet(self.nodes[1:])
        for number, replica in enumerate(self.nodes[self.primaries:]):
            primary = primaries[number % self.primaries]
            with replica.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", self.node_id(primary))
        self.wait_healthy()

    def meet(self, nodes: list[RedisServer]) -> None:
        """Introduce *nodes* to the cluster and wait until every node knows every other."""
        with self.live_nodes()[0].client() as seed:
            for node in nodes:
                seed.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        live = [n for n in self.nodes if n.process is not None]

        def everyone_known() -> bool:
            for node in live:
                with node.client() as client:
                    table = client.execute_command("CLUSTER", "NODES").strip().splitlines()
                    # a node still in "handshake" is listed under a temporary id: not known yet
                    if sum("fail" not in line.split()[2] and "handshake" not in line.split()[2]
                           for line in table) < len(live):
                        return False
            return True

        wait_until(everyone_known, 20, "cluster nodes meeting each other")

    # -- inspection ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """A seed node: a cluster client discovers the rest from it."""
        return self.live_nodes()[0].url

    def live_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    @staticmethod
    def node_id(node: RedisServer) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID"))

    def role(self, node: RedisServer) -> str:
        with node.client() as client:
            return str(client.execute_command("ROLE")[0])

    def node_by_port(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def slot_owners(self) -> list[tuple[int, int, RedisServer]]:
        """(first slot, last slot, primary) for every slot range, as a live node sees it."""
        with self.live_nodes()[0].client() as client:
            return [(int(first), int(last), self.node_by_port(int(primary[1])))
                    for first, last, primary, *_ in client.execute_command("CLUSTER", "SLOTS")]

    def owner_of_slot(self, slot: int) -> RedisServer:
        return next(node for first, last, node in self.slot_owners() if first <= slot <= last)

    def primaries_now(self) -> list[RedisServer]:
        """The live primaries that serve slots, in the order of their first slot."""
        seen: list[RedisServer] = []
        for _, _, node in sorted(self.slot_owners(), key=lambda r: r[0]):
            if node not in seen:
                seen.append(node)
        return seen

    def replica_of(self, primary: RedisServer) -> RedisServer:
        primary_id = self.node_id(primary)
        for node in self.live_nodes():
            with node.client() as client:
                role = client.execute_command("ROLE")
            if role[0] == "slave" and int(role[2]) == primary.port:
                return node
        raise LookupError(f"the primary on port {primary.port} ({primary_id[:8]}) has no replica")

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every live node reports cluster_state:ok and every live replica's link is up."""

        def healthy() -> bool:
            replicas = 0
            for node in self.live_nodes():
                with node.client() as client:
                    if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                        return False
                    info = client.info("replication")
                    if info["role"] == "slave":
                        replicas += 1
                        if info.get("master_link_status") != "up":
                            return False
            for node in self.live_nodes():  # ... and every node has heard (gossip) which nodes are replicas
                with node.client() as client:
                    lines = client.execute_command("CLUSTER", "NODES").splitlines()
                    if sum(" slave " in f" {line.split()[2].replace(',', ' ')} " and "fail" not in line
                           for line in lines) != replicas:
                        return False
            return True

        wait_until(healthy, timeout, "cluster_state:ok on every node")

    # -- faults -------------------------------------------------------------------------------------------------
    def cut_replication(self, primary: RedisServer) -> RedisServer:
        """Cut the link from *primary* to its replica; clients can still write to the primary. Returns the replica."""
        replica = self.replica_of(primary)
        with primary.client() as client:
            client.execute_command("ACL", "SETUSER", REPLICATION_USER, "off")
            client.execute_command("CLIENT", "KILL", "USER", REPLICATION_USER)
        with replica.client() as client:
            wait_until(lambda: client.info("replication").get("master_link_status") == "down", 10,
                       "the replication link going down")
        return replica

    def crash(self, node: RedisServer) -> None:
        node.stop(crash=True)

    def wait_promoted(self, replica: RedisServer, timeout: float = 30) -> float:
        """Wait until *replica* is a primary and the cluster is whole again; returns the seconds it took."""
        started = time.monotonic()
        wait_until(lambda: self.role(replica) == "master", timeout, f"the replica on port {replica.port} taking over")
        self.wait_healthy(timeout)
        return time.monotonic() - started
