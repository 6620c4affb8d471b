"""Lesson 09: the course's store against the SDK's, across processes, and the benchmark's JSON contract.

The behaviour suite (tests/contract/test_session_behaviour.py) already holds CourseSession to every case the SDK's
store meets; these tests add what only matters between stores and processes.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
from agents.extensions.memory import SQLAlchemySession
from sqlalchemy.ext.asyncio import AsyncEngine

from session_management.common import create_session_tables
from session_management.stores.course_session import CourseSession
from tests.support import lessons, readme_samples
from tests.support.backends import unavailable
from tests.support.lessons import RunHere


def msg(text: str, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": text}


async def test_each_store_reads_what_the_other_wrote(engine: AsyncEngine) -> None:
    await create_session_tables(engine)
    sdk, course = SQLAlchemySession("shared", engine=engine), CourseSession("shared", engine=engine)
    await sdk.add_items([msg("from the SDK 1"), msg("from the SDK 2", "assistant")])
    await course.add_items([msg("from the course 1 ✓"), msg("from the course 2", "assistant")])
    await sdk.add_items([msg("from the SDK 3")])
    expected = [msg("from the SDK 1"), msg("from the SDK 2", "assistant"), msg("from the course 1 ✓"),
                msg("from the course 2", "assistant"), msg("from the SDK 3")]
    assert await sdk.get_items() == expected
    assert await course.get_items() == expected
    assert await course.get_items(limit=2) == await sdk.get_items(limit=2) == expected[-2:]
    assert await course.pop_item() == msg("from the SDK 3")
    assert await sdk.pop_item() == msg("from the course 2", "assistant")
    await course.clear_session()
    assert await sdk.get_items() == []


async def test_a_template_copy_compiles_nothing_and_keeps_the_sdks_behaviour(engine: AsyncEngine) -> None:
    """Lesson 09's per_request: a new SQLAlchemySession per request compiles its SQL again (counted as
    SQLAlchemy's cache misses); a copy of one template compiles nothing, and each copy is its own conversation."""
    per_request = importlib.import_module("session_management.09_scaling.per_request")
    await create_session_tables(engine)
    misses = per_request.count_compiles(engine)
    fresh = await per_request.measure("new object", lambda sid: SQLAlchemySession(sid, engine=engine), 3, misses)
    make = per_request.sdk_session_factory(engine)
    copied = await per_request.measure("template copy", make, 3, misses)
    assert fresh.compiles >= 3 * 3 and copied.compiles == 0, (fresh, copied)
    first, second = make("copy-1"), make("copy-2")
    await first.add_items([msg("one"), msg("two", "assistant")])
    await second.add_items([msg("other")])
    assert await first.get_items() == [msg("one"), msg("two", "assistant")]
    assert await first.get_items(limit=1) == [msg("two", "assistant")]
    assert await SQLAlchemySession("copy-2", engine=engine).get_items() == [msg("other")]
    assert await first.pop_item() == msg("two", "assistant")
    await first.clear_session()
    assert await first.get_items() == [] and await second.get_items() == [msg("other")]


