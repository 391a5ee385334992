"""Figures and the monthly report (客服月报) as pure queries over a period.

* :mod:`reports.period` — a calendar month in China time and its UTC bounds;
* :mod:`reports.sql` — the few expressions that differ between SQLite and PostgreSQL (local dates,
  durations, percentiles), so every figure is one portable query;
* :mod:`reports.surveys` — satisfaction, loyalty and response rates (DOMAIN.md "Surveys and the figures
  managers live by"), by project, business area, owner stage, ticket category, engineer and month;
* :mod:`reports.monthly` — every section of the monthly report as data (:class:`MonthlyReport`);
* :mod:`reports.xlsx`, :mod:`reports.pdf` — the two file formats (native Excel charts; a PDF with an
  embedded Chinese font and matplotlib charts).

Used by the API (``GET /api/v1/surveys/summary``), the CLI (``yezhu report monthly``) and the console's
report page. Nothing here reads the clock except to cap a period that has not ended yet: a past month's
report is computed from stored timestamps only and comes out the same whenever it is run.
Definitions of every figure: docs/REPORTS.md.
"""
