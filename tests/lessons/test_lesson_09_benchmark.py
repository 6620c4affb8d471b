"""Lesson 09's benchmark on real servers: every store and peer adapter does the turn right and is checked for lost
and duplicated messages, the check itself can fail, and non-durable servers are refused. Never timings.

The peers need `uv sync --group peers` (CI installs it): a missing peer is a failure here, not a skip.
LlamaIndex's runs in an overlay (`uv run --with`, see peers.py); CI runs this module a second time in it with
REQUIRE_LLAMAINDEX=1, where its absence fails.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from session_management.common import CourseError, create_engine, create_session_tables
from session_management.common.progress import Progress
from tests.support.backends import unavailable

bench = importlib.import_module("session_management.09_scaling.benchmark")
durability = importlib.import_module("session_management.09_scaling.durability")
options = importlib.import_module("session_management.09_scaling.options")
peers = importlib.import_module("session_management.09_scaling.peers")
stores = importlib.import_module("session_management.09_scaling.stores")
workload = importlib.import_module("session_management.09_scaling.workload")

ALL_STORES = [*stores.STORES, *peers.PEERS]


def quiet() -> Progress:
    return Progress(1, enabled=False)  # no bar, no lines


def applicable(url: str) -> list[str]:
    """Every store that runs on this database, the peers included: missing peers skip the test locally (with the
    command that installs them) and fail it in CI (REQUIRE_ALL_BACKENDS=1), like a missing database."""
    missing = []
    for name in peers.PEERS:
        try:
            peers.require(name)
        except CourseError:
            missing.append(name)
    if "llamaindex" in missing and os.environ.get("REQUIRE_LLAMAINDEX") != "1":
        missing.remove("llamaindex")  # not in the project's environment; the overlay run covers it
    if missing:
        unavailable(f"peers not installed ({', '.join(missing)}): uv sync --group peers")
    return [name for name in ALL_STORES if bench.applies(name, url) and (name != "llamaindex" or llamaindex())]


def llamaindex() -> bool:
    try:
        peers.require("llamaindex")
    except CourseError:
        return False
    return True


async def test_every_store_and_peer_keeps_every_message(database_url: str) -> None:
    """A tiny run of every store (peers included) on this backend: every conversation is read back and must
    hold exactly its history and its turns, in order, for full and limited reads."""
    names = applicable(database_url)
    cells = [workload.Cell(3), workload.Cell(3, 5, "full"), workload.Cell(3, 5, "limit")]
    plan = bench.Plan(cells, turns=2, limit=2, rounds=1, peer_rounds=1, stores=names, pool_size=4)
    results = await bench.benchmark(database_url, plan, quiet(), 0)
    backend = make_url(database_url).get_backend_name()
    assert sorted((r.store, r.history, r.read) for r in results) == sorted(
        (name, cell.history, cell.read) for name in names for cell in cells)
    for r in results:
        assert (r.errors, r.lost, r.duplicated, r.misordered) == (0, 0, 0, 0), r
        assert r.turns == 3 * 2 and r.checked == 3 * (r.history + 2 * 2), r  # exact: nothing missing, nothing extra
        assert (r.client_cpu_us_per_turn or 0) > 0, r
        if backend != "sqlite":  # counted on the wire: no store does a turn in fewer than the floor's 2 round trips
            assert r.round_trips_per_turn is not None and r.round_trips_per_turn >= 2, r
            assert r.statements_per_turn is not None and r.statements_per_turn >= 2, r
    if backend != "sqlite":
        floor = next(r for r in results if r.store == "floor" and r.history == 0)
        assert (floor.round_trips_per_turn, floor.statements_per_turn) == (2, 2 if backend == "postgresql" else 5)
    assert {"langchain", "adk"} <= set(names)
    assert ("llamaindex" in names) == (backend == "postgresql" and llamaindex())
    engine = create_engine(database_url)
    try:  # every run cleared its conversations, so the next store starts from the same tables
        async with engine.connect() as connection:
            tables = ["agent_messages", "message_store", "events"] + (["chatstore"] if "llamaindex" in names else [])
            counts = {table: (await connection.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar()
                      for table in tables}
        assert counts == dict.fromkeys(tables, 0)
    finally:
        await engine.dispose()


async def test_each_adapter_reads_all_or_the_last_items(database_url: str) -> None:
    """The turn's read: get_items() is the whole conversation in order, get_items(limit) its last `limit`."""
    engine = create_engine(database_url, pool_size=4, max_overflow=0)
    closers = []
    try:
        await create_session_tables(engine)
        for name in applicable(database_url):
            opened = await {**stores.STORES, **peers.PEERS}[name](database_url, engine, 4)
            factory, close = opened
            closers.append(close)
            store = factory(f"bench-reads-{name}")
            items = workload.history_items(f"bench-reads-{name}", 4) + workload.turn_items(f"bench-reads-{name}", 0)
            await store.add_items(items[:4])
            await store.add_items(items[4:])
            assert await store.get_items() == items, name
            assert await factory(f"bench-reads-{name}").get_items(3) == items[-3:], name
    finally:
        for close in closers:
            await close()
        await engine.dispose()


