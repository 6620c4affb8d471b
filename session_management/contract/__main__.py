"""Run the course's contract on your own session store:

    python -m session_management.contract my_module:my_store [--rule NAME ...]

*my_store* is an async context manager factory: each ``async with my_store() as make`` sets up a fresh, empty
store and yields ``make(session_id, settings=None) -> Session``; leaving the block tears the store down. If
``make`` has a ``write_raw(session_id, text)`` coroutine attribute (store one row whose stored form is exactly
*text*), the rules about corrupt rows run too. Each rule gets a fresh store. Prints one line per rule, and exits
1 if any rule is broken (2 for a mistake in the arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import traceback
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agents import set_tracing_disabled

from .rules import RULES, Rule, Subject

Factory = Callable[[], AbstractAsyncContextManager[Any]]


def load(target: str) -> Factory:
    """``module:attribute`` -> the attribute; the current folder is importable, as with ``python -m``."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"error: {target!r} is not module:factory (e.g. my_store:contract_store)")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SystemExit(f"error: cannot import {module_name!r}: {error}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise SystemExit(f"error: {module_name!r} has no callable {attribute!r}")
    return factory


async def check(rule: Rule, factory: Factory) -> tuple[str, str]:
    """('holds' | 'broken' | 'skipped', why)."""
    async with factory() as make:
        write_raw = getattr(make, "write_raw", None)
        if rule.needs_write_raw and write_raw is None:
            return "skipped", "needs make.write_raw"
        try:
            await asyncio.wait_for(rule.check(Subject(make, write_raw=write_raw)), timeout=120)
        except AssertionError as error:
            return "broken", str(error).splitlines()[0] if str(error) else _where(error)
        except Exception as error:  # noqa: BLE001 - any other failure of the store breaks the rule too
            return "broken", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
    return "holds", ""


def _where(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"assertion failed: {frame.line} (line {frame.lineno})"


async def run(factory: Factory, names: list[str]) -> int:
    chosen = [rule for rule in RULES if not names or rule.name in names]
    outcomes = []
    for rule in chosen:
        outcome, why = await check(rule, factory)
        outcomes.append(outcome)
        mark = {"holds": "ok    ", "broken": "BROKEN", "skipped": "skip  "}[outcome]
        print(f"{mark} {rule.name}: {rule.says}" + (f"\n         {why}" if why else ""), flush=True)
    held, total = outcomes.count("holds"), len(chosen)
    summary = f"\n{held} of {total} rule{'s' if total != 1 else ''} {'holds' if 1 in (held, total) else 'hold'}"
    for other in ("broken", "skipped"):
        if outcomes.count(other):
            summary += f"; {outcomes.count(other)} {other}"
    print(summary)
    return 1 if "broken" in outcomes else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m session_management.contract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="module:factory, e.g. my_store:contract_store")
    parser.add_argument("--rule", action="append", default=[], choices=[rule.name for rule in RULES],
                        metavar="NAME", help="run only this rule (repeatable)")
    args = parser.parse_args(argv)
    set_tracing_disabled(True)  # the Runner rule uses the offline model; nothing to upload
    return asyncio.run(run(load(args.store), args.rule))


if __name__ == "__main__":
    # Not the course's runner (common/cli.py): this package is copied into the reader's own project, where
    # nothing of the course but the package itself is importable.
    sys.exit(main())
