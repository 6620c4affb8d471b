"""Lesson 10 as a reader runs it: the first command starts its own Redis (or cluster) and removes it after;
without `redis-server`, or with a Redis that does not answer, one line and exit status 2. The default run (a
throwaway server) is a first command: its output is its transcript (tests/course/test_transcripts.py), and that it
leaves nothing in its temporary folder is tests/course/test_first_command.py's check."""

from __future__ import annotations

import os

import pytest

from session_management.common import CourseError, load_env
from session_management.servers.redis_connect import configured_url, open_redis
from session_management.stores.redis_cluster_session import RedisClusterSession
from tests.support import lessons, readme_samples
from tests.support.backends import unavailable
from tests.support.lessons import RunHere
from tests.support.redis_stores import require_redis_server

LESSON = "session_management.10_redis_session.main"
FOLDER = lessons.REPO_ROOT / "session_management" / "10_redis_session"


@pytest.fixture
def env(lesson_env: dict[str, str]) -> dict[str, str]:
    lesson_env["REDIS_URL"] = ""  # set-but-empty: a developer's .env cannot point the run elsewhere
    lesson_env["REDIS_CLUSTER_URL"] = ""
    return lesson_env


def test_the_lesson_on_a_throwaway_cluster(env: dict[str, str], run_here: RunHere) -> None:
    require_redis_server()
    done = run_here(LESSON, "--database", "redis-cluster", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("  replica :") == 3  # three primaries, a replica each
    assert "add_items() -> TypeError: RedisSession does not support transactions with RedisCluster clients." in out
    assert "agent: Your name is Ada." in out
    assert "lesson10:{ada}               slot 5938" in out and "lesson10:{ada}:messages      slot 5938" in out
    assert "10 items acknowledged,\n      10 of them lost when the replica took over" in out
    assert "5 of 5 writes reported NOT replicated; the caller" in out
    assert "0 confirmed items lost, 10 re-sent items present" in out
    assert "Replica frozen (lagging, still connected), WAIT 1: 5 of 5 writes reported NOT replicated;\n" \
           "      0 confirmed items lost when it took over" in out
    assert "15 of 15 conversations took another turn" in out
    assert "turns acknowledged" in out and ", lost 0; items stored twice: 0" in out
    assert "20 of 20 conversations now live on the new primary" in out
    assert "20 of 20 conversations complete and in order" in out
    for step in (4, 5, 6):  # what DRILLS.md shows of each drill is what the run printed
        sample = readme_samples.sample(FOLDER / "DRILLS.md", f"step {step} of the cluster run")
        assert readme_samples.sample_mismatch(sample, out) is None, readme_samples.sample_mismatch(sample, out)


def test_without_redis_server_one_line_and_exit_2(env: dict[str, str], run_here: RunHere) -> None:
    env["PATH"] = os.path.dirname(lessons.PYTHON)  # the venv's python, no redis-server
    done = run_here(LESSON, env=env)  # in this process: the first command is a process
    assert done.returncode == 2
    assert done.stderr.startswith("error: redis-server is not installed")
    assert "apt-get install redis-server" in done.stderr and "brew install redis" in done.stderr
    assert "docker run" in done.stderr and "Traceback" not in done.stderr


def test_a_cluster_without_redis_server_names_the_cluster_variable(env: dict[str, str], run_here: RunHere) -> None:
    env["PATH"] = os.path.dirname(lessons.PYTHON)
    done = run_here(LESSON, "--database", "redis-cluster", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: redis-server is not installed, and no Redis is configured "
                                  "(REDIS_CLUSTER_URL)")
    assert "REDIS_CLUSTER_URL=redis://127.0.0.1:7001/0" in done.stderr and "REDIS_URL=" not in done.stderr


async def test_a_redis_that_does_not_answer_is_one_clear_error() -> None:
    with pytest.raises(CourseError, match="does not answer"):
        async with open_redis("redis://127.0.0.1:1/0"):
            pass
    with pytest.raises(CourseError, match="is not a Redis database"):
        configured_url("postgres")


@pytest.mark.parametrize("name", ["redis", "redis-cluster"])
async def test_the_configured_servers_serve_the_course_store(name: str) -> None:
    """REDIS_URL / REDIS_CLUSTER_URL (CI: scripts/db-servers.sh start redis|redis-cluster) reach the right kind of
    server, and the course's store round-trips a conversation there."""
    variable = "REDIS_CLUSTER_URL" if name == "redis-cluster" else "REDIS_URL"
    load_env()
    if not os.environ.get(variable):
        unavailable(f"{name} unavailable: {variable} is not set (bash scripts/db-servers.sh start {name})")
    async with open_redis(name) as target:
        assert target.lab is None and target.cluster == (name == "redis-cluster")
        session = RedisClusterSession(f"test-configured-{os.getpid()}", redis_client=target.client)
        try:
            await session.add_items([{"role": "user", "content": "hello"}])
            assert await session.get_items() == [{"role": "user", "content": "hello"}]
        finally:
            await session.clear_session()
