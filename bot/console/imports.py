"""Roster and certificate-ledger uploads (名册导入) for admins, with progress and a row-level error table.

The import itself is :mod:`bot.imports` — the same validation, upsert and report as ``yezhu import``.
The console saves the uploaded file, runs the import as a task of this process and keeps its state
(rows done of the estimated total, then the report) in the shared cache, so the progress page can be
polled from any web process. Bad rows are listed with their spreadsheet row number, column, value and
reason, like the CLI's error CSV (which can be downloaded too).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from bot.console.core import (
    PREFIX,
    Refused,
    Staff,
    audit,
    close_files,
    done,
    render,
    render_string,
    route,
    runtime_of,
    staff_of,
)
from bot.imports import ImportReport, TableError, import_certificates, import_owners
from bot.store.models import Project

log = logging.getLogger("yezhu.console.imports")

KINDS = {"owners": "业主花名册", "certificates": "办证台账"}
SUFFIXES = (".xlsx", ".csv")
STATE_TTL = 24 * 3600
SHOWN_ERRORS = 500
"""Error rows shown in the page's table; all of them are in the downloadable CSV."""
ENGLISH = re.compile(r"\s*\([^()]*[A-Za-z][^()]*\)")
_TASKS: set[asyncio.Task[None]] = set()
"""Imports running in this process (kept referenced until they finish)."""


def chinese(text: str) -> str:
    """The Chinese half of :mod:`bot.imports`' bilingual texts ("手机号不能为空 (phone is required)")."""
    return ENGLISH.sub("", text).strip()


def _key(job: str) -> str:
    return f"console:import:{job}"


def _named(reason: str, projects: dict[str, str]) -> str:
    """Reasons name a project by its code (``房屋不存在: demo 3-2-999``): say its name."""
    for code, name in projects.items():
        reason = re.sub(rf"(?<![A-Za-z0-9_-]){re.escape(code)}(?![A-Za-z0-9_-])", name, reason)
    return reason


def report_state(report: ImportReport, projects: dict[str, str] | None = None) -> dict[str, Any]:
    summary = []
    for line in report.summary():
        label, _, value = line.rpartition(" ")
        summary.append([label.split(" ")[0].strip(), value.strip()])
    errors = [{"row": e.row, "column": e.column, "value": e.value, "reason": _named(chinese(e.reason), projects or {})}
              for e in report.errors]
    return {"summary": summary, "errors": errors, "rejected": report.rows_rejected,
            "imported": report.rows_imported, "read": report.rows_read}


class _Progress:
    """What :func:`bot.imports._run` tells a progress bar: the estimated total, then rows per batch."""

    def __init__(self) -> None:
        self.total: Any = None
        self.done = 0

    def update(self, n: int = 1) -> object:
        self.done += n
        return None


async def _run(runtime: Any, job: str, kind: str, path: Path, options: dict[str, Any], actor: str) -> None:
    cache = runtime.services.cache
    progress = _Progress()
    state: dict[str, Any] = {"status": "running", "kind": kind, "file": options.pop("filename"), "done": 0,
                             "total": None, "actor": actor}

    async def publish() -> None:
        state.update(done=progress.done, total=progress.total)
        await cache.set(_key(job), json.dumps(state, ensure_ascii=False), STATE_TTL)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(0.3)
            await publish()

    beat = asyncio.ensure_future(heartbeat())
    try:
        run = import_owners if kind == "owners" else import_certificates
        report = await run(runtime.db, path, progress=progress, **options)  # type: ignore[operator]
        if kind != "owners":  # houses made ready: their collection notice, drafted for approval
            from actions.campaigns import certificate_ready

            for project_id, houses in report.ready_houses.items():
                await certificate_ready(runtime, project_id, houses)
        async with runtime.db.session() as s:
            projects = dict((await s.execute(sa.select(Project.code, Project.name))).all())
        state.update(status="done", report=report_state(report, {str(k): str(v) for k, v in projects.items()}))
    except TableError as exc:
        state.update(status="failed", error=chinese(str(exc)))
    except Exception:  # never leave the page spinning: say it failed, keep the traceback in the log
        log.exception("console import %s failed", job)
        state.update(status="failed", error="导入过程中出现错误，请检查文件后重试，或联系管理员查看日志")
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await publish()
        await asyncio.to_thread(path.unlink, missing_ok=True)


