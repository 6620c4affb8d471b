"""Lesson 08's benchmark with ``--redis``: lesson 09's three Redis stores run in the same run and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests import lessons
from tests.redis_stores import require_redis_server


def test_benchmark_runs_the_redis_stores(lesson_env: dict[str, str], tmp_path: Path) -> None:
    require_redis_server()
    out = tmp_path / "results.json"
    stores = ["sdk_redis", "course_redis_1p", "course_redis_3p"]
    done = lessons.run("08_scaling", "--redis", "--concurrency", "3", "--turns", "2",
                       *[arg for store in stores for arg in ("--store", store)], "--json", str(out),
                       env=lesson_env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["results"]
    assert sorted(row["store"] for row in rows) == sorted(stores)
    assert all(row["database"] == "redis" and row["turns"] == 6 and row["errors"] == 0 for row in rows)
    assert "RuntimeWarning" not in done.stderr  # no un-awaited async close()
