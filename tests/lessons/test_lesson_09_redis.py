"""Lesson 09's benchmark with ``--redis``: lesson 10's three Redis stores run in the same run and JSON."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from tests.support.lessons import RunHere
from tests.support.redis_stores import require_redis_server


def test_benchmark_runs_the_redis_stores(run_here: RunHere, tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    require_redis_server()
    out = tmp_path / "results.json"
    stores = ["sdk_redis", "course_redis_1p", "course_redis_3p"]
    done = run_here("09_scaling", "--redis", "--concurrency", "3", "--turns", "2",
                    *[arg for store in stores for arg in ("--store", store)], "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["results"]
    assert sorted(row["store"] for row in rows) == sorted(stores)
    assert all(row["database"] == "redis" and row["turns"] == 6 and row["errors"] == 0 for row in rows)
    gc.collect()  # an un-awaited async close() warns when its coroutine is collected
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning) and "never awaited" in str(w.message)]
