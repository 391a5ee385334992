"""Benchmark: import a 100,000-row owner roster (业主花名册) into the embedded SQLite database.

Generates a deterministic, realistic roster as GBK CSV and as xlsx (six projects, buildings with two or
three units, Chinese names, mobile numbers, co-owners, owners with a second home, mixed spellings such
as ``3栋``/``3号楼``/``3#`` and ``2025/6/1``/``2025年6月1日``, ~1% bad rows), then for each file:

1. imports it into a fresh, migrated SQLite database under a temporary directory;
2. imports it again and checks that nothing changed (idempotency).

Each import runs in its own process so its peak RSS is its own. Usage::

    .venv/bin/python bench/roster_import.py [--rows 100000] [--keep DIR]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEADERS = ["项目", "楼栋", "单元", "房号", "业主姓名", "手机号", "交房日期"]
PROJECTS = [("翡翠湾", 22), ("锦绣华庭", 18), ("滨江壹号", 16), ("云栖花园", 24), ("金色家园", 20), ("御景湾", 14)]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华建国志海燕文晓东春梅丹玉兰欣怡子涵浩然宇轩梓萱思雨嘉琪俊杰博文雪婷佳慧明轩一诺"
PREFIXES = ["138", "139", "135", "136", "137", "150", "151", "152", "158", "159", "186", "187", "188", "189",
            "177", "199", "166", "147"]
BAD_KINDS = ["short_phone", "phone_12", "bad_date", "no_name", "no_room", "name_digits", "sci_phone", "no_phone"]


def generate(rows: int, seed: int = 20261123) -> tuple[list[list[Any]], int]:
    """The roster as cell values (dates as ``date``; building/room as ``int`` where a sheet would have
    numbers) and the number of deliberately bad rows."""
    rng = random.Random(seed)
    out: list[list[Any]] = []
    owners: list[tuple[str, str]] = []
    bad = 0
    serial = 0

    def new_owner() -> tuple[str, str]:
        nonlocal serial
        serial += 1
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        phone = rng.choice(PREFIXES) + f"{(serial * 7919) % 10**8:08d}"
        return name, phone

    while True:
        for p_index, (project, n_buildings) in enumerate(PROJECTS):
            for b in range(1, n_buildings + 1):
                handover = dt.date(2019 + (p_index + b) % 8, 1 + (b * 5) % 12, 1 + (b * 7) % 28)
                units = 2 + (b % 2)
                floors = 18 + (b * 3) % 16
                per_floor = 2 + b % 3
                for u in range(1, units + 1):
                    for floor in range(1, floors + 1):
                        for r in range(1, per_floor + 1):
                            if len(out) >= rows:
                                return out, bad
                            if rng.random() < 0.12:  # unsold or not yet registered
                                continue
                            room = floor * 100 + r
                            if owners and rng.random() < 0.03:
                                holder = rng.choice(owners)  # a second home
                            else:
                                holder = new_owner()
                                owners.append(holder)
                            place = [project, b, u, room]
                            out.append([*place, holder[0], holder[1], handover])
                            if rng.random() < 0.06 and len(out) < rows:  # co-owner (spouse)
                                co = new_owner()
                                out.append([*place, co[0], co[1], handover])
                            if rng.random() < 0.0101 and len(out) < rows:
                                out.append(_bad_row(rng, [*place, *new_owner(), handover]))
                                bad += 1


def _bad_row(rng: random.Random, row: list[Any]) -> list[Any]:
    kind = rng.choice(BAD_KINDS)
    row = list(row)
    row[3] = int(row[3]) + 50  # a room of its own, so a bad row never collides with a good one
    if kind == "short_phone":
        row[5] = row[5][:9]
    elif kind == "phone_12":
        row[5] = "12" + row[5][2:]
    elif kind == "bad_date":
        row[6] = f"{row[6].year}-02-30"
    elif kind == "no_name":
        row[4] = ""
    elif kind == "no_room":
        row[3] = ""
    elif kind == "name_digits":
        row[4] = row[5]
    elif kind == "sci_phone":
        row[5] = f"{int(row[5]):.2E}"
    else:
        row[5] = ""
    return row


def _text_cells(row: list[Any], rng: random.Random) -> list[str]:
    """How the same row looks in a CSV exported by different people."""
    project, b, u, room, name, phone, handover = row
    building = rng.choice((f"{b}栋", f"{b}号楼", str(b), f"{b}#")) if b != "" else ""
    unit = rng.choice((f"{u}单元", str(u)))
    room_text = rng.choice((f"{room}室", str(room))) if room != "" else ""
    if isinstance(handover, dt.date):
        date = rng.choice((handover.isoformat(), f"{handover.year}/{handover.month}/{handover.day}",
                           f"{handover.year}年{handover.month}月{handover.day}日"))
    else:
        date = handover
    return [project, building, unit, room_text, name, phone, date]


def write_files(rows: list[list[Any]], directory: Path) -> tuple[Path, Path]:
    import openpyxl

    rng = random.Random(7)
    csv_path = directory / "roster.csv"
    with csv_path.open("w", encoding="gbk", newline="") as fh:  # Excel's "CSV" on Chinese Windows
        writer = csv.writer(fh)
        writer.writerow(HEADERS)
        for row in rows:
            writer.writerow(_text_cells(row, rng))
    xlsx_path = directory / "roster.xlsx"
    # A normal (not write-only) workbook, like a sheet saved by Excel or WPS: it records the sheet's
    # dimension, which openpyxl's read-only mode otherwise finds by parsing the whole sheet twice.
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "业主花名册"
    ws.append(["业主花名册（导出）"])  # a title row above the header, as company sheets often have
    ws.append(HEADERS)
    for row in rows:
        project, b, u, room, name, phone, handover = row
        cells: list[Any] = [project, f"{b}栋" if rng.random() < 0.3 else b, u, room, name,
                            int(phone) if phone.isdigit() and rng.random() < 0.5 else phone,
                            dt.datetime.combine(handover, dt.time()) if isinstance(handover, dt.date) else handover]
        ws.append(cells)
    wb.save(xlsx_path)
    return csv_path, xlsx_path


# --- one import, in a child process -------------------------------------------------------------


async def _counts(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from bot.store.db import Database

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return {t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one()
                    for t in ("project", "building", "house", "owner", "owner_house")}
    finally:
        await db.close()


async def _child(url: str, path: Path) -> dict[str, Any]:
    from bot.imports import import_owners
    from bot.store.db import Database

    before = await _counts(url)
    db = Database(url)
    try:
        start = time.perf_counter()
        report = await import_owners(db, path, create_projects=True)
        seconds = time.perf_counter() - start
    finally:
        await db.close()
    after = await _counts(url)
    fields = ("rows_read", "rows_imported", "rows_rejected", "projects_created", "buildings_created",
              "houses_created", "houses_updated", "owners_created", "owners_updated", "links_created")
    return {
        "seconds": seconds,
        "report": {f: getattr(report, f) for f in fields},
        "before": before,
        "after": after,
        "peak_rss_mb": _peak_rss_mb(),
        "reasons": sorted({e.reason.split(" (")[0].split("，")[0] for e in report.errors}),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over ``exec``
    from the forking parent, which here holds the whole generated roster."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(url: str, path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", url, str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="Write the files and databases here and keep them")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child[0], Path(args.child[1])))))
        return

    from bot.store.db import upgrade

    tmp = tempfile.TemporaryDirectory(prefix="yezhu-bench-")
    directory = args.keep or Path(tmp.name)
    directory.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    start = time.perf_counter()
    rows, bad = generate(args.rows)
    csv_path, xlsx_path = write_files(rows, directory)
    print(f"generated {len(rows):,} rows ({bad} bad) in {time.perf_counter() - start:.1f} s: "
          f"{csv_path.stat().st_size / 1e6:.1f} MB csv, {xlsx_path.stat().st_size / 1e6:.1f} MB xlsx")

    finals: dict[str, dict[str, int]] = {}
    for path in (csv_path, xlsx_path):
        db_path = directory / f"{path.suffix[1:]}.db"
        db_path.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{db_path}"
        upgrade(url)
        load = os.getloadavg()[0]
        first = run_child(url, path)
        second = run_child(url, path)
        load = max(load, os.getloadavg()[0])
        r1, r2 = first["report"], second["report"]
        print(f"\n{path.name}: first import  {first['seconds']:6.1f} s  {r1['rows_read'] / first['seconds']:8,.0f} rows/s"
              f"  peak RSS {first['peak_rss_mb']:.0f} MB")
        print(f"{'':{len(path.name)}}  second import {second['seconds']:6.1f} s  "
              f"{r2['rows_read'] / second['seconds']:8,.0f} rows/s  peak RSS {second['peak_rss_mb']:.0f} MB")
        print(f"  first:  {r1}")
        print(f"  second: {r2}")
        print(f"  tables after first: {first['after']}")
        print(f"  load average (1 min) around the runs: up to {load:.1f} on {os.cpu_count()} cores")
        print(f"  reasons: {'; '.join(first['reasons'])}")
        unchanged = first["after"] == second["after"] and not any(
            r2[k] for k in r2 if k.endswith(("created", "updated")))
        print(f"  idempotent (second import changed nothing): {unchanged}")
        print(f"  rejected {r1['rows_rejected']} of {bad} bad rows generated: "
              f"{'ok' if r1['rows_rejected'] == bad else 'MISMATCH'}")
        finals[path.name] = first["after"]
    same = len({json.dumps(v, sort_keys=True) for v in finals.values()}) == 1
    print(f"\ncsv and xlsx give the same database: {same}")
    if args.keep is None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
