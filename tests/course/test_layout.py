"""The course's folders mean what they say, read from the code's own imports.

- ``common/`` is plumbing: it imports no store the course builds (``stores/``), no throwaway-server tooling
  (``servers/``), no contract rule and no lesson.
- No lesson imports another lesson.
- Every module under ``common/`` is used by at least two lessons, or by other plumbing: code that serves one
  lesson lives in that lesson's folder.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.lessons import REPO_ROOT

PACKAGE = "session_management"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def face_names(root: Path) -> dict[str, str]:
    """What ``from session_management.common import name`` resolves to: name -> common submodule."""
    tree = ast.parse((root / PACKAGE / "common" / "__init__.py").read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{PACKAGE}.common.{node.module}"
        if isinstance(node, ast.Dict):  # the lazily imported names: {"name": ".module", ...}
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Constant) and str(value.value)[:1] == ".":
                    names[str(key.value)] = f"{PACKAGE}.common{value.value}"
    return names


def imports_of(path: Path, root: Path, face: dict[str, str]) -> set[str]:
    """Every module of the course that *path* imports (relative imports resolved, the common face expanded)."""
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            for alias in node.names:
                if base == f"{PACKAGE}.common" and alias.name in face:
                    found.add(face[alias.name])
                else:
                    found.add(f"{base}.{alias.name}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return {name for name in found if name.startswith(PACKAGE + ".")}


def area(module: str) -> str:
    """``common``, ``stores``, ``servers``, ``contract``, a lesson folder (``06_web_service``) or ``top``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "top"


def is_lesson(name: str) -> bool:
    return name[:2].isdigit()


def import_graph(root: Path) -> dict[str, set[str]]:
    face = face_names(root)
    return {module_name(path, root): imports_of(path, root, face) for path in (root / PACKAGE).rglob("*.py")}


def layout_problems(root: Path) -> list[str]:
    graph = import_graph(root)
    known = set(graph)
    problems: list[str] = []
    for module, imported in graph.items():  # a module that moved and left an import behind
        # "module.name" may name a function of a module that exists; a missing module shows as a name whose
        # parent is neither a module nor another name imported here
        dangling = {name for name in imported if name not in known and name.rsplit(".", 1)[0] not in known}
        dangling -= {name for name in dangling if name.rsplit(".", 1)[0] in dangling}
        problems.extend(f"{module} imports {name}, which does not exist" for name in sorted(dangling))
    users: dict[str, set[str]] = defaultdict(set)
    for module, imported in graph.items():
        for target in imported & known:
            if target == module:
                continue
            source_area, target_area = area(module), area(target)
            if source_area == "common" and target_area != "common":
                problems.append(f"{module} (plumbing) imports {target} ({target_area})")
            if is_lesson(source_area) and is_lesson(target_area) and source_area != target_area:
                problems.append(f"{module} (lesson {source_area[:2]}) imports {target} (lesson {target_area[:2]})")
            if target_area == "common":
                users[target].add("plumbing" if source_area == "common" else source_area)
    for module in sorted(known):
        if area(module) != "common" or module == f"{PACKAGE}.common":
            continue
        lessons = {user for user in users[module] if is_lesson(user)}
        if "plumbing" not in users[module] and len(lessons) < 2:
            problems.append(f"{module} is used by {sorted(users[module]) or 'nothing'}: not common")
    return problems


def test_the_import_graph_is_read() -> None:
    """The reader sees the imports it must judge (else the rules below would pass on nothing)."""
    graph = import_graph(REPO_ROOT)
    assert f"{PACKAGE}.common.schema" in graph[f"{PACKAGE}.07_schema_migrations.main"] | graph[
        f"{PACKAGE}.07_schema_migrations.migrations.env"]
    assert f"{PACKAGE}.10_redis_session.drills" in graph[f"{PACKAGE}.10_redis_session.cluster"]
    assert f"{PACKAGE}.common.settings" in graph[f"{PACKAGE}.01_sqlite_session.main"]


def test_each_folder_holds_what_its_name_says() -> None:
    assert layout_problems(REPO_ROOT) == []


def test_a_one_lesson_module_in_common_is_caught(tmp_path: Path) -> None:
    package = tmp_path / PACKAGE
    for folder, text in {
        "common/__init__.py": "from .cli import run_main\n",
        "common/cli.py": "",
        "common/drills.py": "from session_management.stores import x\n\n\ndef f():\n    from .gone import y\n",
        "stores/__init__.py": "x = 1\n",
        "01_a/main.py": "from session_management.common import drills, run_main\n",
        "02_b/main.py": "import importlib\nfrom session_management.common import run_main\n"
                        "importlib.import_module('session_management.01_a.main')\n",
    }.items():
        (package / folder).parent.mkdir(parents=True, exist_ok=True)
        (package / folder).write_text(text)
    problems = layout_problems(tmp_path)
    assert sorted(problems) == sorted([
        "session_management.common.drills (plumbing) imports session_management.stores (stores)",
        "session_management.02_b.main (lesson 02) imports session_management.01_a.main (lesson 01)",
        "session_management.common.drills is used by ['01_a']: not common",
        "session_management.common.drills imports session_management.common.gone.y, which does not exist",
    ])
