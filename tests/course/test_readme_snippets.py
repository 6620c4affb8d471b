"""Every Python block of every README, executed as a reader's paste (see support/snippets.py for the convention)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agents.models import _openai_shared
from agents.models.multi_provider import MultiProvider
from openai import AsyncOpenAI

from session_management.common import OfflineModel
from tests.support.conversations_standin import conversations_api
from tests.support.snippets import (
    REPO_ROOT,
    Snippet,
    all_snippets,
    chains,
    compile_snippet,
    excerpt_mismatch,
    expected_output,
    import_statements,
    lint_sources,
    names_the_course,
    output_mismatch,
    paste_builtins,
    run_in_fresh_thread,
)

SNIPPETS = all_snippets()
CHAINS = chains(SNIPPETS)


@pytest.fixture
def offline_default_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a reader's API key gives a pasted block, offline: an Agent created without ``model=`` gets the offline
    model, and the SDK's default OpenAI client (``OpenAIConversationsSession``) talks to a loopback stand-in of
    the Conversations API. Harness, not block: the block itself cannot import the course."""
    monkeypatch.setattr(MultiProvider, "get_model", lambda self, name: OfflineModel())
    monkeypatch.setenv("OPENAI_API_KEY", "")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=conversations_api()), base_url="http://standin")
    client = AsyncOpenAI(api_key="not-a-key", base_url="http://standin/v1", http_client=http, max_retries=0)
    monkeypatch.setattr(_openai_shared, "_default_openai_client", client)
    yield
    asyncio.run(http.aclose())


def test_the_readmes_have_snippets() -> None:
    assert len(SNIPPETS) >= 1


def test_continue_needs_a_block_to_continue(tmp_path: Path) -> None:
    assert any(len(chain) > 1 for chain in CHAINS) or all(s.mode != "continue" for s in SNIPPETS)
    readme = tmp_path / "README.md"
    for before in ([], [Snippet(readme, 1, "excerpt", "# from x.py\n")], [Snippet(tmp_path / "B.md", 1, "run", "")]):
        with pytest.raises(ValueError, match="'continue' must follow"):
            chains([*before, Snippet(readme, 5, "continue", "x = 1\n")])


@contextlib.contextmanager
def a_readers_folder(workdir: Path, chain: list[Snippet]) -> Iterator[None]:
    """*workdir* as the folder of a reader's script: its files importable (the ``with`` files copied there), and
    afterwards nothing of it left in ``sys.modules`` for the next block to find."""
    names = set()
    for snippet in chain:
        for file in snippet.files:
            shutil.copy(file, workdir / file.name)
            names.add(file.stem)
    stashed = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    sys.path.insert(0, str(workdir))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(workdir))
        for name, module in list(sys.modules.items()):
            if Path(getattr(module, "__file__", None) or "/").resolve().is_relative_to(workdir.resolve()):
                del sys.modules[name]
        sys.modules.update(stashed)


