"""Bulk imports from a property company's spreadsheets: the owner roster (业主花名册) and the
certificate ledger (办证台账), as ``.xlsx`` or ``.csv``.

What this module owns:

- :func:`read_table` — reads a worksheet or a CSV file (UTF-8 with or without BOM, UTF-16, GBK/GB18030;
  comma, tab or semicolon separated) into ``(row_number, {header: value})`` pairs, where the row number
  is the one the spreadsheet shows (the header is usually row 1; a title row above it is skipped).
- the value rules staff expect: Chinese or English headers, ``3栋``/``3号楼``/``3#`` → ``3``,
  full-width digits, mainland mobile and landline numbers, dates as ``2025-06-01``, ``2025/6/1``,
  ``2025年6月1日``, Excel date cells and serial numbers.
- :func:`import_owners` and :func:`import_certificates` — validate every row, report each bad row with
  its number and reason without stopping the good ones, and upsert the rest idempotently: importing the
  same file twice changes nothing the second time.

Speed: rows are read and validated in a worker thread (the event loop stays free for a running console)
and written in batches with Core ``INSERT … ON CONFLICT DO NOTHING`` and ``executemany`` updates; keys
already in the database are loaded into dictionaries once per batch, never one query per row. Each batch
commits on its own, so a long import never holds SQLite's single write lock for more than a moment and a
re-run after a crash simply picks up where the last one stopped.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import io
import itertools
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store.db import Database
from bot.store.models import Building, CertificateRecord, House, Owner, OwnerHouse, Project

__all__ = [
    "CERTIFICATE_COLUMNS",
    "CERTIFICATE_STATUSES",
    "OWNER_COLUMNS",
    "ImportReport",
    "Invalid",
    "RowError",
    "Table",
    "TableError",
    "import_certificates",
    "import_owners",
    "normalise_building",
    "normalise_room",
    "normalise_unit",
    "parse_date",
    "parse_datetime",
    "parse_phone",
    "parse_status",
    "read_table",
    "split_house_label",
]

BATCH_SIZE = 2000
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
"""Dates in the ledgers are China local dates (no DST, so a fixed offset is exact)."""
HEADER_SCAN_ROWS = 10
"""A header is looked for in the first rows: company sheets often start with a title row."""
_IN_CHUNK = 900
"""Keys per ``IN (…)`` list: far below SQLite's and PostgreSQL's bound-parameter limits."""


_PROJECT = cast(sa.Table, Project.__table__)
_BUILDING = cast(sa.Table, Building.__table__)
_HOUSE = cast(sa.Table, House.__table__)
_OWNER = cast(sa.Table, Owner.__table__)
_OWNER_HOUSE = cast(sa.Table, OwnerHouse.__table__)
_CERTIFICATE = cast(sa.Table, CertificateRecord.__table__)


class TableError(Exception):
    """The file cannot be read at all (missing, unknown format, undecodable, no usable header)."""


# --- columns ------------------------------------------------------------------------------------

# field → accepted headers. Headers are compared after NFKC, lower-casing and dropping spaces,
# punctuation, underscores and anything in brackets: "手机号码（必填）", "Handover_Date" and "*业主姓名" match.
_PLACE_COLUMNS: dict[str, tuple[str, ...]] = {
    "project": ("project", "project code", "project name", "项目", "项目名称", "项目编码", "项目代码",
                "楼盘", "楼盘名称", "小区", "小区名称", "园区"),
    "building": ("building", "楼栋", "栋", "栋号", "楼号", "楼栋号", "幢", "幢号", "座", "楼座"),
    "unit": ("unit", "单元", "单元号"),
    "room": ("room", "room number", "房号", "室", "室号", "房间号", "房屋", "房屋编号", "门牌号", "户号"),
}
OWNER_COLUMNS: dict[str, tuple[str, ...]] = {
    **_PLACE_COLUMNS,
    "owner": ("owner", "owner name", "name", "业主", "业主姓名", "业主名称", "姓名", "客户姓名", "产权人"),
    "phone": ("phone", "mobile", "tel", "telephone", "phone number", "手机", "电话", "手机号", "手机号码",
              "联系电话", "电话号码", "联系方式", "业主电话"),
    "handover": ("handover", "handover date", "交房日期", "交付日期", "交房时间", "交付时间", "收房日期",
                 "入伙日期"),
}
CERTIFICATE_COLUMNS: dict[str, tuple[str, ...]] = {
    **_PLACE_COLUMNS,
    "status": ("status", "状态", "办证状态", "办理状态", "证书状态", "进度", "办证进度"),
    "batch": ("batch", "批次", "办证批次"),
    "note": ("note", "notes", "remark", "remarks", "备注", "说明"),
    "collect_place": ("collect place", "collection place", "place", "领取地点", "领证地点", "地点"),
    "collect_hours": ("collect hours", "collection hours", "hours", "领取时间", "领证时间", "领取时段",
                      "办公时间"),
    "ready_date": ("ready date", "ready", "ready at", "到证日期", "出证日期", "可领取日期", "通知日期"),
    "collected_date": ("collected date", "collected at", "领取日期", "领证日期", "实际领取日期"),
    "collected_by": ("collected by", "领取人", "领证人", "签收人", "代领人"),
    "handed_over_by": ("handed over by", "经办人", "发证人"),
}
_OWNER_REQUIRED = ("project", "room", "owner", "phone")
_CERTIFICATE_REQUIRED = ("project", "room", "status")

LABELS: dict[str, str] = {
    "project": "项目 project", "building": "楼栋 building", "unit": "单元 unit", "room": "房号 room",
    "owner": "业主 owner", "phone": "手机 phone", "handover": "交房日期 handover date",
    "status": "状态 status", "batch": "批次 batch", "note": "备注 note", "collect_place": "领取地点 collect place",
    "collect_hours": "领取时间 collect hours", "ready_date": "到证日期 ready date",
    "collected_date": "领取日期 collected date", "collected_by": "领取人 collected by",
    "handed_over_by": "经办人 handed over by",
}

CERTIFICATE_STATUSES: dict[str, str] = {
    # The five statuses of CertificateRecord.status, as staff write them.
    "processing": "processing", "办理中": "processing", "办理": "processing", "在办": "processing",
    "受理中": "processing", "已递交": "processing", "已受理": "processing",
    "ready": "ready", "已到": "ready", "可领取": "ready", "待领取": "ready", "已到证": "ready",
    "已出证": "ready", "到证": "ready",
    "collected": "collected", "已领取": "collected", "已领": "collected", "已领证": "collected",
    "mailed": "mailed", "已邮寄": "mailed", "邮寄": "mailed", "已寄出": "mailed",
    "on_hold": "on_hold", "onhold": "on_hold", "hold": "on_hold", "暂缓": "on_hold", "暂缓办理": "on_hold",
    "暂停": "on_hold",
}


_BRACKETED = re.compile(r"\(.*?\)|\[.*?\]|【.*?】")
_NON_WORD = re.compile(r"[\W_]+")


def _header_key(header: str) -> str:
    text = unicodedata.normalize("NFKC", header).lower()
    return _NON_WORD.sub("", _BRACKETED.sub("", text))


def _alias_index(columns: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {_header_key(alias): name for name, aliases in columns.items() for alias in aliases}


_OWNER_INDEX = _alias_index(OWNER_COLUMNS)
_CERTIFICATE_INDEX = _alias_index(CERTIFICATE_COLUMNS)
_ALL_HEADERS = frozenset(_OWNER_INDEX) | frozenset(_CERTIFICATE_INDEX)


# --- reading files ------------------------------------------------------------------------------


class Table(Iterator[tuple[int, dict[str, Any]]]):
    """The data rows of one worksheet or CSV file: ``(row_number, {header: value})``, blank rows skipped.

    Values are what the file holds: strings for CSV; for xlsx also ``int``, ``float``, ``datetime``.
    Use it as a context manager (or exhaust it) so the workbook is closed.
    """

    def __init__(self, path: Path, fmt: str, rows: Iterator[tuple[int, Sequence[Any]]],
                 *, known: Collection[str], estimated_rows: int | None = None,
                 encoding: str | None = None, closer: Callable[[], None] | None = None) -> None:
        self.path = path
        self.format = fmt
        self.encoding = encoding
        self._rows = rows
        self._closer = closer
        self.header_row, raw = self._find_header(known)
        self.headers: list[str] = []
        self._columns: list[tuple[int, str]] = []
        for index, cell in enumerate(raw):
            name = cell.strip() if isinstance(cell, str) else _cell_text(cell)  # as staff typed it
            if not name:
                continue
            unique, n = name, 2
            while unique in self.headers:
                unique, n = f"{name} ({n})", n + 1
            self.headers.append(unique)
            self._columns.append((index, unique))
        self.estimated_rows = max(estimated_rows - self.header_row, 0) if estimated_rows else None

    def _find_header(self, known: Collection[str]) -> tuple[int, Sequence[Any]]:
        seen: list[tuple[int, Sequence[Any]]] = []
        for number, values in self._rows:
            if not any(_cell_text(v) for v in values):
                continue
            seen.append((number, values))
            if len(seen) >= HEADER_SCAN_ROWS:
                break
        if not seen:
            self.close()
            raise TableError("文件里没有数据 (the file holds no rows)")
        best = max(seen, key=lambda item: sum(_header_key(_cell_text(v)) in known for v in item[1]))
        if sum(_header_key(_cell_text(v)) in known for v in best[1]) < 2:
            best = seen[0]
        # The rows scanned after the header are data: put them back in front of the rest.
        rest = [item for item in seen if item[0] > best[0]]
        self._rows = _chain(rest, self._rows)
        return best

    def __iter__(self) -> Table:
        return self

    def __next__(self) -> tuple[int, dict[str, Any]]:
        for number, values in self._rows:
            width = len(values)
            # Short rows (trailing blank cells left out) still get every column: the keys never vary.
            record = {name: (values[i] if i < width else None) for i, name in self._columns}
            if any(v is not None and (not isinstance(v, str) or v.strip()) for v in record.values()):
                return number, record
        self.close()
        raise StopIteration

    def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chain(first: list[tuple[int, Sequence[Any]]],
           rest: Iterator[tuple[int, Sequence[Any]]]) -> Iterator[tuple[int, Sequence[Any]]]:
    yield from first
    yield from rest


def read_table(path: str | Path, *, sheet: str | None = None, known: Collection[str] | None = None) -> Table:
    """Open ``path`` (xlsx/xlsm or csv/tsv/txt) and return its data rows.

    The format is told by the file's content, not its name. ``sheet`` picks a worksheet (default: the
    one that was active when the file was saved). The header is the one of the first ten non-blank rows
    that holds the most ``known`` column names (at least two; default: every accepted header), so a title
    row above it is skipped. Raises :class:`TableError` when the file cannot be read.
    """
    path = Path(path)
    known = _ALL_HEADERS if known is None else known
    try:
        with path.open("rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        raise TableError(f"无法打开文件 (cannot open {path}): {exc.strerror or exc}") from exc
    if magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise TableError("不支持旧版 .xls 格式，请在 Excel 中另存为 .xlsx 或 .csv "
                         "(the old .xls format is not supported: save the sheet as .xlsx or .csv)")
    if magic.startswith(b"PK\x03\x04"):
        return _read_xlsx(path, sheet, known)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raise TableError(f"{path.name} 不是有效的 Excel 文件 (not a valid .xlsx file)")
    return _read_csv(path, known)


def _read_xlsx(path: Path, sheet: str | None, known: Collection[str]) -> Table:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            # "Workbook contains no default style", unsupported extensions: noise for an import.
            warnings.simplefilter("ignore", UserWarning)
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise TableError(f"无法读取 Excel 文件 (cannot read {path.name}): {exc}") from exc
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise TableError(f"没有工作表 {sheet!r} (no sheet {sheet!r}; sheets: {', '.join(wb.sheetnames)})")
            ws = wb[sheet]
        else:
            ws = wb.active if wb.active is not None else wb.worksheets[0]
        if not hasattr(ws, "iter_rows"):
            raise TableError(f"工作表 {ws.title!r} 不是数据表 (sheet {ws.title!r} is not a worksheet)")
        estimated = ws.max_row
        # The stored dimension is sometimes wrong (files written by other tools): read what is there.
        ws.reset_dimensions()
        rows = enumerate(ws.iter_rows(min_row=1, values_only=True), start=1)
        return Table(path, "xlsx", rows, known=known, estimated_rows=estimated, closer=wb.close)
    except TableError:
        wb.close()
        raise
    except Exception as exc:  # a damaged sheet part: the file cannot be read
        wb.close()
        raise TableError(f"无法读取 Excel 文件 (cannot read {path.name}): {exc}") from exc


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text"
        return data.decode("utf-16"), "utf-16"
    for encoding in ("utf-8", "gb18030"):  # GB18030 is a superset of GBK and GB2312
        try:
            return data.decode(encoding), ("gbk" if encoding == "gb18030" else encoding)
        except UnicodeDecodeError:
            continue
    raise TableError("无法识别文件编码，请另存为 UTF-8 或 GBK (cannot decode the file as UTF-8 or GBK)")


def _read_csv(path: Path, known: Collection[str]) -> Table:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TableError(f"无法打开文件 (cannot open {path}): {exc.strerror or exc}") from exc
    try:
        text, encoding = _decode(data)
    except UnicodeDecodeError as exc:
        raise TableError(f"无法识别文件编码 (cannot decode the file): {exc}") from exc
    del data
    if "\x00" in text[:4096]:
        raise TableError(f"{path.name} 不是文本文件 (not a CSV or text file)")
    head = "".join(itertools.islice((line for line in io.StringIO(text) if line.strip()), 5))
    delimiter = max((",", "\t", ";"), key=head.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: Iterator[tuple[int, Sequence[Any]]] = enumerate(reader, start=1)

    def guarded() -> Iterator[tuple[int, Sequence[Any]]]:
        try:
            yield from rows
        except csv.Error as exc:
            raise TableError(f"CSV 格式错误 (malformed CSV): {exc}") from exc

    return Table(path, "csv", guarded(), known=known, estimated_rows=text.count("\n") + 1, encoding=encoding)


# --- value rules --------------------------------------------------------------------------------


class Invalid(ValueError):
    """A cell value that breaks a rule; the message is the reason shown to staff."""


def _cell_text(value: Any) -> str:
    """A cell as text: numbers without a spurious ``.0``, dates as ISO, NFKC (full-width → ASCII)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip() if value.isascii() else unicodedata.normalize("NFKC", value).strip()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _free_text(value: Any) -> str:
    """Free text (notes, places): only trimmed, so Chinese punctuation stays as typed."""
    if isinstance(value, str):
        return value.strip()
    return _cell_text(value)


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}


