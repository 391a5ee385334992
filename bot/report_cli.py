"""``yezhu report monthly``: the monthly report (客服月报) as .xlsx or .pdf (reports/, docs/REPORTS.md).

Every failure is one line on stderr and exit status 2 (bad month, unknown project, unknown format, a
file that cannot be written, a database without the schema), never a traceback. Run as staff (``--as``,
default ``admin``): the export is written to the audit log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Reports: the monthly report (客服月报).", no_args_is_help=True)

FORMATS = (".xlsx", ".pdf")


def fail(message: str) -> typer.Exit:
    typer.echo(f"yezhu report: {message}", err=True)
    return typer.Exit(2)


async def render_monthly(database_url: str, month: str, project: str | None, fmt: str, actor: str) -> tuple[bytes, str]:
    from bot.store.db import Database
    from bot.store.models import AuditLog
    from reports import monthly, pdf, xlsx
    from reports.period import Month

    period = Month.parse(month)
    db = Database(database_url)
    try:
        async with db.session() as s:
            found = await monthly.find_project(s, project)
            report = await monthly.build(s, period, found)
        async with db.session() as s, s.begin():
            s.add(AuditLog(actor=actor, action="report.export", target=f"report:{period.label}",
                           data={"project": project, "format": fmt.lstrip(".")}))
    finally:
        await db.close()
    body = xlsx.render(report) if fmt == ".xlsx" else pdf.render(report)
    return body, report.title


@app.command("monthly")
def monthly_cmd(
    # Optional to typer so that a missing one is our one-line error, not typer's usage box.
    month: Annotated[str | None, typer.Option("--month", help="The month, YYYY-MM (China time)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output file: .xlsx or .pdf")] = None,
    project: Annotated[str | None, typer.Option("--project", help="One project's code (default: all)")] = None,
    as_: Annotated[str, typer.Option("--as", help="Staff name the export is audited as")] = "admin",
) -> None:
    """Write the monthly report of MONTH to OUT (.xlsx with native charts, or .pdf)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.cli import settings
    from reports.fonts import FontMissing
    from reports.period import BadPeriod

    if not month:
        raise fail("--month is required, e.g. --month 2026-11")
    if out is None:
        raise fail("--out is required: the file to write, e.g. --out 月报-2026-11.pdf (or .xlsx)")
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise fail(f"--out must end in .xlsx or .pdf (got {out.name!r})")
    if not out.parent.is_dir():
        raise fail(f"cannot write {out}: the folder {out.parent} does not exist")
    s = settings()
    try:
        body, title = asyncio.run(render_monthly(s.database_url, month, project, fmt, f"cli:{as_}"))
    except BadPeriod as exc:
        raise fail(f"--month: {exc}") from None
    except LookupError as exc:
        raise fail(f"--project: {exc}") from None
    except FontMissing as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot reach the database ({type(exc).__name__}: {exc}): is it running? "
                   "(YEZHU_DATABASE_URL; `yezhu doctor` checks it)") from None
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [""])[0][:160]
        raise fail(f"cannot read the database ({type(cause).__name__}: {first}); is the schema up to date? "
                   "Run `yezhu migrate`") from None
    try:
        out.write_bytes(body)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(f"{title}: {out} ({len(body) // 1024} KB)")
