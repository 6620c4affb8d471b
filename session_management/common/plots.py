"""Log-log plots for the course's measurements (lessons 09 and 11): cost against size, drawn into a PNG.

matplotlib is imported on first use, off-screen (the Agg backend): only a run that asks for a plot pays for it,
and it needs no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(rows: int, columns: int, size: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its grid of axes (always two-dimensional: ``axes[row][column]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=size, squeeze=False)


def colour_of(index: int) -> Any:
    """The *index*-th colour of matplotlib's ten-colour palette (wrapping round), one per series."""
    import matplotlib

    return matplotlib.colormaps["tab10"](index % 10)


def log_log(axis: Any, *, title: str, x: str, y: str) -> None:
    """Both scales logarithmic (sizes and costs that span decades), labelled, on a light grid."""
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)


def save(figure: Any, path: Path, dpi: int) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