def _cn_number(text: str) -> str:
    """``十二`` → ``12`` for the small Chinese numerals used in building and unit names (< 100)."""
    if not text or any(ch not in _CN_DIGITS and ch != "十" for ch in text):
        return text
    if "十" not in text:
        return "".join(str(_CN_DIGITS[ch]) for ch in text)
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1:
        return text
    return str((_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0))


_SPACES = re.compile(r"\s+")
_BUILDING_SUFFIX = re.compile(r"(#楼|号楼|栋楼|栋|幢|座|楼|号|#)$")
_UNIT_SUFFIX = re.compile(r"(单元|单|号)$")
_ROOM_SUFFIX = re.compile(r"(室|房|号)$")


# Rosters repeat the same building, unit and room spellings thousands of times: remember the answers
# (a value that raises Invalid is not remembered).
@functools.lru_cache(maxsize=16384)
def _place_part(value: str, suffix: re.Pattern[str], limit: int, what: str, english: str) -> str:
    text = _SPACES.sub("", value).upper()
    text = text.removeprefix("第")
    text = suffix.sub("", text)
    text = _cn_number(text)
    if text.isdigit():
        text = text.lstrip("0") or "0"
    if not text:
        raise Invalid(f"{what}不能为空 ({english} is required)")
    if len(text) > limit:
        raise Invalid(f"{what}太长，最多 {limit} 个字符 (longer than {limit} characters)")
    return text


