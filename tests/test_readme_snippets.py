"""Every Python block of every README, executed (see tests/snippets.py for the convention)."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agents.models.multi_provider import MultiProvider

from session_management.common import OfflineModel
from tests.snippets import (
    REPO_ROOT,
    Snippet,
    all_snippets,
    compile_snippet,
    excerpt_mismatch,
    expected_output,
    import_statements,
    lint_sources,
    output_mismatch,
    run_in_fresh_thread,
)

SNIPPETS = all_snippets()
_namespaces: dict[Path, dict[str, Any]] = {}


@pytest.fixture
def offline_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Agent created without ``model=`` gets the offline model instead of calling OpenAI."""
    monkeypatch.setattr(MultiProvider, "get_model", lambda self, name: OfflineModel())
    monkeypatch.setenv("OPENAI_API_KEY", "")


def test_the_readmes_have_snippets() -> None:
    assert len(SNIPPETS) >= 1


def test_snippet_modes_are_known_and_continue_has_a_predecessor() -> None:
    seen: set[Path] = set()
    for snippet in SNIPPETS:
        if snippet.mode == "continue":
            assert snippet.readme in seen, f"{snippet.id}: 'continue' needs an earlier block in the README"
        seen.add(snippet.readme)


def run_snippet(snippet: Snippet, database_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks run in a scratch folder (files they create land there) that still sees the course's files, as a
    # reader at the repository root would.
    link = workdir / "session_management"
    if not link.exists():
        link.symlink_to(REPO_ROOT / "session_management", target_is_directory=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DATABASE_URL", database_url)
    if snippet.mode == "excerpt":
        mismatch = excerpt_mismatch(snippet, REPO_ROOT)
        assert mismatch is None, mismatch
        return
    code = compile_snippet(snippet)
    if snippet.mode == "compile":
        assert not expected_output(snippet), f"{snippet.id}: a compile-only block is not run, so #> cannot be checked"
        run_in_fresh_thread(compile(import_statements(snippet), snippet.id, "exec"), {"__name__": "snippet"})
        return
    if snippet.mode == "continue":
        namespace = _namespaces[snippet.readme]
    else:
        namespace = {"__name__": "__main__"}
        _namespaces[snippet.readme] = namespace
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_in_fresh_thread(code, namespace)
    mismatch = output_mismatch(expected_output(snippet), printed.getvalue())
    assert mismatch is None, f"{snippet.id}: what the block prints differs from its #> lines:\n{mismatch}"


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.mode != "backends"], ids=lambda s: s.id)
def test_snippet(
    snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_default_model: None
) -> None:
    run_snippet(snippet, f"sqlite+aiosqlite:///{tmp_path / 'snippet.db'}", tmp_path, monkeypatch)


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.mode == "backends"], ids=lambda s: s.id)
def test_snippet_on_every_backend(
    snippet: Snippet, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    offline_default_model: None,
) -> None:
    run_snippet(snippet, database_url, tmp_path, monkeypatch)


def test_the_harness_really_runs_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        offline_default_model: None) -> None:
    """A failing block fails; an agent without model= answers offline; top-level await works."""
    readme = tmp_path / "README.md"
    failing = Snippet(readme, 1, "run", "assert 1 == 2, 'a README block that is wrong'\n")
    with pytest.raises(AssertionError, match="a README block that is wrong"):
        run_snippet(failing, "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    code = (
        "from agents import Agent, Runner, SQLiteSession\n"
        "agent = Agent(name='A')\n"
        "session = SQLiteSession('s')\n"
        "await Runner.run(agent, 'My name is Ada', session=session)\n"
        "result = await Runner.run(agent, 'What is my name?', session=session)\n"
        "assert result.final_output == 'Your name is Ada.', result.final_output\n"
    )
    run_snippet(Snippet(readme, 2, "run", code), "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    assert os.environ["OPENAI_API_KEY"] == ""


def agents_without_a_model(code: str) -> list[int]:
    """Lines where a block creates an ``Agent`` without ``model=`` (it then needs an OpenAI key when pasted)."""
    return [node.lineno for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Agent"
            and not any(keyword.arg == "model" for keyword in node.keywords)]


def test_what_a_paste_needs_is_said_once_in_the_root_readme() -> None:
    """The tests swap the offline model in; a reader's paste has no such help. Blocks whose Agent has no
    ``model=`` exist, so the root README says, once, what a pasted block needs (not a note above each block)."""
    assert any(agents_without_a_model(s.code) for s in SNIPPETS if s.mode not in ("compile", "excerpt"))
    root = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    note = root[root.index("**Code you paste into your own project**"):].split("\n\n")[0]
    assert "`OPENAI_API_KEY`" in note and "`OPENAI_BASE_URL`" in note


def test_the_output_check_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   offline_default_model: None) -> None:
    """A block printing something other than its #> lines fails; ``...`` matches any text; order counts."""
    readme = tmp_path / "README.md"
    good = Snippet(readme, 1, "run", "print('id: 42, done')\nprint('two')\n#> id: ..., done\n#> two\n")
    run_snippet(good, "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    for wrong in ("#> two\n#> id: 42, done\n", "#> id: 42, done\n", "#> id: 42, done\n#> two\n#> three\n", ""):
        block = Snippet(readme, 2, "run", "print('id: 42, done')\nprint('two')\n" + wrong)
        with pytest.raises(AssertionError, match="differs from its #> lines"):
            run_snippet(block, "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    assert output_mismatch(["a...c"], "abc\n") is None and output_mismatch(["a...c"], "abd\n") is not None
    # a line that is only ``...``: any run of lines, none included, but the lines around it still count
    assert output_mismatch(["a", "...", "d"], "a\nb\nc\nd\n") is None
    assert output_mismatch(["a", "...", "d"], "a\nd\n") is None
    assert output_mismatch(["a", "...", "d"], "a\nb\n") is not None and output_mismatch(["a", "..."], "b\n") is not None


def test_blocks_pass_ruff(tmp_path: Path) -> None:
    """The blocks are linted with the repository's settings, as if each README example were a file of its own.

    Top-level ``await`` (F704) is allowed: the README says blocks run in ``python -m asyncio`` or a notebook.
    """
    for name, source in lint_sources(SNIPPETS).items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(REPO_ROOT / "pyproject.toml"),
         "--config", "lint.extend-ignore = ['F704']",
         "--config", "lint.isort.known-first-party = ['session_management']", "."],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_excerpt_must_stand_in_its_file(tmp_path: Path) -> None:
    """The excerpt check fails for lines the named file does not hold, or a file that is not there."""
    (tmp_path / "code.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    assert excerpt_mismatch(Snippet(readme, 1, "excerpt", "# from code.py\ndef f():\n    return 1\n"), tmp_path) is None
    for code in ("# from code.py\ndef f():\n    return 2\n", "# from gone.py\ndef f():\n", "def f():\n"):
        assert excerpt_mismatch(Snippet(readme, 1, "excerpt", code), tmp_path) is not None
