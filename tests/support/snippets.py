"""Extract and run the Python code blocks of the course's READMEs, so the docs cannot rot.

The convention (documented for contributors in CONTRIBUTING.md):

* Every fenced ```` ```python ```` block in ``README.md`` and in every page of every lesson is a test.
* **Paste-able by construction.** A runnable block (every mode but ``excerpt``) is what a reader pastes into an
  empty project: it runs in a temporary folder outside the repository, and the course is not importable from it
  (:func:`paste_builtins`: ``import session_management``, or any module of the repository, raises
  ``ModuleNotFoundError`` inside the block), and no runnable block may even name ``session_management``. What
  the test harness adds is what a reader's API key would give: the offline model stands in for the SDK's
  default model (an ``Agent`` created without ``model=`` answers offline), a loopback stand-in of OpenAI's
  Conversations API stands in for the SDK's default OpenAI client, and ``DATABASE_URL`` is an empty SQLite
  file. Top-level ``await`` is allowed, as in a notebook or ``python -m asyncio``; so is
  ``asyncio.run(main())``.
* An HTML comment on the line right before the fence changes that:
  - ``<!-- snippet: backends -->``: run once per backend (SQLite, PostgreSQL, MySQL), with ``DATABASE_URL``
    set to that backend's empty test database. The block reads ``os.environ["DATABASE_URL"]``.
  - ``<!-- snippet: continue -->``: run after the block before it in the README (in the same test, the same
    folder and the namespace that block left behind), for a README that builds one example up in steps. A chain
    (a block and the ``continue`` blocks after it) runs on the backends its first block names.
  - ``<!-- snippet: compile -->``: only compiled, and its imports executed, because it needs something a test
    cannot have (a real API key, a server at a placeholder address, a web framework's runtime). Use sparingly.
  - ``<!-- snippet: excerpt -->``: lines shown from a file of the course, named by the block's first line
    (``# from session_management/06_web_service/routes.py``); the test checks that the rest of the block stands
    in that file, word for word, so the excerpt cannot drift from the code it shows. Not run, not linted.
  - ``with FILE ...`` after the mode (``<!-- snippet: backends with ../common/schema.py -->``): files, relative
    to the README, that the block imports as a reader who copied them beside their code would
    (``from schema import ...``). They are copied into the block's folder, and the same paste rule holds for
    them: they may import only published packages.
* **What a block prints is checked** (pydantic-ai style): every ``#>`` comment line in a block is a line of
  expected output; the lines the block prints must equal all its ``#>`` lines, in order. ``...`` inside a
  ``#>`` line matches any text (like doctest's ELLIPSIS), for ids, times and per-backend differences; a line
  that is only ``...`` matches any run of lines, none included. A block that prints nothing has no ``#>``
  lines. (A ``compile`` block is not run, so it has none either.) The lessons' transcripts
  (``session_management/NN_*/transcript.txt``, tests/support/transcripts.py) are checked by the same matcher.
* Every block is linted with the repository's ruff settings (:func:`lint_sources`).
* Word budget: :func:`prose_words` counts a page's prose (code blocks and HTML comments removed).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import functools
import importlib.util
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"<!--\s*snippet:\s*(?P<mode>[\w-]+)(?:\s+with\s+(?P<files>[^>]*?))?\s*-->")
MODES = ("run", "backends", "continue", "compile", "excerpt")
COURSE_PACKAGE = "session_management"


@dataclass(frozen=True)
class Snippet:
    readme: Path
    line: int  # 1-based line of the opening fence
    mode: str
    code: str
    files: tuple[Path, ...] = ()  # `with FILE ...`: copied beside the block, as a reader would copy them

    @property
    def runnable(self) -> bool:
        """Everything but an excerpt is code a reader pastes: it must work outside the repository."""
        return self.mode != "excerpt"

    @property
    def id(self) -> str:
        readme = self.readme.relative_to(REPO_ROOT) if self.readme.is_relative_to(REPO_ROOT) else self.readme
        return f"{readme}:{self.line}"


def readmes() -> list[Path]:
    """The root README and every page of every lesson: its README, the pages beside it, and READMEs below it."""
    lesson_pages = (REPO_ROOT / "session_management").glob("*/*.md")
    nested = (REPO_ROOT / "session_management").glob("*/*/**/README.md")
    return [REPO_ROOT / "README.md", *sorted({*lesson_pages, *nested})]


def extract(readme: Path) -> list[Snippet]:
    lines = readme.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        start, lang, indent = index, fence.group("lang").lower(), fence.group("indent")
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index])
            index += 1
        index += 1
        if lang not in ("python", "py"):
            continue
        previous = lines[start - 1] if start > 0 else ""
        marker = _MARKER.search(previous)
        mode = marker.group("mode") if marker else "run"
        if mode not in MODES:
            raise ValueError(f"{readme}:{start}: unknown snippet mode {mode!r}; use one of {MODES}")
        files = tuple((readme.parent / name).resolve() for name in (marker and marker.group("files") or "").split())
        for file in files:
            if not file.is_file() or file.suffix != ".py":
                raise ValueError(f"{readme}:{start}: 'with {file}': not a Python file beside the README")
        snippets.append(Snippet(readme, start + 1, mode, "\n".join(body) + "\n", files))
    return snippets


def chains(snippets: list[Snippet]) -> list[list[Snippet]]:
    """Runnable examples: a ``run`` or ``backends`` block and the ``continue`` blocks right after it (in README
    order), which run together, in one test; ``compile`` and ``excerpt`` blocks are chains of their own."""
    found: list[list[Snippet]] = []
    for snippet in snippets:
        if snippet.mode == "continue":
            head = found[-1][0] if found and found[-1][0].readme == snippet.readme else None
            if head is None or head.mode not in ("run", "backends"):
                raise ValueError(f"{snippet.id}: 'continue' must follow a run or backends block of its README")
            found[-1].append(snippet)
        else:
            found.append([snippet])
    return found


# -- the paste rule: the course is not importable from a block ---------------------------------------------------
def _inside_the_repository(location: str | None) -> bool:
    """True for a file of the repository; the project's virtual environment (published packages) is not."""
    if not location:
        return False
    path = Path(location).resolve()
    return path.is_relative_to(REPO_ROOT) and not path.is_relative_to(Path(sys.prefix).resolve())