def normalise_building(value: Any) -> str:
    """``3栋``, ``3号楼``, ``3#``, ``3幢``, ``第三栋``, ``０３`` → ``3``; ``B座`` → ``B``."""
    return _place_part(_cell_text(value), _BUILDING_SUFFIX, 20, "楼栋", "building")


def normalise_unit(value: Any) -> str:
    """``2单元``, ``二单元``, ``2`` → ``2``."""
    return _place_part(_cell_text(value), _UNIT_SUFFIX, 10, "单元", "unit")


def normalise_room(value: Any) -> str:
    """``501室``, ``501``, ``0501`` → ``501``."""
    return _place_part(_cell_text(value), _ROOM_SUFFIX, 10, "房号", "room")


_HOUSE_LABEL = re.compile(
    r"第?([0-9A-Z]+|[一二三四五六七八九十]+)(?:#楼|号楼|栋|幢|座|#|-)"
    r"第?([0-9A-Z]+|[一二三四五六七八九十]+)(?:单元|-)"
    r"([0-9A-Z]+)(?:室|号)?"
)


def split_house_label(value: Any) -> tuple[str, str, str] | None:
    """``3-2-501`` or ``3栋2单元501室`` → ``("3", "2", "501")`` (a roster with one 房号 column)."""
    text = _SPACES.sub("", _cell_text(value)).upper()
    match = _HOUSE_LABEL.fullmatch(text)
    if not match:
        return None
    return normalise_building(match[1]), normalise_unit(match[2]), normalise_room(match[3])


_MOBILE = re.compile(r"1[3-9]\d{9}")
_SCIENTIFIC = re.compile(r"\d(\.\d+)?E\+?\d+", re.IGNORECASE)
_PHONE_SEPARATORS = re.compile(r"[/,;、|]")
_PHONE_NOISE = re.compile(r"[\s()\-]")
_COUNTRY_CODE = re.compile(r"^(\+?86|0086)(?=1[3-9]\d{9}$)")
_LANDLINE_NOISE = re.compile(r"[\s()]")
_LANDLINE = re.compile(r"(0\d{2,3})[-\s]?([2-9]\d{6,7})(?:(?:-|转|ext\.?|#)(\d{1,6}))?", re.IGNORECASE)


def parse_phone(value: Any) -> str:
    """A mainland mobile (``13800000001``) or landline (``0571-88880000``, extension ``-8001``).

    ``+86``/``0086`` prefixes, spaces and dashes are dropped. When a cell holds several numbers
    (``138…/139…``) the first is the owner's. Returns the canonical form used as the owner's key.
    """
    if isinstance(value, float) and not value.is_integer():
        raise Invalid("电话号码不是整数 (the phone number is not a whole number)")
    text = _cell_text(value)
    if len(text) == 11 and _MOBILE.fullmatch(text):
        return text
    if not text:
        raise Invalid("手机号不能为空 (phone is required)")
    if _SCIENTIFIC.fullmatch(text):
        raise Invalid("手机号被 Excel 显示成了科学计数法，请把该列设为文本后重新导出 "
                      "(the phone number was saved in scientific notation: format the column as text)")
    first = _PHONE_SEPARATORS.split(text)[0].strip()
    compact = _COUNTRY_CODE.sub("", _PHONE_NOISE.sub("", first))
    if _MOBILE.fullmatch(compact):
        return compact
    landline = _LANDLINE_NOISE.sub("", first)
    match = _LANDLINE.fullmatch(landline)
    if match:
        area, number, ext = match.groups()
        if area.startswith(("01", "02")) and len(area) == 4:  # 010/02x: 3-digit area codes
            area, number = area[:3], area[3] + number
            if len(number) > 8:
                raise Invalid(f"电话号码格式不正确 (not a valid phone number: {text})")
        return f"{area}-{number}" + (f"-{ext}" if ext else "")
    raise Invalid("手机号格式不正确：应为 11 位手机号（1[3-9] 开头）或带区号的固话 "
                  f"(not a mainland mobile or landline number: {text})")


