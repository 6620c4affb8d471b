"""The kill drills on SQLite, PostgreSQL and MariaDB: SIGKILL at every step of a key rotation and of a summary
(tests/support/crash_drill.py does the killing), then count what the database lost or holds twice: 0 and 0, since a
crash is exactly when a store must neither lose a conversation nor double it.

One subprocess serves all three databases (it forks a child per kill), so the drill costs one interpreter start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from agents.extensions.memory import EncryptedSession, SQLAlchemySession
from cryptography.fernet import MultiFernet

from session_management.common import create_engine
from session_management.stores.summarizing_session import is_summary, summary_covers
from tests.support import crash_drill as drill
from tests.support.backends import reset_database, server_url
from tests.support.lessons import REPO_ROOT, lesson_env

FOREVER = 10**10  # a TTL no item reaches: the drill's token times are chosen, some of them years old


def run_drill(urls: list[str], tmp_path: Path) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "tests.support.crash_drill", *urls], capture_output=True, text=True,
                          env=lesson_env(tmp_path), cwd=REPO_ROOT, timeout=240)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_kill_drills_lose_nothing_and_hold_nothing_twice(tmp_path: Path) -> None:
    urls = {"sqlite": f"sqlite+aiosqlite:///{tmp_path / 'drill.db'}",
            "postgres": server_url("postgres"), "mysql": server_url("mysql")}
    for backend in ("postgres", "mysql"):
        await reset_database(urls[backend])
    cases = run_drill(list(urls.values()), tmp_path)
    problems: list[str] = []
    for backend, url in urls.items():
        mine = [case for case in cases if case["url"] == url]
        assert [case["outcome"] for case in mine if case["step"] in ("prepare", "restart")] == ["done", "done"]
        engine = create_engine(url)
        try:
            problems += await check_rotations(backend, engine, [c for c in mine if c["step"] == "rotation"])
            problems += await check_summaries(backend, engine, [c for c in mine if c["step"] == "summary"])
        finally:
            await engine.dispose()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


async def check_rotations(backend: str, engine: Any, cases: list[dict[str, Any]]) -> list[str]:
    """Each killed rotation left the old rows or the new ones, all readable with both keys at their original
    token times; finishing it afterwards leaves every row under the new key, times unchanged."""
    statements = [c for c in cases if c["point"].startswith("statement:")]
    killed = [c for c in cases if c["outcome"] == "killed"]
    assert statements[-1]["outcome"] == "done" and len(killed) == len(cases) - 1, cases
    assert len(statements) >= 3, "the drill killed the rotation before every statement"
    problems = []
    for case in cases:
        session_id = case["session"]
        store = SQLAlchemySession(session_id, engine=engine)
        both = drill.rotation.KeyRingSession(session_id, store, [drill.NEW_KEY, drill.OLD_KEY], ttl=FOREVER)
        found = await both.get_items()
        if found != drill.ROTATION_ITEMS:
            problems.append(f"{backend} rotation killed at {case['point']}: {len(found)} of 6 items readable")
            continue
        if await token_times(store, session_id) != drill.ROTATION_TIMES:
            problems.append(f"{backend} rotation killed at {case['point']}: token times changed")
        try:
            await drill.rotation.rotate_key(session_id, engine, drill.OLD_KEY, drill.NEW_KEY)  # a rerun finishes
        except Exception as error:  # noqa: BLE001 - reported with the others
            problems.append(f"{backend} rotation killed at {case['point']}: the rerun failed: {error}")
            continue
        new_only = EncryptedSession(session_id, SQLAlchemySession(session_id, engine=engine), drill.NEW_KEY,
                                    ttl=FOREVER)
        if await new_only.get_items() != drill.ROTATION_ITEMS or \
                await token_times(store, session_id) != drill.ROTATION_TIMES:
            problems.append(f"{backend} rotation killed at {case['point']}: the rerun did not finish it")
    return problems


async def token_times(store: SQLAlchemySession, session_id: str) -> list[int]:
    ciphers = MultiFernet([drill.rotation.session_cipher(session_id, key) for key in (drill.NEW_KEY, drill.OLD_KEY)])
    return [ciphers.extract_timestamp(row["payload"].encode()) for row in await store.get_items()]  # type: ignore


async def check_summaries(backend: str, engine: Any, cases: list[dict[str, Any]]) -> list[str]:
    """After a kill at any step of the first summary and a restarted process writing on, the archive plus the
    live history is every turn written, in order, each item once; the summary counts what the archive holds."""
    assert {(c["store"], c["point"]) for c in cases} == {
        (kind, point) for kind in drill.STORES
        for point in (drill.JOURNAL_POINTS if kind == "protocol_only" else drill.ATOMIC_POINTS)}
    problems = []
    for case in cases:
        name = f"{backend} {case['store']} killed at {case['point']}"
        if case["outcome"] != "killed" or case["in_flight"] < 1:
            problems.append(f"{name}: the drill did not kill it during a summary ({case})")
            continue
        written = [item for n in [*range(case["in_flight"] + 1), *drill.RESTART_TURNS] for item in drill.turn(n)]
        session = drill.summarizing(engine, case["store"], case["session"])
        stored = await session.get_items()
        archived = await session.archive.get_items()  # type: ignore[union-attr]
        kept = archived + [item for item in stored if not is_summary(item)]
        if kept != written:
            held, wanted = Counter(map(json.dumps, kept)), Counter(map(json.dumps, written))
            problems.append(f"{name}: archive + history holds {len(kept)} items for {len(written)} written: "
                            f"{(wanted - held).total()} lost, {(held - wanted).total()} extra copies")
        elif not is_summary(stored[0]) or summary_covers(stored[0]) != len(archived):
            problems.append(f"{name}: the summary does not count the {len(archived)} archived items")
    return problems