def run_chain(chain: list[Snippet], database_url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a README example as a reader's paste: in *workdir*, a folder outside the repository, with the course
    not importable (:func:`support.snippets.paste_builtins`); its ``continue`` blocks after it, in one namespace."""
    assert not workdir.resolve().is_relative_to(REPO_ROOT), "a block must run outside the repository"
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("DATABASE_URL", database_url)
    head = chain[0]
    if head.mode == "excerpt":
        mismatch = excerpt_mismatch(head, REPO_ROOT)
        assert mismatch is None, mismatch
        return
    with a_readers_folder(workdir, chain):
        if head.mode == "compile":
            assert not expected_output(head), f"{head.id}: a compile-only block is not run, so #> cannot be checked"
            compile_snippet(head)
            imports = compile(import_statements(head), head.id, "exec")
            run_in_fresh_thread(imports, {"__name__": "snippet", "__builtins__": paste_builtins()})
            return
        namespace = {"__name__": "__main__", "__builtins__": paste_builtins()}
        for snippet in chain:
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    run_in_fresh_thread(compile_snippet(snippet), namespace)
            except BaseException as error:
                error.add_note(f"in the README block at {snippet.id}")
                raise
            mismatch = output_mismatch(expected_output(snippet), printed.getvalue())
            assert mismatch is None, f"{snippet.id}: what the block prints differs from its #> lines:\n{mismatch}"


@pytest.mark.parametrize("chain", [c for c in CHAINS if c[0].mode != "backends"], ids=lambda c: c[0].id)
def test_snippet(
    chain: list[Snippet], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_default_model: None
) -> None:
    run_chain(chain, f"sqlite+aiosqlite:///{tmp_path / 'snippet.db'}", tmp_path, monkeypatch)


@pytest.mark.parametrize("chain", [c for c in CHAINS if c[0].mode == "backends"], ids=lambda c: c[0].id)
def test_snippet_on_every_backend(
    chain: list[Snippet], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    offline_default_model: None,
) -> None:
    run_chain(chain, database_url, tmp_path, monkeypatch)


def test_the_harness_really_runs_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        offline_default_model: None) -> None:
    """A failing block fails; an agent without model= answers offline; top-level await works; a continue block
    runs after its block, in its namespace."""
    readme = tmp_path / "README.md"
    failing = Snippet(readme, 1, "run", "assert 1 == 2, 'a README block that is wrong'\n")
    with pytest.raises(AssertionError, match="a README block that is wrong"):
        run_chain([failing], "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    code = (
        "from agents import Agent, Runner, SQLiteSession\n"
        "agent = Agent(name='A')\n"
        "session = SQLiteSession('s')\n"
        "await Runner.run(agent, 'My name is Ada', session=session)\n"
    )
    follow = "result = await Runner.run(agent, 'What is my name?', session=session)\nprint(result.final_output)\n"
    run_chain([Snippet(readme, 2, "run", code), Snippet(readme, 9, "continue", follow + "#> Your name is Ada.\n")],
              "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    assert os.environ["OPENAI_API_KEY"] == ""
    with pytest.raises(AssertionError, match=r"README.md:9: what the block prints differs"):
        run_chain([Snippet(readme, 2, "run", code), Snippet(readme, 9, "continue", follow + "#> Bob\n")],
                  "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)


NOT_PASTEABLE = [
    "import session_management\n",
    "from session_management.common import OfflineModel\n",
    "import session_management.contract.rules as rules\n",
    "import asyncio\n\nasync def main():\n    from session_management import common\n\nasyncio.run(main())\n",
    "from tests.support.snippets import REPO_ROOT\n",  # any module of the repository, not only the course
]


@pytest.mark.parametrize("code", NOT_PASTEABLE)
@pytest.mark.parametrize("mode", ["run", "compile"])
def test_the_course_is_not_importable_from_a_block(code: str, mode: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   offline_default_model: None) -> None:
    """The paste rule can fail: a block that imports the course (or any file of the repository) fails as it would
    in a reader's empty project, though the test process itself has the course imported."""
    assert "session_management" in sys.modules
    snippet = Snippet(tmp_path / "README.md", 1, mode, code)
    with pytest.raises(ModuleNotFoundError, match="a README block runs in an empty project"):
        run_chain([snippet], "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)


def test_a_block_imports_published_packages_and_the_files_it_is_run_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_default_model: None) -> None:
    """What the paste rule allows: the standard library, installed packages, and a file copied beside the block
    (``with FILE``), which is gone from ``sys.modules`` afterwards."""
    helper = tmp_path / "docs" / "helper_for_the_test.py"
    helper.parent.mkdir()
    helper.write_text("import sqlalchemy\n\nANSWER = 42\n", encoding="utf-8")
    code = "import json\n\nimport agents\nfrom helper_for_the_test import ANSWER\n\nprint(ANSWER)\n#> 42\n"
    workdir = tmp_path / "work"
    workdir.mkdir()
    run_chain([Snippet(helper.parent / "README.md", 1, "run", code, (helper,))], "sqlite://", workdir, monkeypatch)
    assert "helper_for_the_test" not in sys.modules
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ModuleNotFoundError):  # without `with`, the file is not there
        run_chain([Snippet(helper.parent / "README.md", 1, "run", code)], "sqlite://", elsewhere, monkeypatch)


def test_no_runnable_block_names_the_course() -> None:
    """Paste-able by construction: no runnable block (nor a file it is run with) mentions `session_management`,
    so none reaches it by importlib, a path or a subprocess either. Course code is shown as an excerpt."""
    offenders = [where for snippet in SNIPPETS for where in names_the_course(snippet)]
    assert not offenders, "these lines of runnable README blocks name the course:\n" + "\n".join(offenders)


def test_the_name_check_can_fail(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    for code in ("import session_management\n", "x = 1\nsubprocess.run(['python', '-m', 'session_management'])\n"):
        assert names_the_course(Snippet(readme, 1, "run", code)) != []
    found = names_the_course(Snippet(readme, 1, "compile", "import session_management\n"))
    assert found == [f"{readme}:2"]  # the README line: the fence is line 1
    assert names_the_course(Snippet(readme, 1, "excerpt", "# from session_management/x.py\n")) == []
    assert names_the_course(Snippet(readme, 1, "run", "import agents\n")) == []


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
    run_chain([good], "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
    for wrong in ("#> two\n#> id: 42, done\n", "#> id: 42, done\n", "#> id: 42, done\n#> two\n#> three\n", ""):
        block = Snippet(readme, 2, "run", "print('id: 42, done')\nprint('two')\n" + wrong)
        with pytest.raises(AssertionError, match="differs from its #> lines"):
            run_chain([block], "sqlite+aiosqlite:///:memory:", tmp_path, monkeypatch)
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
    beside = sorted({file.stem for snippet in SNIPPETS for file in snippet.files})  # a reader's own modules
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(REPO_ROOT / "pyproject.toml"),
         "--config", "lint.extend-ignore = ['F704']",
         "--config", f"lint.isort.known-first-party = {['session_management', *beside]!r}", "."],
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
