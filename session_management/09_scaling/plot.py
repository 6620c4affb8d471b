"""The benchmark's plot: throughput and p99 against concurrency, and each database's rate against history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from session_management.common.plots import colour_of, log_log, new_figure, save

from .benchmark import Result
from .peers import PEERS
from .stores import STORES


def plot(results: list[Result], path: Path) -> None:
    names = [*STORES, *PEERS]
    color = {name: colour_of(names.index(name)) for name in names}  # one colour per store
    databases = sorted({r.database for r in results if r.history})
    rows = 2 if databases else 1
    figure, axes = new_figure(rows, max(2, len(databases)), (13, 4.6 * rows))
    against_concurrency(results, axes[0][0], axes[0][1], color)
    for axis, database in zip(axes[1] if databases else [], databases, strict=False):
        against_history(results, database, axis, color)
    save(figure, path, dpi=100)


def against_concurrency(results: list[Result], throughput: Any, p99: Any, color: dict[str, Any]) -> None:
    series: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.history == 0 and r.read == "full":
            series.setdefault((r.database, r.store), []).append(r)
    for (database, store), points in sorted(series.items()):
        points.sort(key=lambda r: r.concurrency)
        style = "-" if database == "postgresql" else "--" if database == "mysql" else ":"
        label = f"{store} ({database}{', dashed' if database == 'mysql' else ''})"
        throughput.plot([r.concurrency for r in points], [r.turns_per_s for r in points], style, marker="o",
                        label=label, color=color[store])
        p99.plot([r.concurrency for r in points], [r.p99_ms for r in points], style, marker="o", label=label,
                 color=color[store])
    log_log(throughput, title="throughput (history 0)", x="concurrent conversations", y="turns/s")
    log_log(p99, title="p99 latency per turn (history 0)", x="concurrent conversations", y="ms")
    throughput.legend(fontsize=6)


def against_history(results: list[Result], database: str, axis: Any, color: dict[str, Any]) -> None:
    by_store: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.database == database and r.history:
            by_store.setdefault((r.store, r.read), []).append(r)
    for (store, read), points in sorted(by_store.items()):
        points.sort(key=lambda r: r.history)
        axis.plot([r.history for r in points], [r.turns_per_s for r in points], "-" if read == "full" else "--",
                  marker="o", label=f"{store} ({read})", color=color[store])
    concurrency = max(r.concurrency for r in results if r.history)
    log_log(axis, title=f"cost against history, {database}, C={concurrency} (dashed: limit reads)",
            x="items in the conversation before the turns", y="turns/s")
    axis.legend(fontsize=6)
