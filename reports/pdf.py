"""The monthly report as a PDF: fpdf2 for the pages (the Chinese font embedded as a subset with a
ToUnicode map, so text extraction gives the Chinese back) and matplotlib for the charts (PNG, drawn
with the same font). Everything is built in memory; nothing is fetched."""

from __future__ import annotations

import functools
import logging
from io import BytesIO
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace
from matplotlib import font_manager
from matplotlib.figure import Figure

from reports.fonts import cjk_font
from reports.model import TEXT, Chart, MonthlyReport, Section, Table, chart_rows, fmt

# fontTools logs each step of subsetting the font at INFO: noise in the CLI's output and the app's log.
logging.getLogger("fontTools").setLevel(logging.WARNING)

FONT = "cjk"
PALETTE = ("#3b6fb6", "#e0803a", "#4c9a58", "#b54a4a", "#7a5cb0")
HEAD = FontFace(emphasis="", fill_color=(221, 231, 243))


@functools.cache
def _font_name() -> str:
    path = str(cjk_font())
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def chart_png(section: Section, chart: Chart) -> bytes | None:
    table = section.tables[chart.table]
    n = chart_rows(table)
    if n == 0:
        return None
    labels = [str(r[0]) for r in table.rows[:n]]
    fig = Figure(figsize=(7.0, 2.6), dpi=100)
    ax = fig.add_subplot()
    name = _font_name()
    width = 0.8 / max(1, len(chart.values))
    for i, col in enumerate(chart.values):
        series = [float(r[col]) if r[col] is not None else 0.0 for r in table.rows[:n]]
        title = table.columns[col][0]
        if chart.kind == "line":
            ax.plot(range(n), series, marker="o", color=PALETTE[i % len(PALETTE)], label=title)
        else:
            xs = [x - 0.4 + width * (i + 0.5) for x in range(n)]
            ax.bar(xs, series, width=width * 0.95, color=PALETTE[i % len(PALETTE)], label=title)
    ax.set_xticks(range(n))
    ax.set_xticklabels(labels, fontfamily=name, fontsize=8, rotation=0 if n <= 6 else 30,
                       ha="center" if n <= 6 else "right")
    if chart.percent:
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_title(chart.title, fontfamily=name, fontsize=10)
    ax.legend(prop={"family": name, "size": 8}, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    # Fixed margins: tight_layout would draw the figure twice more to measure it.
    fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.2 if n > 6 else 0.12)
    out = BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


class _Pdf(FPDF):
    title_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.set_text_color(120)
        self.cell(0, 8, f"{self.title_text} · 第 {self.page_no()} 页", align="C")
        self.set_text_color(0)


def _table(pdf: _Pdf, table: Table) -> None:
    pdf.set_font(FONT, size=10)
    pdf.cell(0, 7, table.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=8)
    if not table.rows:
        pdf.set_text_color(110)
        pdf.cell(0, 6, table.empty, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0)
        pdf.ln(2)
        return
    weights = [3.0 if kind == TEXT else 1.6 for _t, kind in table.columns]
    weights[0] = max(weights[0], 2.4)
    aligns = tuple("LEFT" if kind == TEXT else "RIGHT" for _t, kind in table.columns)
    with pdf.table(col_widths=tuple(weights), text_align=aligns, headings_style=HEAD, line_height=5.2,
                   first_row_as_headings=True) as t:
        head = t.row()
        for title, _kind in table.columns:
            head.cell(title or " ")
        for values in table.rows:
            row = t.row()
            for value, (_t, kind) in zip(values, table.columns, strict=True):
                row.cell(fmt(value, kind) if kind != TEXT else (str(value) if value not in (None, "") else " "))
    pdf.ln(3)


def render(report: MonthlyReport) -> bytes:
    pdf = _Pdf(orientation="P", unit="mm", format="A4")
    pdf.title_text = report.title
    pdf.set_title(report.title)
    pdf.set_creator("Yezhu")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_font(FONT, "", str(cjk_font()))
    pdf.add_page()
    pdf.set_font(FONT, size=18)
    pdf.cell(0, 12, report.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)
    pdf.cell(0, 6, report.generated_from, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    headline: list[list[Any]] = [[s.title.split("、", 1)[-1], label, value] for s in report.sections
                                 for label, value in s.figures]
    _table(pdf, Table("概览", [("部分", TEXT), ("指标", TEXT), ("数值", TEXT)], headline))
    for section in report.sections:
        pdf.add_page()
        pdf.set_font(FONT, size=14)
        pdf.cell(0, 10, section.title, new_x="LMARGIN", new_y="NEXT")
        if section.figures:
            pdf.set_font(FONT, size=9)
            pdf.multi_cell(0, 5, "    ".join(f"{label}：{value}" for label, value in section.figures),
                           new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        for chart in section.charts:
            png = chart_png(section, chart)
            if png is not None:
                if pdf.get_y() > pdf.h - 85:
                    pdf.add_page()
                pdf.image(BytesIO(png), w=pdf.epw)
        for table in section.tables:
            _table(pdf, table)
        if section.notes:
            pdf.set_font(FONT, size=8)
            pdf.set_text_color(90)
            for note in section.notes:
                pdf.multi_cell(0, 4.5, note, new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0)
    return bytes(pdf.output())



