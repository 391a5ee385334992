"""Spreadsheet imports (bot.imports, bot.import_cli): the owner roster and the certificate ledger.

The database tests run on SQLite and PostgreSQL (``db_url``). Files are written into ``tmp_path`` the
way property companies produce them: Chinese headers, a title row, GBK CSV, Excel date cells and
serial numbers, ``3栋``/``501室`` spellings.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from bot.import_cli import certificates_app, owners_app
from bot.imports import (
    CHINA_TZ,
    ImportReport,
    Invalid,
    TableError,
    import_certificates,
    import_owners,
    normalise_building,
    normalise_room,
    normalise_unit,
    parse_date,
    parse_datetime,
    parse_phone,
    parse_status,
    read_table,
    split_house_label,
)
from bot.store.db import Database
from bot.store.models import Building, CertificateRecord, House, Owner, OwnerHouse, Project

CN = ["项目", "楼栋", "单元", "房号", "业主姓名", "手机号", "交房日期"]
EN = ["project", "building", "unit", "room", "owner", "phone", "handover date"]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.close()


async def add_project(db: Database, code: str = "demo", name: str = "示范花园") -> int:
    async with db.session() as s, s.begin():
        project = Project(code=code, name=name, settings={})
        s.add(project)
        await s.flush()
        return project.id


async def counts(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        return {
            t.__tablename__: (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
            for t in (Project, Building, House, Owner, OwnerHouse, CertificateRecord)
        }


async def houses(db: Database) -> dict[tuple[str, str, str], dt.date | None]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(Building.name, House.unit, House.room, House.handover_date).join(Building))
        return {(b, u, r): d for b, u, r, d in rows}


async def owners_of(db: Database) -> dict[str, tuple[str, list[str]]]:
    """phone → (name, sorted house labels)."""
    async with db.engine.connect() as conn:
        names = dict((await conn.execute(sa.select(Owner.phone, Owner.name))).all())
        links = await conn.execute(
            sa.select(Owner.phone, Building.name, House.unit, House.room)
            .join(OwnerHouse, OwnerHouse.owner_id == Owner.id)
            .join(House, House.id == OwnerHouse.house_id).join(Building))
    homes: dict[str, list[str]] = {phone: [] for phone in names}
    for phone, b, u, r in links:
        homes[phone].append(f"{b}-{u}-{r}")
    return {phone: (names[phone], sorted(homes[phone])) for phone in names}


def write_csv(path: Path, rows: Sequence[Sequence[Any]], encoding: str = "utf-8", delimiter: str = ",") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "业主花名册"
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def errors_of(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.row, e.column) for e in report.errors]


ROSTER = [
    CN,
    ["demo", "3栋", "2单元", "501室", "张三", "13800000001", "2025-06-01"],
    ["demo", "8", "1", "1203", "李四", "138-0000-0002", "2024/3/15"],
    ["示范花园", "8号楼", "2", "601", "李四", "13800000002", "2024年3月15日"],  # 李四's second home, by name
    ["demo", "12", "3", "1804", "王五", "+86 138 0000 0003", ""],  # 准业主: no handover date yet
]


# --- value rules (no database) ------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "phone"), [
    ("13800000001", "13800000001"),
    (13800000001, "13800000001"),
    (13800000001.0, "13800000001"),
    ("138 0000 0001", "13800000001"),
    ("138-0000-0001", "13800000001"),
    ("+86 13800000001", "13800000001"),
    ("008613800000001", "13800000001"),
    ("１３８００００００01", "13800000001"),
    ("13800000001/13900000002", "13800000001"),
    ("0571-88880000", "0571-88880000"),
    ("(0571)88880000", "0571-88880000"),
    ("057188880000", "0571-88880000"),
    ("010-88880000", "010-88880000"),
    ("02188880000", "021-88880000"),
    ("0571-88880000-8001", "0571-88880000-8001"),
    ("0571-88880000转8001", "0571-88880000-8001"),
])
def test_phone_numbers_are_normalised(raw: Any, phone: str) -> None:
    assert parse_phone(raw) == phone


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "不能为空"),
    (None, "不能为空"),
    ("12345", "格式不正确"),
    ("12800000001", "格式不正确"),
    ("1380000000", "格式不正确"),
    ("138000000012", "格式不正确"),
    ("88880000", "格式不正确"),
    ("1.38E+10", "科学计数法"),
    (1.38e10 + 0.5, "不是整数"),
])
def test_bad_phone_numbers_say_why(raw: Any, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_phone(raw)


@pytest.mark.parametrize("raw", [
    "2025-06-01", "2025/6/1", "2025.6.1", "2025年6月1日", "2025 年 6 月 1 日", "20250601", "2025-06-01 00:00:00",
    "2025/6/1 0:00", "２０２５-06-01", dt.date(2025, 6, 1), dt.datetime(2025, 6, 1), 45809, 45809.0, "45809",
    20250601,
])
def test_dates_in_common_formats(raw: Any) -> None:
    assert parse_date(raw) == dt.date(2025, 6, 1)


@pytest.mark.parametrize(("raw", "reason"), [
    ("2025-13-01", "不存在"), ("2025-02-30", "不存在"), ("6/1/2025", "格式不正确"), ("明年", "格式不正确"),
    ("1899-01-01", "不合理"), (-5, "不是日期"),
])
def test_bad_dates_say_why(raw: Any, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_date(raw)


def test_date_times_are_china_time() -> None:
    moment = parse_datetime("2026/3/1 14:30")
    assert moment == dt.datetime(2026, 3, 1, 14, 30, tzinfo=CHINA_TZ)
    assert moment.astimezone(dt.UTC) == dt.datetime(2026, 3, 1, 6, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(("raw", "building"), [
    ("3", "3"), (3, "3"), (3.0, "3"), ("3栋", "3"), ("3号楼", "3"), ("3#", "3"), ("3#楼", "3"), ("3幢", "3"),
    ("０３栋", "3"), ("第三栋", "3"), ("十二栋", "12"), ("B座", "B"), ("b座", "B"), (" 12 栋 ", "12"), ("A1", "A1"),
])
def test_building_names(raw: Any, building: str) -> None:
    assert normalise_building(raw) == building


def test_unit_and_room_names() -> None:
    assert [normalise_unit(v) for v in ("2单元", "二单元", 2, "２", "02")] == ["2"] * 5
    assert [normalise_room(v) for v in ("501室", "501", 501, "0501", "501号", "５０１")] == ["501"] * 6
    for rule in (normalise_building, normalise_unit, normalise_room):
        with pytest.raises(Invalid, match="不能为空"):
            rule("")
    with pytest.raises(Invalid, match="太长"):
        normalise_room("12345678901")


def test_one_column_house_labels() -> None:
    assert split_house_label("3-2-501") == ("3", "2", "501")
    assert split_house_label("3栋2单元501室") == ("3", "2", "501")
    assert split_house_label("B座1单元1203") == ("B", "1", "1203")
    assert split_house_label("501") is None


@pytest.mark.parametrize(("raw", "status"), [
    ("办理中", "processing"), ("已到", "ready"), ("可领取", "ready"), ("已领取", "collected"), ("已邮寄", "mailed"),
    ("暂缓", "on_hold"), ("processing", "processing"), ("Ready", "ready"), ("collected", "collected"),
    ("mailed", "mailed"), ("on_hold", "on_hold"), ("on hold", "on_hold"), ("ON-HOLD", "on_hold"),
])
def test_certificate_statuses(raw: str, status: str) -> None:
    assert parse_status(raw) == status


def test_unknown_status_lists_the_accepted_ones() -> None:
    with pytest.raises(Invalid, match="办理中"):
        parse_status("差不多了")


# --- reading files ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_csv_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = write_csv(tmp_path / "r.csv", ROSTER, encoding=encoding)
    with read_table(path) as table:
        assert table.headers == CN
        rows = list(table)
    assert rows[0] == (2, dict(zip(CN, ROSTER[1], strict=True)))
    assert [n for n, _ in rows] == [2, 3, 4, 5]


def test_tab_separated_text_and_blank_rows(tmp_path: Path) -> None:
    rows = [ROSTER[0], ROSTER[1], ["", "", "", "", "", "", ""], ROSTER[2]]
    path = write_csv(tmp_path / "r.txt", rows, delimiter="\t")
    with read_table(path) as table:
        assert [n for n, _ in table] == [2, 4]  # the blank row 3 is skipped, numbering is kept


def test_xlsx_title_row_is_skipped_and_rows_keep_sheet_numbers(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "r.xlsx", [["示范花园业主花名册（2026年11月）"], [], CN, *ROSTER[1:]])
    with read_table(path) as table:
        assert table.header_row == 3
        rows = list(table)
    assert [n for n, _ in rows] == [4, 5, 6, 7]
    assert rows[0][1]["业主姓名"] == "张三"


def test_sheet_is_chosen_by_name(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "r.xlsx", [["说明：本表为示例"]])
    wb = openpyxl.load_workbook(path)
    ws = wb.create_sheet("花名册")
    for row in ROSTER:
        ws.append(row)
    wb.save(path)
    with read_table(path, sheet="花名册") as table:
        assert len(list(table)) == 4
    with pytest.raises(TableError, match="没有工作表"):
        read_table(path, sheet="Sheet9")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="无法打开"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(TableError, match=r"\.xls"):
        read_table(tmp_path / "old.xls")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(TableError, match="没有数据"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TableError, match="Excel"):
        read_table(tmp_path / "broken.xlsx")
    (tmp_path / "latin.csv").write_bytes("项目\n".encode("utf-16-le"))  # no BOM: neither UTF-8 nor GBK
    with pytest.raises(TableError):
        read_table(tmp_path / "latin.csv")


# --- owners -------------------------------------------------------------------------------------


async def test_csv_with_chinese_headers(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    report = await import_owners(db, write_csv(tmp_path / "roster.csv", ROSTER))
    assert report.errors == []
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (4, 4, 0)
    assert (report.buildings_created, report.houses_created, report.owners_created, report.links_created) == (
        3, 4, 3, 4)
    assert await houses(db) == {
        ("3", "2", "501"): dt.date(2025, 6, 1),
        ("8", "1", "1203"): dt.date(2024, 3, 15),
        ("8", "2", "601"): dt.date(2024, 3, 15),
        ("12", "3", "1804"): None,
    }
    assert await owners_of(db) == {
        "13800000001": ("张三", ["3-2-501"]),
        "13800000002": ("李四", ["8-1-1203", "8-2-601"]),  # one owner, two homes
        "13800000003": ("王五", ["12-3-1804"]),
    }


async def test_english_headers_and_rows_as_dicts(db: Database) -> None:
    await add_project(db)
    rows = [dict(zip(EN, r, strict=True)) for r in ROSTER[1:3]]
    report = await import_owners(db, rows)
    assert report.ok and report.owners_created == 2
    bad = [{**rows[0], "phone": "12"}]
    report = await import_owners(db, bad)
    assert errors_of(report) == [(2, "phone")]  # dicts are numbered like a sheet: the first is row 2


async def test_xlsx_with_title_row_and_excel_cells(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    path = write_xlsx(tmp_path / "roster.xlsx", [
        ["示范花园业主花名册"],
        ["项目名称", "楼号", "单元号", "房间号", "业主", "手机号码（必填）", "交付日期", "备注"],
        ["示范花园", 3, 2, 501, "张　三", 13800000001, dt.datetime(2025, 6, 1)],  # full-width space in name
        ["示范花园", "３栋", "２单元", "502室", "李四", "13800000002", 45809],  # Excel serial date
        ["示范花园", 3, 2, 503, "王五", 12345678901, dt.datetime(2025, 6, 1)],  # row 5: bad phone
        ["示范花园", 3, 2, 504, "赵六", "13800000004", "2025-06-01", "VIP"],
    ])
    report = await import_owners(db, path)
    assert errors_of(report) == [(5, "手机号码（必填）")]
    assert report.ignored_columns == ["备注"]
    assert (report.rows_read, report.rows_imported) == (4, 3)
    assert await houses(db) == {("3", "2", r): dt.date(2025, 6, 1) for r in ("501", "502", "504")}
    assert (await owners_of(db))["13800000001"] == ("张三", ["3-2-501"])


async def test_gbk_csv(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    report = await import_owners(db, write_csv(tmp_path / "花名册.csv", ROSTER, encoding="gbk"))
    assert report.ok and report.owners_created == 3
    assert (await owners_of(db))["13800000002"][0] == "李四"


async def test_bad_rows_are_reported_and_good_rows_land(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    path = write_csv(tmp_path / "roster.csv", [
        CN,
        ["demo", "3", "2", "501", "张三", "13800000001", "2025-06-01"],      # 2 good
        ["demo", "3", "2", "502", "李四", "1380000000", "2025-06-01"],       # 3 phone too short
        ["demo", "3", "2", "503", "王五", "13800000003", "2025-02-30"],      # 4 no such date
        ["demo", "3", "", "504", "", "13800000004", "2025-06-01"],           # 5 no unit, no name
        ["nowhere", "3", "2", "505", "钱七", "13800000005", "2025-06-01"],   # 6 unknown project
        ["demo", "3", "2", "506", "13800000006", "孙八", "2025-06-01"],      # 7 columns shifted
        ["demo", "3", "2", "507", "周九", "13800000007", ""],                # 8 good (no date yet)
    ])
    report = await import_owners(db, path)
    assert errors_of(report) == [(3, "手机号"), (4, "交房日期"), (5, "单元"), (5, "业主姓名"), (6, "项目"),
                                 (7, "业主姓名"), (7, "手机号")]
    reasons = {(e.row, e.column): e.reason for e in report.errors}
    assert "手机号格式不正确" in reasons[(3, "手机号")] and "not a mainland mobile" in reasons[(3, "手机号")]
    assert "日期不存在" in reasons[(4, "交房日期")]
    assert "单元不能为空" in reasons[(5, "单元")]
    assert "--create-projects" in reasons[(6, "项目")]
    assert "列是否错位" in reasons[(7, "业主姓名")]
    assert (report.rows_read, report.rows_imported, report.rows_rejected) == (7, 2, 5)
    assert set(await owners_of(db)) == {"13800000001", "13800000007"}


async def test_reimport_changes_nothing(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    path = write_csv(tmp_path / "roster.csv", ROSTER)
    first = await import_owners(db, path)
    before = await counts(db)
    again = await import_owners(db, path)
    assert await counts(db) == before
    assert again.ok and again.rows_imported == first.rows_imported == 4
    assert (again.projects_created, again.buildings_created, again.houses_created, again.houses_updated,
            again.owners_created, again.owners_updated, again.links_created) == (0, 0, 0, 0, 0, 0, 0)


async def test_changed_handover_date_and_owner_name_update(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    await import_owners(db, write_csv(tmp_path / "v1.csv", ROSTER))
    before = await counts(db)
    changed = [list(r) for r in ROSTER]
    changed[1][6] = "2025-07-15"    # 张三's house: handover moved
    changed[2][4] = "李肆"           # 李四 corrected his name
    changed[4][6] = "2026-10-01"    # 王五's house now has a date
    changed[3][6] = ""              # a blank date leaves the stored one alone
    changed[3][4] = "李肆"
    report = await import_owners(db, write_csv(tmp_path / "v2.csv", changed))
    assert report.ok
    assert (report.houses_updated, report.owners_updated, report.houses_created, report.owners_created,
            report.links_created) == (2, 1, 0, 0, 0)
    assert await counts(db) == before
    assert (await houses(db))[("3", "2", "501")] == dt.date(2025, 7, 15)
    assert (await houses(db))[("8", "2", "601")] == dt.date(2024, 3, 15)
    assert (await houses(db))[("12", "3", "1804")] == dt.date(2026, 10, 1)
    assert (await owners_of(db))["13800000002"] == ("李肆", ["8-1-1203", "8-2-601"])


async def test_co_owners_and_an_owner_with_two_houses_across_batches(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    rows = [CN] + [["demo", "1", "1", str(100 + i), f"业主{i}", f"139{i:08d}", "2025-01-01"] for i in range(1, 8)]
    rows.append(["demo", "1", "1", "101", "配偶", "13700000001", "2025-01-01"])   # co-owner of 1-1-101
    rows.append(["demo", "2", "1", "101", "业主1", "13900000001", "2025-01-01"])  # 业主1's second home
    report = await import_owners(db, write_csv(tmp_path / "r.csv", rows), batch_size=3)
    assert report.ok
    assert (report.owners_created, report.houses_created, report.links_created) == (8, 8, 9)
    found = await owners_of(db)
    assert found["13900000001"] == ("业主1", ["1-1-101", "2-1-101"])
    assert found["13700000001"] == ("配偶", ["1-1-101"])
    again = await import_owners(db, write_csv(tmp_path / "r.csv", rows), batch_size=4)
    assert (again.owners_created, again.houses_created, again.links_created) == (0, 0, 0)


async def test_contradicting_rows_in_one_file(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    path = write_csv(tmp_path / "r.csv", [
        CN,
        ["demo", "1", "1", "101", "张三", "13800000001", "2025-01-01"],
        ["demo", "1", "1", "102", "张叁", "13800000001", "2025-01-01"],   # same phone, another name
        ["demo", "1", "1", "101", "李四", "13800000002", "2025-02-01"],   # same house, another date
        ["demo", "1", "1", "101", "张三", "13800000001", "2025-01-01"],   # an exact repeat is harmless
    ])
    report = await import_owners(db, path)
    assert errors_of(report) == [(3, "手机号"), (4, "交房日期")]
    assert "第 2 行" in report.errors[0].reason and "第 2 行" in report.errors[1].reason
    assert await owners_of(db) == {"13800000001": ("张三", ["1-1-101"])}


async def test_two_imports_at_once_do_not_duplicate(db: Database, tmp_path: Path) -> None:
    """Each batch's key lookups and inserts race with the other import: ON CONFLICT and the look-up of
    rows the other one inserted keep the database right."""
    path = write_csv(tmp_path / "r.csv", [CN] + [
        ["翡翠湾", str(1 + i % 3), "1", str(101 + i), f"业主{i % 40}", f"139{i % 40:08d}", "2025-01-01"]
        for i in range(60)])
    reports = await asyncio.gather(*(import_owners(db, path, create_projects=True, batch_size=7) for _ in range(2)))
    assert all(r.ok for r in reports)
    assert await counts(db) == {"project": 1, "building": 3, "house": 60, "owner": 40, "owner_house": 60,
                                "certificate_record": 0}


async def test_projects_are_created_only_when_asked(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [CN, ["翡翠湾", "1", "1", "101", "张三", "13800000001", "2025-01-01"]])
    report = await import_owners(db, path)
    assert errors_of(report) == [(2, "项目")]
    assert (await counts(db))["project"] == 0
    report = await import_owners(db, path, create_projects=True)
    assert report.ok and report.projects_created == 1
    async with db.engine.connect() as conn:
        assert (await conn.execute(sa.select(Project.code, Project.name))).all() == [("翡翠湾", "翡翠湾")]
    assert (await import_owners(db, path, create_projects=True)).projects_created == 0


async def test_default_project_and_one_column_house_labels(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    path = write_csv(tmp_path / "r.csv", [
        ["房号", "姓名", "电话"],
        ["3-2-501", "张三", "13800000001"],
        ["8栋1单元1203室", "李四", "13800000002"],
        ["1203", "王五", "13800000003"],  # no building or unit anywhere
    ])
    with pytest.raises(TableError, match="项目"):
        await import_owners(db, path)  # no project column and no default: nothing can be imported
    report = await import_owners(db, path, project="示范花园")
    assert errors_of(report) == [(4, "楼栋 building"), (4, "单元 unit")]
    assert set(await houses(db)) == {("3", "2", "501"), ("8", "1", "1203")}


async def test_missing_required_columns_stop_before_writing(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    path = write_csv(tmp_path / "r.csv", [["项目", "楼栋", "单元", "房号", "业主姓名"], ["demo", "1", "1", "101", "张三"]])
    with pytest.raises(TableError, match="手机"):
        await import_owners(db, path)
    assert (await counts(db))["owner"] == 0


async def test_progress_is_reported(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    seen: list[int] = []
    await import_owners(db, write_csv(tmp_path / "r.csv", ROSTER), progress=seen.append, batch_size=3)
    assert seen == [3, 1]

    class Bar:
        total: Any = None
        done = 0

        def update(self, n: int = 1) -> None:
            self.done += n

    bar = Bar()
    await import_owners(db, write_csv(tmp_path / "r.csv", ROSTER), progress=bar)
    assert bar.done == 4 and bar.total is not None and bar.total >= 4


# --- certificates -------------------------------------------------------------------------------

LEDGER_HEADERS = ["项目", "楼栋", "单元", "房号", "办证状态", "批次", "备注", "领取地点", "领取时间", "到证日期",
                  "领取日期", "领取人"]


async def certificates(db: Database) -> dict[str, dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(Building.name, House.unit, House.room, CertificateRecord.status, CertificateRecord.batch,
                      CertificateRecord.note, CertificateRecord.collect_place, CertificateRecord.collect_hours,
                      CertificateRecord.ready_at, CertificateRecord.collected_at, CertificateRecord.collected_by)
            .join(House, House.id == CertificateRecord.house_id).join(Building))
        return {f"{b}-{u}-{r}": {"status": s, "batch": bt, "note": n, "place": p, "hours": h, "ready_at": ra,
                                  "collected_at": ca, "collected_by": cb}
                for b, u, r, s, bt, n, p, h, ra, ca, cb in rows}


async def test_certificate_ledger(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    await import_owners(db, write_csv(tmp_path / "roster.csv", ROSTER))
    path = write_csv(tmp_path / "ledger.csv", [
        LEDGER_HEADERS,
        ["demo", "3栋", "2单元", "501室", "可领取", "2026-第3批", "已可领取", "客服中心（1栋大堂）", "工作日 9:00–17:00",
         "2026/3/1", "", ""],
        ["demo", "8", "1", "1203", "办理中", "2026-第4批", "资料已递交不动产登记中心", "", "", "", "", ""],
        ["demo", "8", "2", "601", "collected", "2026-第3批", "", "", "", "2026-03-01", "2026-03-05 10:30", "李四"],
        ["demo", "9", "1", "101", "ready", "", "", "", "", "", "", ""],          # 5: no such building
        ["demo", "8", "1", "999", "ready", "", "", "", "", "", "", ""],          # 6: no such house
        ["demo", "12", "3", "1804", "差不多", "", "", "", "", "", "", ""],        # 7: unknown status
        ["nowhere", "12", "3", "1804", "ready", "", "", "", "", "", "", ""],     # 8: unknown project
    ])
    report = await import_certificates(db, path)
    assert errors_of(report) == [(5, "房号"), (6, "房号"), (7, "办证状态"), (8, "项目")]
    assert "楼栋不存在" in report.errors[0].reason and "房屋不存在" in report.errors[1].reason
    assert (report.rows_read, report.rows_imported, report.certificates_created) == (7, 3, 3)
    found = await certificates(db)
    assert found["3-2-501"] == {
        "status": "ready", "batch": "2026-第3批", "note": "已可领取", "place": "客服中心（1栋大堂）",
        "hours": "工作日 9:00–17:00", "ready_at": dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.UTC),
        "collected_at": None, "collected_by": None,
    }
    assert found["8-1-1203"]["status"] == "processing"
    assert found["8-2-601"]["collected_at"] == dt.datetime(2026, 3, 5, 2, 30, tzinfo=dt.UTC)
    assert found["8-2-601"]["collected_by"] == "李四"

    before = await counts(db)
    again = await import_certificates(db, path)
    assert (again.certificates_created, again.certificates_updated) == (0, 0)
    assert await counts(db) == before

    # 张三 collected his certificate: status and date change, the blank cells keep what was stored.
    update = write_csv(tmp_path / "update.csv", [
        LEDGER_HEADERS, ["demo", "3", "2", "501", "已领取", "", "", "", "", "", "2026-03-10", "张三"]])
    report = await import_certificates(db, update)
    assert report.ok and (report.certificates_created, report.certificates_updated) == (0, 1)
    found = await certificates(db)
    assert found["3-2-501"]["status"] == "collected"
    assert found["3-2-501"]["note"] == "已可领取"
    assert found["3-2-501"]["ready_at"] == dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.UTC)
    assert found["3-2-501"]["collected_at"] == dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)


async def test_certificate_ledger_as_xlsx_with_english_headers(db: Database, tmp_path: Path) -> None:
    await add_project(db)
    await import_owners(db, write_csv(tmp_path / "roster.csv", ROSTER))
    path = write_xlsx(tmp_path / "ledger.xlsx", [
        ["project", "building", "unit", "room", "status", "batch", "note", "ready date"],
        ["demo", 3, 2, 501, "on hold", "B7", "x" * 201, None],          # 2: note too long
        ["demo", 3, 2, 501, "on hold", "B7", "缺契税完税证明", dt.datetime(2026, 3, 1)],
        ["demo", 3, 2, 501, "mailed", "B7", None, None],                # 4: contradicts row 3
    ])
    report = await import_certificates(db, path)
    assert errors_of(report) == [(2, "note"), (4, "room")]
    assert (await certificates(db))["3-2-501"]["status"] == "on_hold"


# --- the command line ---------------------------------------------------------------------------


def test_cli_owners_import(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEZHU_DATABASE_URL", db_url)
    runner = CliRunner()
    good = write_csv(tmp_path / "good.csv", ROSTER)

    result = runner.invoke(owners_app, ["import", str(good)])
    assert result.exit_code == 1, result.output  # project demo does not exist yet: every row rejected
    assert "--create-projects" in result.output
    assert (tmp_path / "good.errors.csv").exists()

    result = runner.invoke(owners_app, ["import", str(good), "--create-projects", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "rows imported" in result.output and "links created" in result.output
    assert not (tmp_path / "good.errors.csv").exists()  # the stale report of the failed run is gone

    bad = write_csv(tmp_path / "bad.csv", [*ROSTER, ["demo", "3", "2", "502", "赵六", "12345", "2025-06-01"]])
    result = runner.invoke(owners_app, ["import", str(bad), "--create-projects"])
    assert result.exit_code == 1, result.output
    assert "第 6 行" in result.output
    with (tmp_path / "bad.errors.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["row", "column", "value", "reason"]
    assert rows[1][:3] == ["6", "手机号", "12345"] and "手机号格式不正确" in rows[1][3]

    target = tmp_path / "reports" / "errs.csv"
    target.parent.mkdir()
    result = runner.invoke(owners_app, ["import", str(bad), "--create-projects", "--errors", str(target)])
    assert result.exit_code == 1 and target.exists()

    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    for args in (["import", str(tmp_path / "old.xls")], ["import", str(tmp_path / "nope.csv")]):
        result = runner.invoke(owners_app, args)
        assert result.exit_code == 2, result.output
        assert "无法导入" in result.output

    result = runner.invoke(owners_app, ["import", str(write_csv(tmp_path / "cols.csv", [["姓名"], ["张三"]]))])
    assert result.exit_code == 2 and "缺少必需的列" in result.output

    async def count() -> dict[str, int]:
        database = Database(db_url)
        try:
            return await counts(database)
        finally:
            await database.close()

    assert asyncio.run(count())["owner"] == 3


def test_cli_certificates_import(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEZHU_DATABASE_URL", db_url)
    runner = CliRunner()
    roster = write_csv(tmp_path / "roster.csv", ROSTER)
    assert runner.invoke(owners_app, ["import", str(roster), "--create-projects"]).exit_code == 0
    ledger = write_csv(tmp_path / "ledger.csv", [
        ["项目", "楼栋", "单元", "房号", "状态"],
        ["demo", "3", "2", "501", "已到"],
        ["demo", "3", "2", "599", "已到"],
    ])
    result = runner.invoke(certificates_app, ["import", str(ledger)])
    assert result.exit_code == 1, result.output
    assert "certificates created" in result.output and "房屋不存在" in result.output
    assert (tmp_path / "ledger.errors.csv").read_text(encoding="utf-8-sig").splitlines()[1].startswith("3,房号,")
    ok = write_csv(tmp_path / "ok.csv", [["项目", "楼栋", "单元", "房号", "状态"], ["demo", "3", "2", "501", "已领取"]])
    result = runner.invoke(certificates_app, ["import", str(ok)])
    assert result.exit_code == 0, result.output