def from_the_repository(name: str) -> bool:
    """Whether importing *name* would load the course (or any file of the repository) rather than a package
    a reader can install."""
    top = name.partition(".")[0]
    if top == COURSE_PACKAGE:
        return True
    module = sys.modules.get(top)
    if module is not None:
        locations = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
    else:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return False  # the import itself will say what is wrong
        locations = [spec.origin, *(spec.submodule_search_locations or [])] if spec else []
    return any(_inside_the_repository(location) for location in locations)


def paste_builtins() -> dict[str, Any]:
    """Builtins for a block's namespace whose ``import`` refuses the repository's modules, as an empty project
    would: ``ModuleNotFoundError``. Functions the block defines keep them, since they share its globals."""
    real_import: Callable[..., Any] = builtins.__import__

    def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and from_the_repository(name):
            raise ModuleNotFoundError(
                f"No module named {name!r}: a README block runs in an empty project, where the course is not "
                "installed. Import published packages only; show the course's code as an excerpt block, or "
                "link a one-file helper with '<!-- snippet: MODE with FILE -->' (CONTRIBUTING.md)",
                name=name,
            )
        return real_import(name, globals, locals, fromlist, level)

    return {**vars(builtins), "__import__": guarded_import}


def names_the_course(snippet: Snippet) -> list[str]:
    """Where a runnable block, or a file it is run with, names the course's package (empty when paste-able)."""
    if not snippet.runnable:
        return []
    where = snippet.id.rpartition(":")[0]
    found = [f"{where}:{snippet.line + number}" for number, line in enumerate(snippet.code.splitlines(), 1)
             if COURSE_PACKAGE in line]
    for file in snippet.files:
        text = file.read_text(encoding="utf-8")
        found += [f"{file.relative_to(REPO_ROOT)}:{number}" for number, line in enumerate(text.splitlines(), 1)
                  if COURSE_PACKAGE in line]
    return found


# -- the word budget (issue 22) ----------------------------------------------------------------------------------
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def prose_words(markdown: str) -> int:
    """Words of a page's prose: fenced code blocks and HTML comments removed, whitespace-separated words counted."""
    kept: list[str] = []
    in_code = False
    for line in markdown.splitlines():
        fence = _FENCE.match(line)
        if in_code:
            in_code = line.strip() != "```"
        elif fence:
            in_code = True
        else:
            kept.append(line)
    return len(_COMMENT.sub(" ", "\n".join(kept)).split())


_EXPECTED = re.compile(r"^\s*#>(?: (?P<text>.*)|$)")


def expected_output(snippet: Snippet) -> list[str]:
    """The block's ``#>`` lines, without the marker (and the one space after it)."""
    found = []
    for line in snippet.code.splitlines():
        match = _EXPECTED.match(line)
        if match:
            found.append((match.group("text") or "").rstrip())
    return found


ANY_LINES = "..."  # an expected line that is only this matches any run of printed lines, none included


@functools.lru_cache(maxsize=4096)
def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def line_matches(expected: str, printed: str) -> bool:
    """One expected line against one printed line: ``...`` matches any text (so a line of only ``...`` any line)."""
    return _line_pattern(expected).fullmatch(printed) is not None


@dataclass(frozen=True)
class Step:
    """One step of :func:`align`: an expected line and the printed lines it accounts for.

    ``expected`` is None for a printed line that no expected line accounts for; ``printed`` is empty for an
    expected line with nothing printed against it (or a ``...`` line that stood for no line). ``matched`` is
    False for a difference: a line missing, a line extra, or a line changed (one expected, one printed).
    """

    expected: int | None
    printed: range
    matched: bool


