"""The monthly report as an Excel workbook: a sheet per section, native Excel charts over its tables."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reports.model import HOURS, INT, NUM, PCT, Chart, MonthlyReport, Section, chart_rows

FORMATS = {PCT: "0.0%", HOURS: "0.0", NUM: "0.00", INT: "0"}
HEAD = PatternFill("solid", fgColor="DDE7F3")


def _sheet_name(section: Section) -> str:
    name = section.title.split("、", 1)[-1]
    for bad in "[]:*?/\\":
        name = name.replace(bad, "")
    return name[:31]


def _write_section(ws: Worksheet, report: MonthlyReport, section: Section) -> None:
    ws["A1"] = section.title
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = f"{report.title} · {report.generated_from}"
    row = 4
    for label, value in section.figures:
        ws.cell(row, 1, label).font = Font(bold=True)
        ws.cell(row, 2, value)
        row += 1
    if section.figures:
        row += 1
    positions: list[tuple[int, int]] = []  # (header row, number of rows) per table
    widths: dict[int, int] = {}
    for table in section.tables:
        ws.cell(row, 1, table.title).font = Font(bold=True)
        row += 1
        header = row
        for c, (title, _kind) in enumerate(table.columns, start=1):
            cell = ws.cell(row, c, title)
            cell.font, cell.fill = Font(bold=True), HEAD
            widths[c] = max(widths.get(c, 8), len(title) * 2 + 2)
        for values in table.rows:
            row += 1
            for c, (value, (_t, kind)) in enumerate(zip(values, table.columns, strict=True), start=1):
                cell = ws.cell(row, c, value)
                if kind in FORMATS:
                    cell.number_format = FORMATS[kind]
                if isinstance(value, str):
                    widths[c] = min(max(widths.get(c, 8), len(value) * 2 + 2), 60)
        for i, link in enumerate(table.links):
            if link:
                cell = ws.cell(header + 1 + i, len(table.columns))
                cell.hyperlink = link
                cell.font = Font(color="1F5FBF", underline="single")
        if not table.rows:
            row += 1
            ws.cell(row, 1, table.empty).alignment = Alignment(horizontal="left")
        positions.append((header, len(table.rows)))
        row += 2
    for c, w in widths.items():
        ws.column_dimensions[get_column_letter(c)].width = w
    anchor_col = get_column_letter(max((len(t.columns) for t in section.tables), default=1) + 2)
    anchor_row = 4
    for chart in section.charts:
        made = _chart(ws, section, chart, positions)
        if made is not None:
            ws.add_chart(made, f"{anchor_col}{anchor_row}")
            anchor_row += 18
    for note in section.notes:
        row += 1
        ws.cell(row, 1, note).alignment = Alignment(wrap_text=False)


def _chart(ws: Worksheet, section: Section, chart: Chart, positions: list[tuple[int, int]]) -> Any:
    table = section.tables[chart.table]
    header, _n = positions[chart.table]
    n = chart_rows(table)
    if n == 0:
        return None
    made: Any = LineChart() if chart.kind == "line" else BarChart()
    made.title = chart.title
    made.height, made.width = 8, 16
    for col in chart.values:
        made.add_data(Reference(ws, min_col=col + 1, min_row=header, max_row=header + n), titles_from_data=True)
    made.set_categories(Reference(ws, min_col=1, min_row=header + 1, max_row=header + n))
    if chart.percent:
        made.y_axis.number_format = "0%"
        made.y_axis.scaling.min = 0
        made.y_axis.scaling.max = 1
    return made


def render(report: MonthlyReport) -> bytes:
    wb = Workbook()
    cover = wb.active
    assert cover is not None
    cover.title = "概览"
    cover["A1"] = report.title
    cover["A1"].font = Font(bold=True, size=16)
    cover["A2"] = report.generated_from
    row = 4
    for section in report.sections:
        for label, value in section.figures:
            cover.cell(row, 1, section.title.split("、", 1)[-1])
            cover.cell(row, 2, label)
            cover.cell(row, 3, value)
            row += 1
    cover.column_dimensions["A"].width = 24
    cover.column_dimensions["B"].width = 20
    for section in report.sections:
        _write_section(wb.create_sheet(_sheet_name(section)), report, section)
    out = BytesIO()
    wb.save(out)
    return out.getvalue()
