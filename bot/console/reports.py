"""The monthly report page (客服月报) for supervisors: the same sections, tables and charts as the
xlsx/PDF files (reports/), drawn as inline SVG, with both files to download. Role: ``dashboard``
(supervisor, admin). Downloads are audited."""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from markupsafe import Markup

from bot import params
from bot.console.core import audit_now, render, route, runtime_of
from bot.console.dashboard import bar_chart
from bot.store.models import utcnow
from reports import monthly
from reports.model import Chart, MonthlyReport, Section, chart_rows, fmt
from reports.period import BadPeriod, Month

SERIES = ("s-open", "s-overdue", "s-msg", "s-extra")


def line_chart(labels: list[str], series: list[tuple[str, list[float]]], *, percent: bool, title: str,
               width: int = 520, height: int = 220) -> Markup:
    top = 100.0 if percent else max([v for _, vs in series for v in vs] + [4.0])
    pad_l, pad_b, pad_t = 36, 28, 24
    inner_w, inner_h = width - pad_l - 34, height - pad_b - pad_t  # room for the last month's label
    step = inner_w / max(1, len(labels) - 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        y = pad_t + inner_h - inner_h * i / 4
        parts.append(f'<line class="grid" x1="{pad_l}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end">{round(top * i / 4)}</text>')
    for i, label in enumerate(labels):
        parts.append(f'<text class="axis" x="{pad_l + i * step:.1f}" y="{height - 8}" text-anchor="middle">'
                     f'{escape(label)}</text>')
    for si, (name, values) in enumerate(series):
        pts = " ".join(f"{pad_l + i * step:.1f},{pad_t + inner_h - inner_h * v / top:.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline class="line {SERIES[si % 4]}" fill="none" stroke-width="2" points="{pts}"/>')
        parts.append(f'<rect class="{SERIES[si % 4]}" x="{pad_l + si * 110}" y="4" width="12" height="12"/>'
                     f'<text class="axis" x="{pad_l + si * 110 + 16}" y="14">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def svg(section: Section, chart: Chart) -> Markup | None:
    table = section.tables[chart.table]
    n = chart_rows(table)
    if n == 0:
        return None
    labels = [str(r[0]) for r in table.rows[:n]]

    def value(v: Any) -> float:
        return (float(v) * 100 if chart.percent else float(v)) if v is not None else 0.0

    if chart.kind == "line":
        return line_chart(labels, [(table.columns[c][0], [value(r[c]) for r in table.rows[:n]]) for c in chart.values],
                          percent=chart.percent, title=chart.title)
    return bar_chart([(label, [round(value(r[c])) for c in chart.values]) for label, r in zip(labels, table.rows, strict=False)],
                     [(table.columns[c][0], SERIES[i % 4]) for i, c in enumerate(chart.values)], title=chart.title)


def _period(request: web.Request) -> tuple[Month, str | None]:
    raw = request.query.get("month", "").strip()
    try:
        month = Month.parse(raw) if raw else Month.containing(utcnow()).shift(-1)
    except BadPeriod as exc:
        raise params.BadParameter("month", str(exc), exc.zh) from None
    return month, request.query.get("project", "").strip() or None


async def _build(request: web.Request) -> tuple[MonthlyReport, Month, str | None]:
    month, code = _period(request)
    async with runtime_of(request).db.session() as s:
        try:
            project = await monthly.find_project(s, code)
        except LookupError:
            raise params.BadParameter("project", f"no project {code!r}", f"没有楼盘代码 {code}") from None
        report = await monthly.build(s, month, project)
    return report, month, code


@route("GET", "/reports", "dashboard")
async def report_page(request: web.Request) -> web.StreamResponse:
    report, month, code = await _build(request)
    query = urlencode({"month": month.label, **({"project": code} if code else {})})
    sections = [{"s": sec, "charts": [c for c in (svg(sec, ch) for ch in sec.charts) if c is not None]}
                for sec in report.sections]
    return render(request, "report.html", title="客服月报", page="reports", report=report, sections=sections,
                  month=month, code=code or "", query=query, fmt=fmt,
                  months=[Month.containing(utcnow()).shift(-i) for i in range(0, 13)])


@route("GET", "/reports/monthly.{ext}", "dashboard")
async def report_file(request: web.Request) -> web.StreamResponse:
    ext = request.match_info["ext"]
    if ext not in ("xlsx", "pdf"):
        raise web.HTTPNotFound()
    report, month, code = await _build(request)
    # Imported here: matplotlib and fpdf2 cost start-up time every web process would pay otherwise.
    # Rendering is CPU work (charts, font subsetting): a worker thread keeps the event loop answering.
    if ext == "xlsx":
        from reports.xlsx import render
    else:
        from reports.pdf import render
    body = await asyncio.to_thread(render, report)
    await audit_now(request, "report.export", f"report:{month.label}", project=code, format=ext)
    name = f"客服月报-{month.label}{'-' + code if code else ''}.{ext}"
    ctype = "application/pdf" if ext == "pdf" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return web.Response(body=body, content_type=ctype, headers={
        "Content-Disposition": f"attachment; filename=\"report-{month.label}.{ext}\"; filename*=UTF-8''{quote(name)}"})