def align(expected: list[str], printed: list[str]) -> list[Step]:
    """The closest alignment of *expected* to *printed*: the fewest differences, then the fewest printed lines left
    to ``...`` lines. *printed* is what *expected* says iff every step is ``matched``.

    Dynamic programming over (expected line, printed line) pairs: len(expected) x len(printed) comparisons
    whatever the ``...`` lines, never a backtracking search.
    """
    n, m = len(expected), len(printed)
    # cost[i][j]: (differences, lines absorbed by ``...`` lines) of the best alignment of expected[i:], printed[j:]
    cost = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            options: list[tuple[tuple[int, int], str]] = []
            if i < n and expected[i] == ANY_LINES:
                options.append((cost[i + 1][j], "end"))  # the run of lines stops here
                if j < m:
                    options.append(((cost[i][j + 1][0], cost[i][j + 1][1] + 1), "absorb"))
            elif i < n:
                if j < m:
                    after = cost[i + 1][j + 1]
                    if line_matches(expected[i], printed[j]):
                        options.append((after, "match"))
                    else:
                        options.append(((after[0] + 1, after[1]), "change"))
                options.append(((cost[i + 1][j][0] + 1, cost[i + 1][j][1]), "missing"))
            if j < m:
                options.append(((cost[i][j + 1][0] + 1, cost[i][j + 1][1]), "extra"))
            cost[i][j], move[i][j] = min(options, key=lambda option: option[0])
    steps: list[Step] = []
    i = j = 0
    run_start: int | None = None  # where the current ``...`` line's run began
    while i < n or j < m:
        kind = move[i][j]
        if kind == "absorb":
            run_start = j if run_start is None else run_start
            j += 1
        elif kind == "end":
            steps.append(Step(i, range(j if run_start is None else run_start, j), True))
            run_start, i = None, i + 1
        elif kind in ("match", "change"):
            steps.append(Step(i, range(j, j + 1), kind == "match"))
            i, j = i + 1, j + 1
        elif kind == "missing":
            steps.append(Step(i, range(j, j), False))
            i += 1
        else:
            steps.append(Step(None, range(j, j + 1), False))
            j += 1
    return steps


def output_mismatch(expected: list[str], printed: str, heading: str = "#> expected") -> str | None:
    """``None`` if *printed* is what the *expected* lines say, else a readable diff for the failure message:
    expected beside printed, line by line, ``!!`` on each difference."""
    lines = [line.rstrip() for line in printed.splitlines()]
    steps = align(expected, lines)
    if all(step.matched for step in steps):
        return None
    rows: list[tuple[str, str, str]] = []
    for step in steps:
        want = expected[step.expected] if step.expected is not None else "(nothing)"
        got = [lines[number] for number in step.printed] or ["(nothing)"]
        mark = "  " if step.matched else "!!"
        rows.extend((want if number == 0 else "", line, mark) for number, line in enumerate(got))
    width = max([len(want) for want, _, _ in rows] + [len(heading)])
    return "\n".join([f"{heading:<{width}} | printed",
                      *(f"{want:<{width}} | {got}  {mark}" for want, got, mark in rows)])


def lint_sources(snippets: list[Snippet]) -> dict[str, str]:
    """One Python file per README example: a block, plus the ``continue`` blocks that build on it."""
    sources: dict[str, str] = {}
    current: str | None = None
    for snippet in snippets:
        if snippet.mode == "excerpt":  # a piece of a file that ruff checks as a whole
            continue
        if snippet.mode == "continue" and current is not None:
            sources[current] += f"\n# --- continued at line {snippet.line}\n" + snippet.code
            continue
        current = snippet.id.replace("/", "__").replace(":", "_line") + ".py"
        sources[current] = snippet.code
    return sources


def all_snippets() -> list[Snippet]:
    return [snippet for readme in readmes() for snippet in extract(readme)]


def compile_snippet(snippet: Snippet) -> Any:
    return compile(snippet.code, snippet.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def import_statements(snippet: Snippet) -> str:
    tree = ast.parse(snippet.code)
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(ast.unparse(node) for node in imports) + "\n"


def run_in_fresh_thread(code: Any, namespace: dict[str, Any]) -> None:
    """Execute *code* in a thread with no running event loop, awaiting it if it uses top-level await."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result = eval(code, namespace)  # noqa: S307 - executing our own documentation is the point
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            failure.append(error)

    thread = threading.Thread(target=target, name="readme-snippet")
    thread.start()
    thread.join(timeout=240)
    if thread.is_alive():
        raise TimeoutError("the snippet did not finish within 240 s")
    if failure:
        raise failure[0]


def excerpt_mismatch(snippet: Snippet, root: Path) -> str | None:
    """None when an ``excerpt`` block's lines stand, in order and together, in the file its first line names."""
    first, _, rest = snippet.code.partition("\n")
    match = re.fullmatch(r"#\s*from\s+(\S+)", first.strip())
    if match is None:
        return f"{snippet.id}: an excerpt's first line must be '# from <path of the file it shows>'"
    source = root / match.group(1)
    if not source.is_file():
        return f"{snippet.id}: {match.group(1)} does not exist"
    if rest.strip() not in source.read_text(encoding="utf-8"):
        return f"{snippet.id}: these lines are not (or no longer) in {match.group(1)}"
    return None