_DATE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]+(\d{1,2})[:时](\d{1,2})(?:[:分](\d{1,2})(?:\.\d+)?秒?)?)?"
)
_SERIAL = re.compile(r"\d{5}(\.\d+)?")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_MIN_YEAR, _MAX_YEAR = 1990, 2100


def parse_datetime(value: Any) -> dt.datetime:
    """A date or date-time cell as an aware datetime in China time (midnight when only a date is given).

    Accepts ``2025-06-01``, ``2025/6/1``, ``2025.6.1``, ``2025年6月1日``, ``20250601``, an optional time
    (``2025/6/1 14:30``), Excel date cells and Excel serial numbers (``45809``).
    """
    if isinstance(value, dt.datetime):
        moment = value.astimezone(CHINA_TZ).replace(tzinfo=None) if value.tzinfo else value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = _from_number(float(value))
    else:
        text = _cell_text(value)
        if not text:
            raise Invalid("日期不能为空 (date is required)")
        moment = _from_text(text)
    if not _MIN_YEAR <= moment.year <= _MAX_YEAR:
        raise Invalid(f"日期不合理 (date out of range {_MIN_YEAR}–{_MAX_YEAR}): {moment.date().isoformat()}")
    return moment.replace(tzinfo=CHINA_TZ)


def parse_date(value: Any) -> dt.date:
    """A date cell (see :func:`parse_datetime` for the formats); the time of day, if any, is dropped."""
    return parse_datetime(value).date()


def _from_number(number: float) -> dt.datetime:
    if number.is_integer() and 19000101 <= number <= 21001231:
        return _from_text(str(int(number)))
    if 1 <= number < 2958466:  # Excel's serial dates (1900 system)
        return _EXCEL_EPOCH + dt.timedelta(days=number)
    raise Invalid(f"不是日期 (not a date): {number:g}")


@functools.lru_cache(maxsize=4096)
def _from_text(text: str) -> dt.datetime:
    match = _DATE.fullmatch(text)
    try:
        if match:
            y, m, d, hh, mm, ss = match.groups()
            return dt.datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        if len(text) == 8 and text.isdigit():
            return dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise Invalid(f"日期不存在 (no such date): {text}") from exc
    if _SERIAL.fullmatch(text):
        return _from_number(float(text))
    raise Invalid(f"日期格式不正确，请用 2025-06-01 或 2025年6月1日 (not a date: {text})")


_STATUS_NOISE = re.compile(r"[\s\-]+")


def parse_status(value: Any) -> str:
    """办理中/已到/可领取/已领取/已邮寄/暂缓 or processing/ready/collected/mailed/on_hold."""
    text = _cell_text(value)
    if not text:
        raise Invalid("办证状态不能为空 (status is required)")
    key = _STATUS_NOISE.sub("_", text.lower())
    status = CERTIFICATE_STATUSES.get(key) or CERTIFICATE_STATUSES.get(key.replace("_", ""))
    if status is None:
        raise Invalid("无法识别的办证状态，可用：办理中、已到/可领取、已领取、已邮寄、暂缓 "
                      f"(unknown status {text!r}: processing, ready, collected, mailed, on_hold)")
    return status


_CJK_NAME = re.compile(r"[\u3400-\u9fff·]+")
_NUMBER_LIKE = re.compile(r"[\d\s\-+.]+")


def _owner_name(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else _cell_text(value)
    parts = text.split()  # also splits on the full-width space used to pad two-character names
    if len(parts) > 1:
        cjk = all(_CJK_NAME.fullmatch(p) for p in parts)
        text = "".join(parts) if cjk else " ".join(parts)
    if not text:
        raise Invalid("业主姓名不能为空 (owner name is required)")
    if _NUMBER_LIKE.fullmatch(text):
        raise Invalid(f"业主姓名是数字，列是否错位？(the owner name is a number; are the columns shifted?): {text}")
    if len(text) > 50:
        raise Invalid("业主姓名太长，最多 50 个字符 (owner name longer than 50 characters)")
    return text


def _limited(value: Any, limit: int) -> str | None:
    text = _free_text(value)
    if not text:
        return None
    if len(text) > limit:
        raise Invalid(f"内容太长，最多 {limit} 个字符 (longer than {limit} characters)")
    return text


def _display_width(text: str) -> int:
    """Terminal columns: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


# --- reports ------------------------------------------------------------------------------------


@dataclass(slots=True)
class RowError:
    """One problem with one row: the spreadsheet's row number (header = row 1), column, value, reason."""

    row: int
    column: str
    value: str
    reason: str


@dataclass
class ImportReport:
    kind: str
    """``owners`` or ``certificates``."""
    rows_read: int = 0
    rows_imported: int = 0
    projects_created: int = 0
    buildings_created: int = 0
    houses_created: int = 0
    houses_updated: int = 0
    owners_created: int = 0
    owners_updated: int = 0
    links_created: int = 0
    certificates_created: int = 0
    certificates_updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    ready_houses: dict[int, list[int]] = field(default_factory=dict)
    """Certificates: per project id, the houses this import made ``ready`` (their collection notice is
    drafted for approval by :func:`actions.campaigns.certificate_ready`)."""

    @property
    def rows_rejected(self) -> int:
        return len({e.row for e in self.errors})

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> list[str]:
        lines = [("读取行数 rows read", self.rows_read), ("导入行数 rows imported", self.rows_imported)]
        if self.kind == "owners":
            lines += [
                ("新建项目 projects created", self.projects_created),
                ("新建楼栋 buildings created", self.buildings_created),
                ("新建房屋 houses created", self.houses_created),
                ("更新交房日期 houses updated", self.houses_updated),
                ("新建业主 owners created", self.owners_created),
                ("更新业主 owners updated", self.owners_updated),
                ("新建业主房屋关联 links created", self.links_created),
            ]
        else:
            lines += [
                ("新建办证记录 certificates created", self.certificates_created),
                ("更新办证记录 certificates updated", self.certificates_updated),
            ]
        lines.append(("拒绝行数 rows rejected", self.rows_rejected))
        width = max(_display_width(label) for label, _ in lines)
        return [f"{label}{' ' * (width - _display_width(label))}  {value:>8}" for label, value in lines]

    def write_errors(self, path: str | Path) -> Path:
        """The error report as CSV (row, column, value, reason), UTF-8 with BOM so Excel opens it."""
        path = Path(path)
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "column", "value", "reason"])
            for e in sorted(self.errors, key=lambda e: e.row):
                writer.writerow([e.row, e.column, e.value, e.reason])
        return path


