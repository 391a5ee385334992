"""The shape every report format renders: sections of tables, and charts drawn from those tables.

One structure for the xlsx (a sheet per section, native charts over the table's cells), the PDF
(matplotlib charts from the same rows) and the console page (inline SVG), so the three always show the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Column formats: how a value is shown (and typed in Excel).
INT, PCT, HOURS, TEXT, NUM = "int", "pct", "hours", "text", "num"


@dataclass
class Table:
    title: str
    columns: list[tuple[str, str]]
    """``(heading, format)`` per column; the first column names the row."""
    rows: list[list[Any]]
    links: list[str | None] = field(default_factory=list)
    """Optional: a console link per row (the recurring-issue section's "propose a case")."""
    empty: str = "本月无数据"


@dataclass
class Chart:
    title: str
    table: int
    """Index of the section's table the chart draws."""
    values: list[int]
    """Columns of that table drawn as series; column 0 gives the categories."""
    kind: str = "bar"
    """``bar`` | ``line``."""
    percent: bool = False


@dataclass
class Section:
    key: str
    title: str
    tables: list[Table]
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    """Headline figures ``(label, formatted value)`` shown above the tables."""


@dataclass
class MonthlyReport:
    month: str
    title: str
    project: str | None
    generated_from: str
    sections: list[Section]
    data: dict[str, Any] = field(default_factory=dict)
    """The raw figures by section key (what the tests and the JSON view read)."""

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


def chart_rows(table: Table) -> int:
    """Rows a chart draws: all but a trailing total (合计)."""
    n = len(table.rows)
    return n - 1 if n and table.rows[-1][0] == "合计" else n


def fmt(value: Any, kind: str) -> str:
    """A value as the PDF and the console print it."""
    if value is None:
        return "—"
    if kind == PCT:
        return f"{value * 100:.1f}%"
    if kind == HOURS:
        return f"{value:.1f}"
    if kind == NUM:
        return str(value) if isinstance(value, int) else f"{value:.2f}"
    if kind == INT:
        return f"{int(value):d}" if isinstance(value, int | float) else str(value)
    return str(value)