def _save(upload: web.FileField, suffix: str) -> str:
    handle, name = tempfile.mkstemp(prefix="yezhu-import-", suffix=suffix)
    with open(handle, "wb") as fh:
        fh.write(upload.file.read())
    return name


@route("GET", "/imports", "imports")
async def imports_page(request: web.Request) -> web.StreamResponse:
    return render(request, "imports.html", title="名册导入", page="imports", kinds=KINDS, job=None, state=None)


@route("POST", "/imports", "imports")
async def start_import(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    back = f"{PREFIX}/imports"
    if request.content_type != "multipart/form-data":
        raise Refused("请选择要导入的文件", back=back)
    data = await request.post()
    try:
        return await _start(request, staff, data, back)
    finally:
        close_files(data)


async def _start(request: web.Request, staff: Staff, data: Any, back: str) -> web.StreamResponse:
    kind = str(data.get("kind") or "")
    if kind not in KINDS:
        raise Refused("请选择导入类型", back=back)
    upload = data.get("file")
    if not isinstance(upload, web.FileField) or not upload.filename:
        raise Refused("请选择要导入的文件（.xlsx 或 .csv）", back=back)
    suffix = Path(upload.filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise Refused("只支持 Excel（.xlsx）或 CSV 文件", status=415, back=back)
    name = await asyncio.to_thread(_save, upload, suffix)
    options: dict[str, Any] = {"filename": upload.filename}
    project = str(data.get("project") or "").strip()
    if project:
        options["project"] = project
    if kind == "owners" and data.get("create_projects"):
        options["create_projects"] = True
    job = secrets.token_urlsafe(12)
    rt = runtime_of(request)
    await rt.services.cache.set(_key(job), json.dumps({"status": "running", "kind": kind, "file": upload.filename,
                                                       "done": 0, "total": None}, ensure_ascii=False), STATE_TTL)
    task = asyncio.ensure_future(_run(rt, job, kind, Path(name), options, staff.username))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    async with rt.db.session() as s, s.begin():
        audit(s, staff, "import.run", f"import:{job}", kind=kind, file=upload.filename)
    return done(request, f"{PREFIX}/imports/{job}", None, job=job)


async def _state(request: web.Request) -> tuple[str, dict[str, Any]]:
    job = request.match_info["job"]
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,40}", job):
        raise web.HTTPNotFound()
    raw = await runtime_of(request).services.cache.get(_key(job))
    if raw is None:
        raise web.HTTPNotFound(text="导入记录不存在或已过期")
    return job, json.loads(raw)


@route("GET", "/imports/{job}", "imports")
async def import_status_page(request: web.Request) -> web.StreamResponse:
    job, state = await _state(request)
    return render(request, "imports.html", title="名册导入", page="imports", kinds=KINDS, job=job, state=state,
                  shown=SHOWN_ERRORS)


@route("GET", "/api/imports/{job}", "imports")
async def import_status(request: web.Request) -> web.StreamResponse:
    job, state = await _state(request)
    html = render_string(request, "_import_state.html", job=job, state=state, kinds=KINDS, shown=SHOWN_ERRORS)
    return web.json_response({"status": state["status"], "done": state.get("done"), "total": state.get("total"),
                              "html": html})


@route("GET", "/imports/{job}/errors.csv", "imports")
async def import_errors_csv(request: web.Request) -> web.StreamResponse:
    job, state = await _state(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["行号", "列", "内容", "原因"])
    for e in (state.get("report") or {}).get("errors", []):
        writer.writerow([e["row"], e["column"], e["value"], e["reason"]])
    return web.Response(body=("\ufeff" + out.getvalue()).encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="import-errors-{job}.csv"'})
