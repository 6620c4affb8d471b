"""A pytest plugin: each test's garbage is collected at its own teardown, and never while a report is written.

**Leaks fail the test that made them.** A database connection left open when its event loop closes is finalized
by the garbage collector whenever the collector next runs, perhaps many tests later; aiomysql's finalizer then
raises "Event loop is closed", which pytest reports as an unraisable exception (an error, by the project's
``filterwarnings``) against whichever test happens to be running. Collecting at every teardown puts the error on
the test that leaked. To keep that cheap, everything alive after a collection is frozen (``gc.freeze``): the next
collection looks only at what the next test made (about a microsecond instead of 0.15 s for the whole heap).

**No collection while pytest writes a report.** Python 3.11 before 3.11.8 (CPython gh-106905) keeps one shared
depth counter for building syntax trees. When a collection runs inside ``ast.parse`` and a finalizer there formats
a traceback (pytest's unraisable-exception hook does, and on 3.11 formatting a traceback parses each line to place
its carets), the outer parse ends with ``SystemError: AST constructor recursion depth mismatch``. Pytest parses
source to show a failure or an xfail, so the run stops with an INTERNALERROR. CI met it when a leaked aiomysql
connection was finalized while pytest was showing an expected failure. With the collector held off, finalizers run
at the next collection instead, and pytest still reports what they raise.

``tests/course/test_garbage.py`` reproduces both: the crash without this plugin, and a leak reported on its own test.
"""

from __future__ import annotations

import gc
from collections.abc import Generator, Iterator

import pytest


def collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()  # what survived is not garbage now: later collections skip it


def pytest_collection_finish(session: pytest.Session) -> None:
    collect_and_freeze()  # the imports of every test module, frozen once


@pytest.fixture(autouse=True)
def _collect_after_the_test() -> Iterator[None]:
    # A plugin's autouse fixture is set up before the test's own fixtures, so it is torn down after them (engines
    # disposed, event loops closed), and before pytest gathers what finalizers raised during the teardown.
    yield
    collect_and_freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield)
    finally:
        if was_enabled:
            gc.enable()
