"""tests/support/garbage.py: a leak fails the test that made it, and a CPython 3.11 bug cannot crash the run.

The inner runs are processes of their own: they change the collector's settings and leave garbage behind.
"""

from __future__ import annotations

import sys

import pytest

from tests.support.lessons import REPO_ROOT

LEAKS_A_CONNECTION = '''
def close():
    raise RuntimeError("Event loop is closed")


class Connection:
    """What aiomysql's connection does when it is finalized after its event loop has closed."""

    def __init__(self):
        self.me = self  # a cycle: only the collector frees it

    def __del__(self):
        close()


def test_leaks():
    Connection()


def test_comes_after():
    pass
'''

FAILS_WITH_GARBAGE_WAITING = '''
import gc

keep_going = [True]  # the conftest below stops the chain once the report is written (or has failed to be)


def close():
    raise RuntimeError("Event loop is closed")


class Connection:
    def __init__(self):
        self.me = self

    def __del__(self):
        if keep_going[0]:
            Connection()  # work for the next collection
        close() or None  # a partial line, so the traceback's carets are placed by parsing it


def test_fails_while_garbage_waits():
    gc.set_threshold(50)  # a collection every 50 allocations: some land inside pytest's parse of this file
    Connection()
    assert 1 == 2
'''

STOP_AFTER_THE_REPORT = '''
import gc
import sys

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    try:
        return (yield)
    finally:
        if call.when == "call":
            sys.modules["test_garbage"].keep_going[0] = False
            gc.set_threshold(700, 10, 10)  # the defaults again: a crashed run then ends at once
'''

AFFECTED = sys.version_info < (3, 11, 8)  # CPython gh-106905, fixed in 3.11.8 and 3.12.2


@pytest.fixture
def run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a local callable
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # so that -p tests.support.garbage imports

    def run(*plugins: str) -> pytest.RunResult:
        options = [arg for plugin in plugins for arg in ("-p", plugin)]
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *options,
                                             "-W", "error::pytest.PytestUnraisableExceptionWarning")

    return run


def test_a_leak_fails_the_test_that_made_it(pytester: pytest.Pytester, run_inner) -> None:  # noqa: ANN001
    pytester.makepyfile(test_garbage=LEAKS_A_CONNECTION)
    result = run_inner("tests.support.garbage")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "*RuntimeError: Event loop is closed"])
    result.stdout.fnmatch_lines(["PASSED test_garbage.py::test_comes_after"])


def test_a_failure_is_reported_while_finalizers_wait(pytester: pytest.Pytester, run_inner) -> None:  # noqa: ANN001
    pytester.makepyfile(test_garbage=FAILS_WITH_GARBAGE_WAITING)
    pytester.makeconftest(STOP_AFTER_THE_REPORT)
    result = run_inner("tests.support.garbage")
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED test_garbage.py::test_fails_while_garbage_waits*"])


@pytest.mark.skipif(not AFFECTED, reason=f"Python {sys.version.split()[0]} has the fix for gh-106905")
def test_without_the_plugin_this_python_crashes(pytester: pytest.Pytester, run_inner) -> None:  # noqa: ANN001
    """The control: on an affected Python the same run without the plugin stops with the SystemError."""
    pytester.makepyfile(test_garbage=FAILS_WITH_GARBAGE_WAITING)
    pytester.makeconftest(STOP_AFTER_THE_REPORT)
    result = run_inner()
    result.stdout.fnmatch_lines(["INTERNALERROR> SystemError: AST constructor recursion depth mismatch*"])
