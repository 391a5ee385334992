"""``yezhu owners import FILE`` and ``yezhu certificates import FILE``: the spreadsheet imports of
:mod:`bot.imports` on the command line.

Exit codes (scripts rely on them): 0 every row imported; 1 some rows were rejected (the good ones are
imported, the bad ones are in the error report); 2 the file cannot be read at all (nothing imported).
The error report is a CSV (row, column, value, reason) written next to the input as
``<name>.errors.csv``, or to ``--errors PATH``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import typer

from bot.imports import ImportReport, TableError, import_certificates, import_owners
from bot.settings import Settings

owners_app = typer.Typer(help="业主花名册 The owner roster: import from xlsx or csv.", no_args_is_help=True)
certificates_app = typer.Typer(help="办证台账 Certificate records: import from xlsx or csv.", no_args_is_help=True)

ERRORS_SHOWN = 20
"""Errors echoed to the terminal; the CSV report holds all of them."""

FileArg = Annotated[Path, typer.Argument(help="The spreadsheet: .xlsx or .csv (UTF-8 or GBK)", show_default=False)]
ErrorsOpt = Annotated[
    Path | None,
    typer.Option("--errors", help="Where to write the error report (default: <FILE>.errors.csv next to FILE)"),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")]
ProjectOpt = Annotated[
    str | None, typer.Option("--project", help="Project code or name for rows that have none (no 项目 column)")
]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Worksheet name (default: the active sheet)")]


@owners_app.callback()
def owners() -> None:
    """业主花名册 The owner roster."""


@certificates_app.callback()
def certificates() -> None:
    """办证台账 Certificate records."""


@owners_app.command("import")
def owners_import(
    file: FileArg,
    create_projects: Annotated[
        bool, typer.Option("--create-projects", help="Create projects that do not exist (code = name = the cell)")
    ] = False,
    project: ProjectOpt = None,
    errors: ErrorsOpt = None,
    sheet: SheetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Import owners, houses and their links; re-importing the same file changes nothing.

    列 Columns: 项目 楼栋 单元 房号 业主姓名 手机号 交房日期

    (project, building, unit, room, owner, phone, handover date). Exit code 0: all rows imported;
    1: some rows rejected (see the error report); 2: the file cannot be read.
    """
    _run("owners", file, errors, quiet, create_projects=create_projects, project=project, sheet=sheet)


@certificates_app.command("import")
def certificates_import(
    file: FileArg,
    project: ProjectOpt = None,
    errors: ErrorsOpt = None,
    sheet: SheetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Import certificate records, one per house; re-importing the same file changes nothing.

    列 Columns: 项目 楼栋 单元 房号 状态 [批次 备注 领取地点 领取时间 到证日期 领取日期 领取人 经办人]

    状态 status: 办理中 已到/可领取 已领取 已邮寄 暂缓 (processing, ready, collected, mailed, on_hold).
    A blank cell keeps the stored value; an unknown house is a rejected row. Exit codes as for owners.
    """
    _run("certificates", file, errors, quiet, project=project, sheet=sheet)


def _run(kind: str, file: Path, errors: Path | None, quiet: bool, **options: object) -> None:
    settings = Settings()
    try:
        report = asyncio.run(_import(kind, settings, file, quiet, options))
    except TableError as exc:
        typer.echo(f"无法导入 {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in report.summary():
        typer.echo(line)
    if report.ignored_columns:
        typer.echo(f"忽略的列 ignored columns: {', '.join(report.ignored_columns)}")
    target = errors or file.with_name(f"{file.stem}.errors.csv")
    if report.ok:
        if errors is None and target.exists():
            target.unlink()  # a report left by an earlier run would now be wrong
        raise typer.Exit(0)
    for e in report.errors[:ERRORS_SHOWN]:
        typer.echo(f"第 {e.row} 行 row {e.row} [{e.column}] {e.value!r}: {e.reason}", err=True)
    if len(report.errors) > ERRORS_SHOWN:
        typer.echo(f"… {len(report.errors) - ERRORS_SHOWN} more", err=True)
    try:
        report.write_errors(target)
        typer.echo(f"错误报告 error report: {target}")
    except OSError as exc:
        typer.echo(f"无法写入错误报告 (cannot write the error report {target}): {exc}", err=True)
    raise typer.Exit(1)


async def draft_collection_notices(rt: object, report: ImportReport) -> None:
    """Houses the import made ready: a certificate-collection notice each project, for approval."""
    from actions.campaigns import certificate_ready

    for project_id, houses in report.ready_houses.items():
        campaign = await certificate_ready(rt, project_id, houses)
        if campaign is not None:
            typer.echo(f"已生成办证通知 {campaign.id}（{len(houses)} 套房屋，待主管审批）：yezhu campaign status {campaign.id}")


async def _import(kind: str, settings: Settings, file: Path, quiet: bool, options: dict[str, object]) -> ImportReport:
    from tqdm import tqdm

    from bot.store.db import Database

    db = Database(settings.database_url)
    bar = tqdm(desc=f"导入 {file.name}", unit="行", file=sys.stderr, dynamic_ncols=True,
               disable=quiet or not sys.stderr.isatty())
    try:
        if settings.is_sqlite:
            await db.migrate()  # the embedded database may be brand new, as with `yezhu run`
        if kind == "owners":
            return await import_owners(db, file, progress=bar, **options)  # type: ignore[arg-type]
        report = await import_certificates(db, file, progress=bar, **options)  # type: ignore[arg-type]
        await draft_collection_notices(SimpleNamespace(db=db, settings=settings), report)
        return report
    finally:
        bar.close()
        await db.close()


@certificates_app.command("register")
def certificates_register(
    batch: Annotated[str, typer.Option("--batch", help="The batch (批次) as in the certificate list, e.g. 2026-第3批")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the register (.xlsx)")],
) -> None:
    """The signed collection register (签收登记表) of a batch as xlsx: house, owners (phones masked), how
    and when each was notified, acknowledged, who collected, relation, 委托书, ID checked, when, staff."""
    if out.suffix.lower() != ".xlsx":
        typer.echo(f"yezhu: {out} must end in .xlsx (e.g. --out register.xlsx)", err=True)
        raise typer.Exit(2)
    try:
        count = asyncio.run(_register(Settings(), batch, out))
    except LookupError as exc:
        typer.echo(f"yezhu: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"yezhu: cannot write {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"签收登记表 {batch}: {count} 户 → {out}")


async def _register(settings: Settings, batch: str, out: Path) -> int:
    import sqlalchemy as sa

    from actions.collection import batches, register, register_xlsx
    from bot.store.db import Database
    from bot.store.models import AuditLog, StaffUser, utcnow

    db = Database(settings.database_url)
    try:
        async with db.session() as s, s.begin():
            known = [b["batch"] for b in await batches(s)]
            if batch not in known:
                shown = "、".join(k for k in known[:8] if k) or "none"
                raise LookupError(f"no certificate batch {batch!r} (batches: {shown}); "
                                  "see `yezhu certificates import`")
            rows = await register(s, batch=batch)
            names = dict((await s.execute(sa.select(StaffUser.username, StaffUser.display_name))).all())
            data = register_xlsx(rows, title=batch, names=names)
            s.add(AuditLog(actor="cli", action="certificate.register", target=f"batch:{batch}",
                           data={"rows": len(rows), "file": out.name}, at=utcnow()))
    finally:
        await db.close()
    await asyncio.to_thread(out.write_bytes, data)
    return len(rows)
