"""A throwaway MariaDB Galera cluster: three nodes on loopback, each taking writes.

Galera replicates every transaction to every node at commit: the committing node sends the transaction's
changes to the others, and each node *certifies* it (checks it against transactions committed meanwhile on
other nodes, row by row). If two nodes changed the same row at the same time, the later one fails
certification and its client gets a deadlock error (1213), as if InnoDB had chosen it as a deadlock victim.

The first node bootstraps the cluster; the others join it and receive its data by a state transfer over
rsync (``wsrep_sst_method=rsync``). Everything lives in a temporary directory that :meth:`GaleraCluster.close`
removes. Needs MariaDB's server, Debian's ``galera-4``, ``rsync`` and ``ss`` (``iproute2``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pymysql

from session_management.common.errors import CourseError
from session_management.servers.local import RUN_AS, Ports, Throwaway, give_to_server_user, reap, spawn, wait_until

USER, PASSWORD, DATABASE = "course", "course", "sessions"
PROVIDERS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/galera-4/libgalera_smm.so",
             "/usr/lib64/galera-4/libgalera_smm.so")
INSTALL_HINT = "install them: apt-get install mariadb-server galera-4 rsync iproute2 (Debian/Ubuntu)"


def binaries() -> tuple[str, str, str]:
    """mariadbd, mariadb-install-db and the Galera library, or one CourseError naming what to install."""
    server = shutil.which("mariadbd") or next((p for p in ("/usr/sbin/mariadbd",) if os.path.exists(p)), None)
    installer = shutil.which("mariadb-install-db")
    provider = next((p for p in PROVIDERS if os.path.exists(p)), None)
    missing = [name for name, path in (("mariadb-server", server and installer), ("galera-4", provider),
                                       ("rsync", shutil.which("rsync")),  # the state transfer's tools
                                       ("iproute2", shutil.which("ss") or shutil.which("lsof"))) if not path]
    if missing:
        raise CourseError(f"{' and '.join(missing)} not installed", INSTALL_HINT)
    assert server and installer and provider
    return server, installer, provider


class GaleraNode:
    def __init__(self, name: str, root: Path, ports: Ports) -> None:
        self.name = name
        self.directory = root / name
        self.port, self.galera_port, self.ist_port, self.sst_port = (ports.take(), ports.take(), ports.take(),
                                                                      ports.take())
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.directory / "mysqld.sock")

    @property
    def url(self) -> str:
        return f"mysql+aiomysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def admin(self) -> pymysql.connections.Connection:
        """root over the node's socket (no password: only this directory's owner reaches it)."""
        return pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=3, read_timeout=10,
                               autocommit=True)

    def status(self, name: str) -> str:
        with self.admin() as connection, connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cursor.fetchone()
            return "" if row is None else str(row[1])

    def start(self, server: str, provider: str, cluster_address: str, *, bootstrap: bool) -> None:
        options = ";".join([f"gmcast.listen_addr=tcp://127.0.0.1:{self.galera_port}",
                            f"ist.recv_addr=127.0.0.1:{self.ist_port}", "gcache.size=32M",
                            # a dead node is suspected after 3 s, dropped after 6 s (defaults: 5 s, 15 s)
                            "evs.suspect_timeout=PT3S", "evs.inactive_timeout=PT6S", "evs.install_timeout=PT6S"])
        args = [server, "--no-defaults", f"--datadir={self.directory / 'data'}", f"--socket={self.socket}",
                f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                f"--pid-file={self.directory / 'mysqld.pid'}", f"--log-error={self.directory / 'error.log'}",
                "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=1",
                "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2", "--wsrep-on=ON",
                f"--wsrep-provider={provider}", "--wsrep-cluster-name=course", f"--wsrep-node-name={self.name}",
                f"--wsrep-node-address=127.0.0.1:{self.galera_port}", f"--wsrep-cluster-address={cluster_address}",
                "--wsrep-sst-method=rsync", f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
                f"--wsrep-provider-options={options}"]
        if bootstrap:
            args.append("--wsrep-new-cluster")
        self.process = spawn(args, cwd=self.directory, log=self.directory / "mariadbd.out")

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        reap(self.process)
        self.process = None

    def log_tail(self) -> str:
        try:
            lines = (self.directory / "error.log").read_text(errors="replace").splitlines()
        except OSError:
            return f"see {self.directory}/error.log"
        return "mariadbd said: " + " | ".join(lines[-3:])


class GaleraCluster(Throwaway):
    """``with GaleraCluster() as cluster: cluster.nodes[0].url ...``: three nodes, all in the primary component."""

    def __init__(self, nodes: int = 3, root: Path | None = None) -> None:
        """*root*: the cluster's directory (made if missing), else a new temporary one; :meth:`close` removes it."""
        self.server, self.installer, self.provider = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="course-galera-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.ports = Ports()
        self.nodes = [GaleraNode(f"galera{number}", self.root, self.ports) for number in range(1, nodes + 1)]

    @property
    def cluster_address(self) -> str:
        return "gcomm://" + ",".join(f"127.0.0.1:{node.galera_port}" for node in self.nodes)

    def start(self) -> None:
        template = self.root / "template"
        template.mkdir()
        give_to_server_user(template)
        as_root = os.geteuid() == 0
        done = subprocess.run([self.installer, "--no-defaults", f"--datadir={template / 'data'}",
                               "--auth-root-authentication-method=normal", "--skip-test-db"],
                              cwd=template, capture_output=True, text=True, check=False, timeout=120,
                              user=RUN_AS if as_root else None, group="nogroup" if as_root else None,
                              extra_groups=[] if as_root else None)
        if done.returncode != 0:
            raise CourseError(f"mariadb-install-db failed: {done.stderr.strip()[-300:]}", INSTALL_HINT)
        for node in self.nodes:  # joiners get the first node's data by state transfer; a data directory each
            node.directory.mkdir()
            give_to_server_user(node.directory)
            subprocess.run(["cp", "-a", str(template / "data"), str(node.directory / "data")], check=True)
            node.directory.chmod(0o700)  # the root account's socket lives here
        shutil.rmtree(template, ignore_errors=True)
        for number, node in enumerate(self.nodes):
            node.start(self.server, self.provider, self.cluster_address, bootstrap=number == 0)
            wait_until(lambda node=node: node.status("wsrep_ready") == "ON", 60,  # type: ignore[misc]
                       f"Galera node {node.name} joining", node.log_tail)
        self.wait_size(len(self.nodes))
        with self.nodes[0].admin() as connection, connection.cursor() as cursor:  # replicated to every node
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cursor.execute(f"GRANT ALL ON *.* TO '{USER}'@'%'")

    def wait_size(self, size: int, timeout: float = 30) -> float:
        def reached() -> bool:
            return all(node.status("wsrep_cluster_size") == str(size) for node in self.live_nodes())
        return wait_until(reached, timeout, f"the Galera cluster reaching {size} nodes")

    def live_nodes(self) -> list[GaleraNode]:
        return [node for node in self.nodes if node.process is not None]

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def state(self, node: GaleraNode) -> dict[str, Any]:
        """wsrep_cluster_size, wsrep_cluster_status (Primary / non-Primary), wsrep_ready of *node*."""
        return {name: node.status(name) for name in ("wsrep_cluster_size", "wsrep_cluster_status", "wsrep_ready")}
