"""The shape every lesson keeps, so a reader can find each README step in the code.

A function that no longer fits on a screen, or branches more than a reader can hold, is several ideas that want
names of their own; a module past ~250 lines usually holds several ideas too. The limits: no function under
``session_management/`` longer than 60 lines or above cyclomatic complexity 15 (ruff's ``C901``, configured in
pyproject.toml), no module over 250 lines unless it is one idea (listed below, with that idea).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.lessons import REPO_ROOT

PACKAGE = REPO_ROOT / "session_management"
MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 15
MAX_MODULE_LINES = 250
# Modules longer than MAX_MODULE_LINES that are each one idea, and that idea.
ONE_IDEA = {
    "common/offline_model.py": "the deterministic offline model: reading a conversation and answering from it",
    "stores/summarizing_session.py": "one Session wrapper: summarise the oldest items within a budget",
    "stores/redis_cluster_session.py": "one Session class: a conversation in one hash slot of a Redis Cluster",
    "servers/redis.py": "throwaway redis-server processes: one server or a cluster, started and removed",
    "10_redis_session/drills.py": "the Redis Cluster drills: a failover and a resharding under live conversations",
    "common/databases.py": "opening a database: engines, pools, and one clear line when it cannot be reached",
    "contract/rules.py": "the Session contract: one rule per function, run on any store",
    "servers/patroni.py": "a throwaway Patroni cluster: etcd and three PostgreSQL nodes, started, failed over, removed",
    "12_failover/postgres_drills.py": "conversations writing through a primary's death, and the history check after",
    "08_session_admin/transfer.py": "moving a conversation in and out as JSON lines: export and its import",
    "stores/course_session/_pool.py": "borrowing a driver connection from the engine's pool: in arrival order, kept "
                                      "for a moment between turns, always given back",
}


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}() is {length} lines"
            for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES]  # type: ignore[operator]


def test_no_function_is_longer_than_a_screen() -> None:
    found = [line for path in python_files() for line in long_functions(path)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines (give each step a name):\n" + "\n".join(found)


def test_no_module_holds_several_ideas() -> None:
    found = []
    for path in python_files():
        name = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES and name not in ONE_IDEA:
            found.append(f"{name}: {lines} lines")
    assert not found, f"modules over {MAX_MODULE_LINES} lines (one idea per module):\n" + "\n".join(found)


def test_the_one_idea_list_names_only_long_modules() -> None:
    """An entry that no longer applies would let a module grow back unnoticed."""
    stale = [name for name in ONE_IDEA
             if not (PACKAGE / name).exists()
             or len((PACKAGE / name).read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES]
    assert not stale, f"remove from ONE_IDEA (missing or short now): {stale}"


def test_no_function_branches_more_than_a_reader_can_hold() -> None:
    """ruff's mccabe check with the project's max-complexity; `ruff check .` runs it too, this says why."""
    command = [sys.executable, "-m", "ruff", "check", "--select", "C901", "--output-format", "concise", "--no-cache"]
    done = subprocess.run([*command, str(PACKAGE)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"functions above complexity {MAX_COMPLEXITY}:\n{done.stdout}{done.stderr}"
    configured = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f"max-complexity = {MAX_COMPLEXITY}" in configured