# --- the import machinery -----------------------------------------------------------------------

@runtime_checkable
class ProgressBar(Protocol):
    """A progress bar such as ``tqdm``: ``total`` is set to the estimated rows, ``update(n)`` per batch."""

    total: Any

    def update(self, n: int = 1) -> object: ...


Progress = Callable[[int], object] | ProgressBar
"""Told the number of rows just processed: a callable, or a bar (``tqdm``) that also gets the total."""
Rows = Iterable[Mapping[str, Any]] | Iterable[tuple[int, Mapping[str, Any]]] | str | Path

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = _IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL (a concurrent import is harmless)."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sa.insert(table)


async def _insert_returning(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]],
                            keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (conflicts ignored) and return ``(id, *keys)`` for every one of them.

    ``RETURNING`` answers for the rows this statement inserted (one round trip on SQLite ≥ 3.35 and
    PostgreSQL); rows that already existed — another import got there first — are looked up by key.
    """
    columns = [table.c[k] for k in keys]
    stmt = _insert(conn, table).returning(table.c.id, *columns)
    found = [tuple(row) for row in await conn.execute(stmt, rows)]
    if len(found) < len(rows):
        missing = {tuple(r[k] for k in keys) for r in rows} - {row[1:] for row in found}
        for chunk in _chunks(sorted(missing)):
            where = [col.in_(sorted({m[i] for m in chunk})) for i, col in enumerate(columns)]
            for row in await conn.execute(sa.select(table.c.id, *columns).where(*where)):
                if tuple(row[1:]) in missing:
                    found.append(tuple(row))
    return found


class _Columns:
    """Maps a file's headers to fields; several columns for one field: the first non-blank wins."""

    def __init__(self, headers: Iterable[str], index: Mapping[str, str]) -> None:
        self.by_field: dict[str, list[str]] = {}
        self.ignored: list[str] = []
        for header in headers:
            name = index.get(_header_key(str(header)))
            if name is None:
                self.ignored.append(str(header))
            else:
                self.by_field.setdefault(name, []).append(header)

    def get(self, record: Mapping[str, Any], name: str) -> tuple[Any, str]:
        headers = self.by_field.get(name)
        if not headers:
            return None, LABELS.get(name, name)
        if len(headers) == 1:
            value = record.get(headers[0])
            if isinstance(value, str) and not value.strip():
                value = None
            return value, headers[0]
        for header in headers:
            value = record.get(header)
            if value is not None and (not isinstance(value, str) or value.strip()):
                return value, header
        return None, headers[0]


def _missing(columns: _Columns, required: Sequence[str], default_project: str | None) -> list[str]:
    return [LABELS[name] for name in required
            if name not in columns.by_field and not (name == "project" and default_project)]


class _Importer:
    """Shared state of one import: caches of keys already in the database, the report, row rules."""

    index: Mapping[str, str]
    required: Sequence[str]

    def __init__(self, db: Database, report: ImportReport, *, project: str | None) -> None:
        self.db = db
        self.report = report
        self.default_project = _cell_text(project) or None
        self.project_by_code: dict[str, int] = {}
        self.project_by_name: dict[str, list[int]] = {}
        self.code_of: dict[int, str] = {}
        self.buildings: dict[tuple[int, str], int] = {}
        self.house_id: dict[tuple[int, str, str], int] = {}
        """(building id, unit, room) → house id."""
        self.house_handover: dict[tuple[int, str, str], dt.date | None] = {}
        self.loaded_buildings: set[int] = set()
        self._columns_cache: dict[tuple[str, ...], _Columns] = {}
        self.fixed_columns: _Columns | None = None
        """Set for a file: every row has the same headers, so they are mapped once."""

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            for pid, code, name in await conn.execute(sa.select(Project.id, Project.code, Project.name)):
                self._add_project(pid, code, name)
            for bid, pid, name in await conn.execute(sa.select(Building.id, Building.project_id, Building.name)):
                self.buildings[(pid, name)] = bid

    def _add_project(self, pid: int, code: str, name: str) -> None:
        self.project_by_code[_cell_text(code)] = pid
        self.project_by_name.setdefault(_cell_text(name), []).append(pid)
        self.code_of[pid] = code

    # columns

    def columns(self, headers: Sequence[str]) -> _Columns:
        key = tuple(headers)
        columns = self._columns_cache.get(key)
        if columns is None:
            columns = _Columns(headers, self.index)
            missing = _missing(columns, self.required, self.default_project)
            if missing:
                found = "、".join(headers) or "(none)"
                raise TableError(f"缺少必需的列: {', '.join(missing)} (missing required columns; "
                                 f"columns found: {found})")
            self._columns_cache[key] = columns
            if not self.report.ignored_columns:
                self.report.ignored_columns = list(columns.ignored)
        return columns

    # rules shared by both kinds

    def resolve_project(self, text: str, *, create: bool) -> int | str:
        """The project id for a code or name; the code itself when it is to be created."""
        pid = self.project_by_code.get(text)
        if pid is not None:
            return pid
        ids = self.project_by_name.get(text, [])
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise Invalid(f"有多个项目叫这个名字，请改用项目编码 (several projects are named {text!r}: use the code)")
        if create:
            if len(text) > 32:
                raise Invalid("项目编码太长，最多 32 个字符 (project code longer than 32 characters)")
            return text
        raise Invalid(f"项目不存在 (unknown project {text!r}; use --create-projects to create it)")

    def place(self, record: Mapping[str, Any], columns: _Columns, errors: list[RowError], row: int,
              *, create: bool) -> tuple[int | str, str, str, str] | None:
        """Project, building, unit and room of a row (normalised), or None after adding the errors."""
        value, header = columns.get(record, "project")
        text = _cell_text(value) or (self.default_project or "")
        project: int | str | None = None
        if not text:
            errors.append(RowError(row, header, "", "项目不能为空 (project is required)"))
        else:
            try:
                project = self.resolve_project(text, create=create)
            except Invalid as exc:
                errors.append(RowError(row, header, text, str(exc)))
        b_value, b_header = columns.get(record, "building")
        u_value, u_header = columns.get(record, "unit")
        r_value, r_header = columns.get(record, "room")
        if b_value is None and u_value is None and r_value is not None:
            try:
                parts = split_house_label(r_value)
            except Invalid:
                parts = None
            if parts is not None:
                return (project, *parts) if project is not None else None
        parts_out: list[str] = []
        for value, header, rule in ((b_value, b_header, normalise_building), (u_value, u_header, normalise_unit),
                                    (r_value, r_header, normalise_room)):
            try:
                parts_out.append(rule(value))
            except Invalid as exc:
                errors.append(RowError(row, header, _cell_text(value), str(exc)))
        if project is None or len(parts_out) < 3:
            return None
        return project, parts_out[0], parts_out[1], parts_out[2]

    def project_code(self, project: int | str) -> str:
        return self.code_of[project] if isinstance(project, int) else project

    async def load_houses(self, conn: AsyncConnection, building_ids: Iterable[int]) -> None:
        todo = sorted(set(building_ids) - self.loaded_buildings)
        for chunk in _chunks(todo):
            result = await conn.execute(
                sa.select(House.id, House.building_id, House.unit, House.room, House.handover_date)
                .where(House.building_id.in_(chunk))
            )
            for hid, bid, unit, room, handover in result:
                self.house_id[(bid, unit, room)] = hid
                self.house_handover[(bid, unit, room)] = handover
        self.loaded_buildings.update(todo)