def test_four_processes_writing_to_the_same_sessions_lose_nothing(database_url: str) -> None:
    async def prepare() -> None:
        from session_management.common import create_engine

        engine = create_engine(database_url)
        try:
            await create_session_tables(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    processes, sessions, turns = 4, 25, 10
    worker = "tests.support.lesson09_worker"
    workers = [subprocess.Popen([lessons.PYTHON, "-m", worker, database_url, str(p), str(sessions),
                                 str(turns)], cwd=lessons.REPO_ROOT, stderr=subprocess.PIPE, text=True)
               for p in range(processes)]
    for worker in workers:
        _, errors = worker.communicate(timeout=240)
        assert worker.returncode == 0, errors

    async def verify() -> None:
        from session_management.common import create_engine

        engine = create_engine(database_url)
        try:
            for number in range(sessions):
                contents = [item["content"] for item in await CourseSession(f"mp-{number}", engine=engine).get_items()]
                assert len(contents) == processes * turns * 2 and len(set(contents)) == len(contents)
                for p in range(processes):
                    own = [c for c in contents if c.startswith(f"p{p}-")]
                    assert own == [f"p{p}-t{t}-{part}" for t in range(turns) for part in ("q", "a")]
                for index in range(0, len(contents), 2):  # each add_items batch stays together
                    assert contents[index][:-1] == contents[index + 1][:-1]
        finally:
            await engine.dispose()

    asyncio.run(verify())


def test_the_offline_benchmark_keeps_its_json_contract(run_here: RunHere, tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    plot = tmp_path / "results.png"
    done = run_here("09_scaling", "--history", "2,4", "--history-concurrency", "2", "--limit", "3",
                    "--json", str(output), "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert "progress: " in done.stderr  # the progress bar, in its non-terminal form
    document = json.loads(output.read_text())
    assert document["servers"]["sqlite"]["settings"].keys() == {"journal_mode", "synchronous"}
    assert document["run"]["versions"]["openai-agents"] == "0.24.0" and document["run"]["cpus"] >= 1
    assert document["run"]["think"] == [{"model_s": 0.0, "pause_s": 0.0}] and document["run"]["counted"] is True
    results = document["results"]
    required = {"store": str, "database": str, "concurrency": int, "history": int, "read": str, "turns": int,
                "rounds": int, "turns_per_s": float, "turns_per_s_rounds": list, "p50_ms": float, "p99_ms": float,
                "max_ms": float, "errors": int, "checked": int, "lost": int, "duplicated": int, "misordered": int,
                "pool_size": int, "model_s": float, "pause_s": float, "client_cpu_us_per_turn": float}
    for row in results:
        for key, kind in required.items():
            assert isinstance(row[key], kind), (key, row)
    stores = {"sdk_sqlalchemy", "course_session", "floor", "sdk_sqlite"}  # the peers only with --peers
    assert {row["store"] for row in results} == stores
    assert {row["database"] for row in results} == {"sqlite"}
    cells = sorted({(row["concurrency"], row["history"], row["read"], row["limit"]) for row in results})
    assert cells == [(1, 0, "full", None), (2, 2, "full", None), (2, 2, "limit", 3), (2, 4, "full", None),
                     (2, 4, "limit", 3), (10, 0, "full", None)]
    assert len(results) == len(cells) * len(stores)
    for row in results:  # the offline default: 3 turns, one round; every message read back, none lost
        assert row["errors"] == row["lost"] == row["duplicated"] == row["misordered"] == 0
        assert row["rounds"] == 1 and row["turns"] == row["concurrency"] * 3
        assert row["checked"] == row["concurrency"] * (row["history"] + 2 * 3)
        assert row["turns_per_s_rounds"] == [row["turns_per_s"]] and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["round_trips_per_turn"] is None and row["client_cpu_us_per_turn"] > 0  # SQLite: no wire
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for row in results:  # the printed table is the JSON
        assert f"{row['store']:<15} {row['turns_per_s']:>8.0f}" in done.stdout
    assert "cost against history length (C=2):" in done.stdout


def test_several_pool_sizes_are_told_apart(run_here: RunHere, tmp_path: Path) -> None:
    """With --pool-size 1,2 every row and ratio names its pool (the table once printed identical-looking rows)."""
    done = run_here("09_scaling", "--concurrency", "2", "--turns", "1", "--pool-size", "1,2", "--store",
                    "course_session", "--store", "floor")
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("\nper turn")[0]  # the main table, not the costs table after it
    rows = [row for row in (line.split() for line in table.splitlines()) if row[:1] == ["sqlite"]
            and row[1].isdigit()]
    assert sorted((row[4], row[5]) for row in rows) == [("course_session", "1"), ("course_session", "2"),
                                                        ("floor", "1"), ("floor", "2")]
    assert "history=0 full pool=1: course_session = " in done.stdout
    assert "history=0 full pool=2: course_session = " in done.stdout


def test_think_paces_the_turns_and_is_recorded(run_here: RunHere, tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = run_here("09_scaling", "--concurrency", "2", "--turns", "2", "--think", "0,0.02/0.03", "--store",
                    "course_session", "--json", str(output))
    assert done.returncode == 0, done.stderr
    rows = json.loads(output.read_text())["results"]
    assert sorted((row["model_s"], row["pause_s"]) for row in rows) == [(0.0, 0.0), (0.02, 0.03)]
    assert all(row["turns"] == 4 and row["lost"] == 0 for row in rows)
    assert "think=0.02/0.03: course_session" not in done.stdout  # one store: no ratio lines
    assert " 0.02/0.03 " in done.stdout  # the table's think column, since two pacings ran


@pytest.mark.parametrize("arguments", [["--think", "soon"], ["--think", "1/2/3"], ["--think", "-1"],
                                       ["--concurrency", "ten"], ["--turns", "0"], ["--database", "postgresql://x/y"]])
def test_bad_benchmark_arguments_are_one_line(run_here: RunHere, arguments: list[str]) -> None:
    """In this process: tests/course/test_error_matrix.py runs lesson 09 as a process, through the same exit path."""
    done = run_here("09_scaling", *arguments)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize("backend", ["postgres"])
def test_pgbouncer_shows_the_failure_and_the_fix(run_here: RunHere, database_url: str) -> None:
    import os
    import shutil

    if not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")):
        unavailable("PgBouncer is not installed (apt-get install pgbouncer)")
    done = run_here("session_management.09_scaling.pgbouncer_demo", "--database", database_url)
    assert done.returncode == 0, done.stderr
    defaults, fixed = done.stdout.split("caches off ---")
    failures = [int(part.split("failed:")[1].split()[0]) for part in defaults.splitlines() if "failed:" in part]
    assert len(failures) == 2 and all(count > 0 for count in failures)
    assert "prepared statement" in defaults and "does not exist" in defaults
    assert fixed.count("turns ok: 120, failed:   0") == 2
    sample = readme_samples.sample(LESSON_FOLDER / "README.md", "pgbouncer_demo")
    assert readme_samples.sample_mismatch(sample, done.stdout) is None, readme_samples.sample_mismatch(sample,
                                                                                                   done.stdout)


def test_pgbouncer_demo_with_the_server_down_is_one_line(run_here: RunHere) -> None:
    """A reader found a 137-line traceback here: the demo made the SDK's tables before asking whether the server
    answers. Now it asks first, like every lesson."""
    import shutil

    if not shutil.which("pgbouncer") and not Path("/usr/sbin/pgbouncer").exists():
        unavailable("PgBouncer is not installed (apt-get install pgbouncer)")
    with socket.socket() as probe:  # a port nobody listens on: connection refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_here("session_management.09_scaling.pgbouncer_demo", "--database",
                    f"postgresql+asyncpg://course:course@127.0.0.1:{port}/sessions")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lessons.one_line_error(done.stderr).startswith("error: Cannot reach the database server")


LESSON_FOLDER = lessons.REPO_ROOT / "session_management" / "09_scaling"
RESULTS_MARK = "<!-- results: the lines below are printed from results.json by the test -->"
COUNTED_MARK = "<!-- counted: the lines below are printed from counted.json by the test -->"
C1000_MARK = "<!-- c1000: the lines below are printed from c1000.json by the test -->"


def marked_blocks(page: str, mark: str) -> list[list[str]]:
    return [part.split("```text\n", 1)[1].split("```", 1)[0].splitlines() for part in page.split(mark)[1:]]


def test_the_readme_prints_the_committed_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Every line of the result blocks of the lesson's pages (README, METHOD.md, ...) is printed by the benchmark
    from the committed results.json, counted.json or c1000.json, and a page showing a run names its command and
    duration: no number without the run behind it."""
    report = importlib.import_module("session_management.09_scaling.report")
    benchmark = importlib.import_module("session_management.09_scaling.benchmark")
    runs = {}
    for name, mark in (("results.json", RESULTS_MARK), ("counted.json", COUNTED_MARK), ("c1000.json", C1000_MARK)):
        document = json.loads((LESSON_FOLDER / name).read_text())
        report.print_table([benchmark.Result(**row) for row in document["results"]])
        runs[mark] = (document, capsys.readouterr().out.splitlines())
    pages = {path.name: path.read_text() for path in sorted(LESSON_FOLDER.glob("*.md"))}
    assert RESULTS_MARK in pages["README.md"] and COUNTED_MARK in pages["README.md"], "the README lost its numbers"
    shown = {RESULTS_MARK: 0, COUNTED_MARK: 0, C1000_MARK: 0}
    for name, page in pages.items():
        flat = " ".join(page.replace("\\\n", " ").split())  # the page's commands, their line breaks joined
        for mark, (document, printed) in runs.items():
            blocks = marked_blocks(page, mark)
            for block in blocks:
                assert len(block) > 5, f"{name}: a result block of {len(block)} lines"
                for line in filter(None, block):
                    assert line in printed, f"{name}: line not printed from its JSON: {line!r}"
            if blocks:
                shown[mark] += len(blocks)
                run = document["run"]
                assert f"{run['seconds']:,} s" in page, f"{name} shows the run but not its duration"
                if mark != COUNTED_MARK:  # the counted run went to a database of its own: its URLs differ
                    assert run["command"] in flat, f"{name} does not show the run's command: {run['command']}"
    assert shown[RESULTS_MARK] >= 3 and shown[COUNTED_MARK] >= 2 and shown[C1000_MARK] >= 1, shown
    results, counted, c1000 = runs[RESULTS_MARK][0], runs[COUNTED_MARK][0], runs[C1000_MARK][0]
    assert counted["run"]["counted"]
    for document in (results, counted, c1000):
        assert all(document["servers"][database]["durable"] for database in ("postgresql", "mysql"))


def test_the_default_run_prints_what_the_readme_shows(run_here: RunHere) -> None:
    """The README's sample of the default (offline) run is what it prints, with every timing left out (``...``):
    which store is fastest on SQLite changes from run to run, so the README states no ranking, and the table
    lists the stores in a fixed order, never by speed."""
    done = run_here("09_scaling")
    assert done.returncode == 0, done.stderr
    sample = readme_samples.sample(LESSON_FOLDER / "README.md", "the default run")
    mismatch = readme_samples.sample_mismatch(sample, done.stdout)
    assert mismatch is None, mismatch
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("sqlite ") and "C=" not in line]
    table = [row[4] for row in rows if len(row) > 12]
    assert table == ["sdk_sqlalchemy", "course_session", "floor", "sdk_sqlite"] * 2, table
    for line in sample:  # a row or ratio with a number in it would state a ranking the next run may not keep
        assert not line.startswith("sqlite ") or "..." in line, f"the README's sample states a timing: {line!r}"
    readme = (LESSON_FOLDER / "README.md").read_text()
    promise = re.search(r"(<|under|within|less than)\s*~?\d+\s*(s|seconds)\b", readme)
    assert promise is None, f"the README promises a duration no test can hold: {promise.group(0)!r}"