class _Faulty:
    """An in-memory store that loses, doubles or reorders what it is given (history and turns alike): the
    benchmark's check must see it."""

    saved: dict[str, list[Any]] = {}

    def __init__(self, session_id: str, fault: str) -> None:
        self.session_id, self.fault = session_id, fault

    async def get_items(self, limit: int | None = None) -> list[Any]:
        items = self.saved.get(self.session_id, [])
        return items[-limit:] if limit else list(items)

    async def add_items(self, items: list[Any]) -> None:
        kept = {"lose": items[:1], "double": items + items[-1:], "swap": items[::-1], "none": items}[self.fault]
        self.saved.setdefault(self.session_id, []).extend(kept)

    async def clear_session(self) -> None:
        self.saved.pop(self.session_id, None)


@pytest.mark.parametrize(("fault", "lost", "duplicated", "misordered"),
                         [("none", 0, 0, 0), ("lose", 16, 0, 0), ("double", 0, 12, 0), ("swap", 0, 0, 4)])
async def test_the_check_catches_lost_duplicated_and_reordered_messages(fault: str, lost: int, duplicated: int,
                                                                        misordered: int) -> None:
    run = await workload.run_store(lambda sid: _Faulty(sid, fault), workload.Cell(4, 3), 2, 2, quiet(), fault,
                                f"faulty-{fault}")
    assert (run.errors, run.lost, run.duplicated, run.misordered) == (0, lost, duplicated, misordered)


def test_a_failed_turn_may_be_stored_once_but_not_twice() -> None:
    assert workload.compare(["a", "b"], ["a", "b", "c"], {"c"}) == (0, 0, False)
    assert workload.compare(["a", "b"], ["a", "b", "c", "c"], {"c"}) == (0, 1, False)
    assert workload.compare(["a", "b"], ["a", "b", "c"], set()) == (0, 1, False)
    assert workload.compare(["a", "b"], ["b"], set()) == (1, 0, False)
    assert workload.compare(["a", "b"], ["b", "a"], set()) == (0, 0, True)


def test_what_counts_as_durable() -> None:
    assert durability.durability_problems("postgresql", {"fsync": "on", "synchronous_commit": "on",
                                                         "full_page_writes": "on"}) == []
    assert durability.durability_problems("postgresql", {"fsync": "off", "synchronous_commit": "local",
                                                         "full_page_writes": "off"}) == ["fsync=off",
                                                                                         "full_page_writes=off"]
    assert durability.durability_problems("mysql", {"innodb_flush_log_at_trx_commit": "1",
                                                    "innodb_doublewrite": "1"}) == []
    assert durability.durability_problems("mysql", {"innodb_flush_log_at_trx_commit": "2",
                                                    "innodb_doublewrite": "0"}) == [
        "innodb_flush_log_at_trx_commit=2", "innodb_doublewrite=0"]


async def test_the_server_reports_its_settings(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        settings = await durability.server_settings(engine)
        assert settings.keys() == durability.QUERIES[engine.dialect.name].keys()
        assert all(value not in ("", "None") for value in settings.values()), settings
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_server_that_does_not_flush_commits_is_refused(database_url: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL can be made non-durable for one database; the benchmark must refuse it, or warn when told."""
    engine = create_engine(database_url)
    name = make_url(database_url).database
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        with pytest.raises(CourseError, match="(?s)synchronous_commit=off.*--allow-non-durable"):
            await durability.check_servers([database_url], False)
        servers = await durability.check_servers([database_url], True)
        assert servers["postgresql"]["durable"] is False
        assert "WARNING: postgresql is NOT durable (synchronous_commit=off)" in capsys.readouterr().out
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f'ALTER DATABASE "{name}" RESET synchronous_commit'))
        await engine.dispose()


@pytest.mark.parametrize(("values", "zero"), [(["-1"], True), (["0"], False), (["10,x"], False)])
def test_bad_numbers_are_refused_with_an_example(values: list[str], zero: bool) -> None:
    with pytest.raises(CourseError, match="use e.g."):
        options.int_list(values, [], zero=zero)
    assert options.int_list(["0,10", "100"], [], zero=True) == [0, 10, 100]


def test_a_missing_peer_names_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    how = peers.REQUIREMENTS["langchain"][1]
    monkeypatch.setitem(peers.REQUIREMENTS, "langchain", ("no_such_module_for_the_test", how))
    with pytest.raises(CourseError, match="uv sync --group peers.*--group peers-langchain"):
        peers.require("langchain")
    monkeypatch.setitem(peers.REQUIREMENTS, "llamaindex", ("no_such_module_for_the_test",
                                                           peers.REQUIREMENTS["llamaindex"][1]))
    with pytest.raises(CourseError, match="uv run --group peers --with 'llama-index-storage-chat-store-postgres"):
        peers.require("llamaindex")