async def _run(importer: _Importer, rows: Rows, *, sheet: str | None, batch_size: int,
               progress: Progress | None,
               validate: Callable[[list[tuple[int, Mapping[str, Any]]]], list[Any]],
               apply: Callable[[list[Any]], Any]) -> ImportReport:
    source: Iterator[tuple[int, Mapping[str, Any]]]
    if isinstance(rows, str | Path):
        table = await asyncio.to_thread(read_table, rows, sheet=sheet, known=set(importer.index))
        try:
            # A missing required column stops the import here, before anything is written.
            importer.fixed_columns = importer.columns(table.headers)
        except TableError:
            table.close()
            raise
        source = table
    else:
        table = None
        source = _numbered(rows)
    update: Callable[[int], object] | None = None
    if isinstance(progress, ProgressBar):
        if table is not None and table.estimated_rows:
            progress.total = table.estimated_rows
        update = progress.update
    elif progress is not None:
        update = progress
    try:
        await importer.load()

        def next_batch() -> tuple[int, list[Any]]:
            chunk: list[tuple[int, Mapping[str, Any]]] = []
            for item in source:
                chunk.append(item)
                if len(chunk) >= batch_size:
                    break
            return len(chunk), (validate(chunk) if chunk else [])

        # One batch at a time. Reading the next batch while this one is written was tried and is slower:
        # the parsing thread holds the GIL, and every hop between the event loop and aiosqlite's thread
        # then waits for the interpreter's switch interval.
        while True:
            count, valid = await asyncio.to_thread(next_batch)
            if not count:
                break
            importer.report.rows_read += count
            if valid:
                await apply(valid)
            if update is not None:
                update(count)
    finally:
        if table is not None:
            table.close()
    importer.report.rows_imported = importer.report.rows_read - importer.report.rows_rejected
    importer.report.errors.sort(key=lambda e: e.row)
    return importer.report


