"""``scripts/db-servers.sh start|stop|status patroni|galera``: lesson 12's clusters, kept running between commands.

Through the script, as a reader runs it (about 15 s per cluster): `start` prints one export line and nothing else
on stdout; the URL takes a write; a second `start` prints the same URL; `stop` leaves no process it had started
and no data; `status` then says stopped. Without the packages: one line naming what to install.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.clusters import require_cluster
from tests.support.lessons import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "db-servers.sh"
VARIABLES = {"patroni": "FAILOVER_POSTGRES_URL", "galera": "GALERA_URL"}


@pytest.fixture
def servers_dir() -> Iterator[Path]:
    """A DB_SERVERS_DIR of the test's own, directly under /tmp (the servers' user must be able to enter it)."""
    directory = Path(tempfile.mkdtemp(prefix="db-servers-clusters-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def script(directory: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DB_SERVERS_DIR": str(directory), "PATH": path or os.environ["PATH"]}
    for name in ("FAILOVER_BASE_PORT", "PATRONI_BASE_PORT", "GALERA_BASE_PORT"):
        env.pop(name, None)  # free ports: the test must not collide with anything running
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def started_processes(root: Path) -> list[int]:
    """What the cluster's state file recorded, and the servers (postmaster, mariadbd) by their own pid files."""
    pids = list(json.loads((root / "cluster.json").read_text())["pids"])
    for pid_file in [*root.glob("*/data/postmaster.pid"), *root.glob("*/mysqld.pid")]:
        pids.append(int(pid_file.read_text().split()[0]))
    return pids


async def write_and_read(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE db_servers_check (id INT PRIMARY KEY, note VARCHAR(20))"))
            await connection.execute(text("INSERT INTO db_servers_check VALUES (1, 'written')"))
        async with engine.connect() as connection:
            return list((await connection.execute(text("SELECT note FROM db_servers_check"))).scalars())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["patroni", "galera"])
def test_the_script_starts_a_cluster_that_takes_writes_and_stops_all_of_it(kind: str, servers_dir: Path) -> None:
    require_cluster(kind)
    started = script(servers_dir, "start", kind)
    root, processes = servers_dir / kind, []
    try:
        assert started.returncode == 0, started.stderr
        lines = started.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"export {VARIABLES[kind]}="), started.stdout
        url = shlex.split(lines[0])[1].split("=", 1)[1]  # what `eval` would export
        processes = started_processes(root)
        assert processes and all(alive(pid) for pid in processes)

        assert asyncio.run(write_and_read(url)) == ["written"]
        again = script(servers_dir, "start", kind)
        assert (again.returncode, again.stdout) == (0, started.stdout) and "already running" in again.stderr
        assert script(servers_dir, "status", kind).stdout.startswith(f"{kind}: running")
        assert kind not in script(servers_dir, "status").stdout  # `all` means PostgreSQL and MariaDB only
    finally:
        stopped = script(servers_dir, "stop", kind)
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.1)  # an exited process may linger a moment until its parent reaps it
    assert not [pid for pid in processes if alive(pid)]
    assert not root.exists()
    assert script(servers_dir, "status", kind).stdout == f"{kind}: stopped\n"


def test_without_the_packages_the_script_names_them_in_one_line(servers_dir: Path, tmp_path: Path) -> None:
    """A PATH with every program but patroni and etcd: the script says what to install and starts nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for program in Path(directory).glob("*"):
            if program.name not in ("patroni", "etcd") and not (bin_dir / program.name).exists():
                (bin_dir / program.name).symlink_to(program)
    done = script(servers_dir, "start", "patroni", path=str(bin_dir))
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "apt-get install -y patroni etcd-server" in done.stderr
    assert not (servers_dir / "patroni").exists()
