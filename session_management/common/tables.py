"""Fixed-width tables for the course's measurements (lessons 09 and 11): a header, a rule under it, a line per row.

Each column has a title, a width and a number format; values line up under their titles, numbers to the right.
A value that was not measured (None) prints as "-".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    form: str = ""  # how a value is formatted after alignment and width: ".2f", ".0f", "d"
    align: str = ">"

    def head(self) -> str:
        return format(self.title, f"{self.align}{self.width}")

    def cell(self, value: object) -> str:
        return "-" if value is None else format(value, f"{self.align}{self.width}{self.form}")


def print_table(columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> None:
    header = " ".join(column.head() for column in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(" ".join(column.cell(value) for column, value in zip(columns, row, strict=True)))