def _numbered(rows: Iterable[Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Dicts from a caller are numbered like a sheet under a header: the first is row 2."""
    for n, item in enumerate(rows, start=2):
        if isinstance(item, tuple):
            yield item[0], item[1]
        else:
            yield n, item


# --- owners -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _OwnerRow:
    row: int
    project: int | str
    building: str
    unit: str
    room: str
    name: str
    phone: str
    handover: dt.date | None


class _OwnerImporter(_Importer):
    index = _OWNER_INDEX
    required = _OWNER_REQUIRED

    def __init__(self, db: Database, report: ImportReport, *, project: str | None, create_projects: bool) -> None:
        super().__init__(db, report, project=project)
        self.create_projects = create_projects
        # Flat dicts of ints and strings, not dicts of lists: the garbage collector need not walk them.
        self.owner_id: dict[str, int] = {}
        self.owner_name: dict[str, str] = {}
        self.links: set[tuple[int, int]] = set()
        self.links_loaded: set[int] = set()
        # What earlier rows of this file said, to reject a later row that contradicts them.
        self.seen_phone: dict[str, tuple[str, int]] = {}
        self.seen_house: dict[tuple[str, str, str, str], tuple[dt.date | None, int]] = {}

    def validate(self, chunk: list[tuple[int, Mapping[str, Any]]]) -> list[_OwnerRow]:
        valid: list[_OwnerRow] = []
        for row, record in chunk:
            columns = self.fixed_columns or self.columns(list(record))
            errors: list[RowError] = []
            place = self.place(record, columns, errors, row, create=self.create_projects)
            name = phone = None
            handover: dt.date | None = None
            value, header = columns.get(record, "owner")
            try:
                name = _owner_name(value)
            except Invalid as exc:
                errors.append(RowError(row, header, _cell_text(value), str(exc)))
            value, phone_header = columns.get(record, "phone")
            try:
                phone = parse_phone(value)
            except Invalid as exc:
                errors.append(RowError(row, phone_header, _cell_text(value), str(exc)))
            value, date_header = columns.get(record, "handover")
            if value is not None and _cell_text(value):
                try:
                    handover = parse_date(value)
                except Invalid as exc:
                    errors.append(RowError(row, date_header, _cell_text(value), str(exc)))
            if not errors and place is not None and name is not None and phone is not None:
                project, building, unit, room = place
                seen = self.seen_phone.get(phone)
                if seen is not None and seen[0] != name:
                    errors.append(RowError(row, phone_header, phone,
                                           f"该手机号在第 {seen[1]} 行属于业主 {seen[0]}，姓名不一致 "
                                           f"(the same phone is given for {seen[0]} on row {seen[1]})"))
                key = (self.project_code(project), building, unit, room)
                earlier = self.seen_house.get(key)
                if handover and earlier and earlier[0] and earlier[0] != handover:
                    errors.append(RowError(row, date_header, handover.isoformat(),
                                           f"同一房屋在第 {earlier[1]} 行的交房日期是 {earlier[0].isoformat()} "
                                           f"(the same house has another handover date on row {earlier[1]})"))
                if not errors:
                    self.seen_phone.setdefault(phone, (name, row))
                    if earlier is None or (handover and not earlier[0]):
                        self.seen_house[key] = (handover, row)
                    valid.append(_OwnerRow(row, project, building, unit, room, name, phone, handover))
            self.report.errors.extend(errors)
        return valid

    async def apply(self, rows: list[_OwnerRow]) -> None:
        report = self.report
        async with self.db.engine.begin() as conn:
            # Projects (only with create_projects: validation turned unknown ones into errors otherwise).
            for code in sorted({r.project for r in rows if isinstance(r.project, str)}):
                if code not in self.project_by_code:
                    await conn.execute(_insert(conn, _PROJECT), [{"code": code, "name": code, "settings": {}}])
                    pid, name = (await conn.execute(
                        sa.select(Project.id, Project.name).where(Project.code == code))).one()
                    self._add_project(pid, code, name)
                    report.projects_created += 1
            pids = [r.project if isinstance(r.project, int) else self.project_by_code[r.project] for r in rows]

            # Buildings.
            new_buildings = sorted({(pid, r.building) for pid, r in zip(pids, rows, strict=True)}
                                   - self.buildings.keys())
            if new_buildings:
                for bid, pid, name in await _insert_returning(
                        conn, _BUILDING, [{"project_id": p, "name": b} for p, b in new_buildings],
                        ("project_id", "name")):
                    self.buildings[(pid, name)] = bid
                report.buildings_created += len(new_buildings)
            bids = [self.buildings[(pid, r.building)] for pid, r in zip(pids, rows, strict=True)]

            # Houses: create missing ones, update changed handover dates.
            await self.load_houses(conn, bids)
            new_houses: dict[tuple[int, str, str], dt.date | None] = {}
            changed: dict[int, dt.date] = {}
            for bid, r in zip(bids, rows, strict=True):
                key = (bid, r.unit, r.room)
                hid = self.house_id.get(key)
                if hid is None:
                    if new_houses.get(key) is None:
                        new_houses[key] = r.handover
                elif r.handover is not None and self.house_handover[key] != r.handover:
                    changed[hid] = r.handover
                    self.house_handover[key] = r.handover
            if new_houses:
                created = await _insert_returning(
                    conn, _HOUSE, [{"building_id": b, "unit": u, "room": rm, "handover_date": d}
                                   for (b, u, rm), d in new_houses.items()], ("building_id", "unit", "room"))
                for hid, bid, unit, room in created:
                    self.house_id[(bid, unit, room)] = hid
                    self.house_handover[(bid, unit, room)] = new_houses[(bid, unit, room)]
                report.houses_created += len(new_houses)
            if changed:
                await conn.execute(
                    sa.update(_HOUSE).where(_HOUSE.c.id == sa.bindparam("_id"))
                    .values(handover_date=sa.bindparam("_handover")),
                    [{"_id": hid, "_handover": d} for hid, d in changed.items()])
                report.houses_updated += len(changed)

            # Owners, keyed by phone: create, or update a changed name.
            unknown = sorted({r.phone for r in rows} - self.owner_id.keys())
            for phones in _chunks(unknown):
                found = await conn.execute(sa.select(Owner.id, Owner.phone, Owner.name).where(Owner.phone.in_(phones)))
                for owner_id, phone, name in found:
                    self.owner_id[phone] = owner_id
                    self.owner_name[phone] = name
            new_owners: dict[str, str] = {}
            renamed: dict[int, str] = {}
            for r in rows:
                known = self.owner_id.get(r.phone)
                if known is None:
                    new_owners.setdefault(r.phone, r.name)
                elif self.owner_name[r.phone] != r.name:
                    renamed[known] = r.name
                    self.owner_name[r.phone] = r.name
            if new_owners:
                created = await _insert_returning(
                    conn, _OWNER, [{"phone": p, "name": n} for p, n in new_owners.items()], ("phone",))
                for oid, phone in created:
                    self.owner_id[phone] = oid
                    self.owner_name[phone] = new_owners[phone]
                    self.links_loaded.add(oid)  # a new owner has no links yet
                report.owners_created += len(new_owners)
            if renamed:
                await conn.execute(
                    sa.update(_OWNER).where(_OWNER.c.id == sa.bindparam("_id"))
                    .values(name=sa.bindparam("_name")),
                    [{"_id": oid, "_name": name} for oid, name in renamed.items()])
                report.owners_updated += len(renamed)

            # Links owner ↔ house (unique pair).
            oids = [self.owner_id[r.phone] for r in rows]
            todo = sorted(set(oids) - self.links_loaded)
            for owner_ids in _chunks(todo):
                links = await conn.execute(
                    sa.select(OwnerHouse.owner_id, OwnerHouse.house_id).where(OwnerHouse.owner_id.in_(owner_ids)))
                self.links.update((o, h) for o, h in links)
            self.links_loaded.update(todo)
            new_links: list[tuple[int, int]] = []
            for oid, bid, r in zip(oids, bids, rows, strict=True):
                pair = (oid, self.house_id[(bid, r.unit, r.room)])
                if pair not in self.links:
                    self.links.add(pair)
                    new_links.append(pair)
            if new_links:
                await conn.execute(_insert(conn, _OWNER_HOUSE),
                                   [{"owner_id": o, "house_id": h, "relation": "owner"} for o, h in new_links])
                report.links_created += len(new_links)


async def import_owners(db: Database, rows: Rows, *, create_projects: bool = False, project: str | None = None,
                        progress: Progress | None = None, sheet: str | None = None,
                        batch_size: int = BATCH_SIZE) -> ImportReport:
    """Import an owner roster: a path (xlsx/csv) or rows as ``{header: value}`` dicts.

    Columns: project, building, unit, room, owner, phone, handover date (Chinese or English headers;
    :data:`OWNER_COLUMNS`). ``project`` is the default for rows without one. Projects are matched by
    code or name and created (code = name = the cell) only with ``create_projects``; buildings and houses
    are created as needed; owners are keyed by phone. Bad rows go to ``report.errors``; the others are
    imported. Raises :class:`TableError` when the file cannot be read or lacks a required column.
    """
    report = ImportReport("owners")
    importer = _OwnerImporter(db, report, project=project, create_projects=create_projects)
    return await _run(importer, rows, sheet=sheet, batch_size=batch_size, progress=progress,
                      validate=importer.validate, apply=importer.apply)


# --- certificates -------------------------------------------------------------------------------

_CERT_FIELDS = ("status", "batch", "note", "collect_place", "collect_hours", "ready_at", "collected_at",
                "collected_by", "handed_over_by")
_CERT_LIMITS = {"batch": 40, "note": 200, "collect_place": 100, "collect_hours": 100, "collected_by": 50,
                "handed_over_by": 50}


@dataclass(slots=True)
class _CertificateRow:
    row: int
    project: int
    building: str
    unit: str
    room: str
    values: dict[str, Any]
    """Only the cells that were filled in: a blank cell leaves the stored value as it is."""
    column: str
    cell: str


class _CertificateImporter(_Importer):
    index = _CERTIFICATE_INDEX
    required = _CERTIFICATE_REQUIRED

    def __init__(self, db: Database, report: ImportReport, *, project: str | None) -> None:
        super().__init__(db, report, project=project)
        self.seen: dict[tuple[int, str, str, str], tuple[dict[str, Any], int]] = {}

    def validate(self, chunk: list[tuple[int, Mapping[str, Any]]]) -> list[_CertificateRow]:
        valid: list[_CertificateRow] = []
        for row, record in chunk:
            columns = self.fixed_columns or self.columns(list(record))
            errors: list[RowError] = []
            place = self.place(record, columns, errors, row, create=False)
            values: dict[str, Any] = {}
            value, header = columns.get(record, "status")
            try:
                values["status"] = parse_status(value)
            except Invalid as exc:
                errors.append(RowError(row, header, _cell_text(value), str(exc)))
            for name, limit in _CERT_LIMITS.items():
                value, header = columns.get(record, name)
                try:
                    text = _limited(value, limit)
                except Invalid as exc:
                    errors.append(RowError(row, header, _free_text(value)[:60], str(exc)))
                    continue
                if text is not None:
                    values[name] = text
            for name, target in (("ready_date", "ready_at"), ("collected_date", "collected_at")):
                value, header = columns.get(record, name)
                if value is None or not _cell_text(value):
                    continue
                try:
                    values[target] = parse_datetime(value).astimezone(dt.UTC)
                except Invalid as exc:
                    errors.append(RowError(row, header, _cell_text(value), str(exc)))
            if not errors and place is not None and isinstance(place[0], int):
                # (create=False above: an unknown project is already a row error, never a str here)
                project, building, unit, room = place[0], place[1], place[2], place[3]
                key = (project, building, unit, room)
                earlier = self.seen.get(key)
                r_header = columns.get(record, "room")[1]
                label = f"{building}栋{unit}单元{room}"
                if earlier is not None and earlier[0] != values:
                    errors.append(RowError(row, r_header, label,
                                           f"同一房屋在第 {earlier[1]} 行已有不同的办证信息 "
                                           f"(the same house is on row {earlier[1]} with other values)"))
                else:
                    self.seen.setdefault(key, (values, row))
                    valid.append(_CertificateRow(row, project, building, unit, room, values, r_header, label))
            self.report.errors.extend(errors)
        return valid

    async def apply(self, rows: list[_CertificateRow]) -> None:
        report = self.report
        async with self.db.engine.begin() as conn:
            found: list[tuple[int, _CertificateRow]] = []
            bids = {self.buildings[k] for r in rows if (k := (r.project, r.building)) in self.buildings}
            await self.load_houses(conn, bids)
            for r in rows:
                bid = self.buildings.get((r.project, r.building))
                hid = self.house_id.get((bid, r.unit, r.room)) if bid is not None else None
                if hid is None:
                    what = "楼栋不存在 (no such building)" if bid is None else "房屋不存在 (no such house)"
                    report.errors.append(RowError(
                        r.row, r.column, r.cell, f"{what}: {self.code_of[r.project]} {r.cell}"))
                else:
                    found.append((hid, r))
            if not found:
                return
            hids = sorted({hid for hid, _ in found})
            existing: dict[int, dict[str, Any]] = {}
            table = _CERTIFICATE
            cols = [table.c[name] for name in _CERT_FIELDS]
            for chunk in _chunks(hids):
                result = await conn.execute(sa.select(table.c.house_id, *cols).where(table.c.house_id.in_(chunk)))
                for house_id, *values in result:
                    existing[house_id] = dict(zip(_CERT_FIELDS, values, strict=True))
            inserts: dict[int, dict[str, Any]] = {}
            updates: dict[int, dict[str, Any]] = {}
            for hid, r in found:
                if hid in existing:
                    merged = {**existing[hid], **r.values}
                    if merged != existing[hid]:
                        if merged.get("status") == "ready" and existing[hid].get("status") != "ready":
                            report.ready_houses.setdefault(r.project, []).append(hid)
                        existing[hid] = merged
                        updates[hid] = merged
                elif hid not in inserts:
                    inserts[hid] = {name: r.values.get(name) for name in _CERT_FIELDS}
                    if inserts[hid].get("status") == "ready":
                        report.ready_houses.setdefault(r.project, []).append(hid)
            if inserts:
                await conn.execute(_insert(conn, table), [{"house_id": h, **v} for h, v in inserts.items()])
                report.certificates_created += len(inserts)
            if updates:
                await conn.execute(
                    sa.update(table).where(table.c.house_id == sa.bindparam("_house_id"))
                    .values({name: sa.bindparam(f"_{name}") for name in _CERT_FIELDS}),
                    [{"_house_id": h, **{f"_{k}": v for k, v in values.items()}} for h, values in updates.items()])
                report.certificates_updated += len(updates)


async def import_certificates(db: Database, rows: Rows, *, project: str | None = None,
                              progress: Progress | None = None, sheet: str | None = None,
                              batch_size: int = BATCH_SIZE) -> ImportReport:
    """Import a certificate ledger (办证台账): a path (xlsx/csv) or rows as ``{header: value}`` dicts.

    Columns: project, building, unit, room, status and optionally batch, note, collect place/hours,
    ready date, collected date, collected by, handed over by (:data:`CERTIFICATE_COLUMNS`). One record
    per house (upsert); a blank cell leaves the stored value alone; an unknown house is a row error.
    """
    report = ImportReport("certificates")
    importer = _CertificateImporter(db, report, project=project)
    return await _run(importer, rows, sheet=sheet, batch_size=batch_size, progress=progress,
                      validate=importer.validate, apply=importer.apply)
